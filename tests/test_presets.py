"""Group text of the merge and hierarchy presets: one group per line, names quoted when they hold separators."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lensdash.errors import LensError
from lensdash.presets import format_groups, parse_groups

NAMES = ["cat", "dog", "a, b", 'say "hi"', "  padded ", "line\nbreak", "", "7", "1-2", "=x"]


def test_names_with_commas_quotes_and_line_breaks_round_trip():
    groups = [["cat", "a, b"], ['say "hi"', "  padded ", "line\nbreak"], ["", "7", "1-2", "=x"]]
    text = format_groups(groups)
    assert text.count("\n") == 3  # two group breaks, and the one inside the quoted "line\nbreak"
    assert parse_groups(text, NAMES) == groups


@given(
    st.lists(
        st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True),
        min_size=1,
        max_size=4,
    )
)
def test_format_then_parse_gives_the_groups_back(groups):
    assert parse_groups(format_groups(groups), NAMES) == groups


@given(st.lists(st.text(min_size=0, max_size=8), min_size=1, max_size=6, unique=True))
def test_any_names_round_trip(names):
    assert parse_groups(format_groups([names]), names) == [names]


def test_class_numbers_and_ranges_name_classes_when_no_class_has_that_name():
    names = [f"a long class name {i}" for i in range(10)]
    assert parse_groups("0-4, 7\n8,9", names) == [[*names[:5], names[7]], [names[8], names[9]]]
    assert parse_groups("2 - 3", names) == [names[2:4]]


def test_a_class_name_wins_over_a_number_and_quotes_make_a_name():
    names = ["0", "1", "2", "1-2"]
    assert parse_groups("1-2, 0", names) == [["1-2", "0"]]  # the class named "1-2", not classes 1 and 2
    assert parse_groups("0-1", ["x", "y"]) == [["x", "y"]]
    with pytest.raises(LensError, match=r"groups, line 1.*'0-1'"):
        parse_groups('"0-1"', ["x", "y"])  # quoted: a name, and there is no such class


def test_the_old_unquoted_format_still_reads():
    assert parse_groups("cat, dog\n\n  bus ,truck  ", ["cat", "dog", "bus", "truck"]) == [
        ["cat", "dog"],
        ["bus", "truck"],
    ]


@pytest.mark.parametrize(
    "text, match",
    [
        ("cat, unicorn", r"groups, line 1: expected class names \(such as 'cat', 'dog'.*found 'unicorn'"),
        ("cat\n\ndog, 12", r"groups, line 3.*class numbers 0-1.*found '12'"),
        ("1-0", r"found '1-0'"),
        ('cat, "dog', r"groups, line 1: expected a closing double quote"),
        ("a1, a2, a3, a4, a5", r"found 'a1', 'a2', 'a3' and 2 more"),
    ],
)
def test_bad_group_text_says_which_line_and_what(text, match):
    with pytest.raises(LensError, match=match):
        parse_groups(text, ["cat", "dog"])
