"""read_hierarchy: the three formats, the same tree from each, and every malformed file as an InputError."""

from __future__ import annotations

import io
import json
from importlib import resources

import pytest
from hypothesis import given
from test_hierarchy import CIFAR100, CIFAR_CLASSES, trees

import lensdash as ld
from lensdash import InputError
from lensdash.hierarchy import Hierarchy

NESTED = {"vehicles": {"road": ["truck", "bus"]}, "animals": ["cat", "dog"]}


def test_three_formats_give_the_same_hierarchy(tmp_path):
    expected = Hierarchy.from_nested(NESTED)
    sources = {
        "json": json.dumps(NESTED).encode(),
        "rows": b"vehicles,road,truck\nvehicles,road,bus\nanimals,cat\nanimals,dog\n",
        "rows with header": (
            b"level1,level2,class\nvehicles,road,truck\nvehicles,road,bus\nanimals,cat,,\nanimals,dog\n"
        ),
        "edges, commas, header": b"parent,child\nvehicles,road\nroad,truck\nroad,bus\nanimals,cat\nanimals,dog\n",
        "edges, tabs": b"road\ttruck\nroad\tbus\nvehicles\troad\nanimals\tcat\nanimals\tdog\n",
        "edges, spaces": b"# is-a pairs\n\nvehicles  road\nroad truck\nroad bus\nanimals cat\nanimals dog\n",
    }
    for kind, data in sources.items():
        got = ld.read_hierarchy(data)
        assert got == expected, kind
        assert ld.read_hierarchy(io.BytesIO(data)) == expected
        path = tmp_path / "tree.txt"
        path.write_bytes(data)
        assert ld.read_hierarchy(path) == expected and ld.read_hierarchy(str(path)) == expected
    # Children keep the file's order, so depth-first leaf order follows it.
    assert ld.read_hierarchy(sources["rows"]).leaves == ("truck", "bus", "cat", "dog")


@given(trees(max_nodes=25))
def test_random_trees_round_trip_through_every_format(h):
    edges = "\n".join(f"{h.parent[n]} {n}" for n in h.nodes if n in h.parent)
    rows = "\n".join(",".join(h.path(n)) for n in h.leaves)

    def nested(node: str) -> object:
        return {kid: nested(kid) for kid in h.children[node]} or None

    for data in (edges, rows, json.dumps({h.root: nested(h.root)})):
        assert ld.read_hierarchy(data.encode()) == h


def test_cifar100_example_file_is_cifar100():
    data = resources.files("lensdash.examples").joinpath("cifar100_hierarchy.csv").read_bytes()
    h = ld.read_hierarchy(data)
    assert h == Hierarchy.from_nested(CIFAR100)
    assert sorted(h.leaves) == CIFAR_CLASSES and len(h.children[h.root]) == 20
    assert h.groups_at(1, CIFAR_CLASSES)[0] == ("beaver", "dolphin", "otter", "seal", "whale")


def test_wordnet_isa_pairs_with_a_bom_and_crlf():
    data = "\ufeffn00001740 n00002684\r\nn00002684 n02084071\r\nn02084071 n02085374\r\nn02084071 n02085620\r\n"
    h = ld.read_hierarchy(data.encode())
    assert h.root == "n00001740" and h.leaves == ("n02085374", "n02085620")
    assert h.distances(["n02085374", "n02085620"]).tolist() == [[0.0, 1.0], [1.0, 0.0]]


def test_a_header_is_only_a_header_when_its_names_are_nowhere_else():
    h = ld.read_hierarchy(b"class,species\nclass,cat\n")  # 'class' is a node here
    assert h.parent["species"] == "class" and h.parent["cat"] == "class"
    h = ld.read_hierarchy(b'superclass,class\n"vehicles, large",truck\n')
    assert h.parent["truck"] == "vehicles, large" and "superclass" not in h


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", r"the hierarchy: expected parent-child pairs, rows of ancestors or nested JSON, found an empty file"),
        (b"  \n\n", "found an empty file"),
        (b"# only a comment\n", "found only blank or comment lines"),
        (b"a,b\nb,c\nc,a\n", r"line 3: expected a tree \(no node its own ancestor\), found a cycle"),
        (b"a b\nc b\n", r"line 2: expected one parent for each node, found 'b' under 'c' here and under 'a' at line 1"),
        (b"a,b\na,a\n", r"line 2: expected a parent different from its child, found 'a' under itself"),
        (b"a,,b\n", r"line 1, column 2: expected a node name in every column up to the class, found an empty cell"),
        (b'{"a": [1,}', r"line 1, column 10: expected valid JSON"),
        (b'{"a": ["x"], "b": ["x"]}', r"expected each node once in the hierarchy, found 'x' twice"),
        (b'{"a": [true]}', r"expected a node name \(text\), a list of children or a mapping, found bool"),
        (b"\xff\xfe a b", r"byte 1: expected UTF-8 text"),
        (b'a,"b\n', r"line 1: expected comma-separated names"),
        (("x," * 200 + "y").encode(), r"line 1: expected at most 101 names a row, found 201"),
        (b"a," + b"b" * 2000, r"expected a name of at most 1000 characters"),
    ],
)
def test_malformed_files_are_input_errors_naming_the_line(data, message):
    with pytest.raises(InputError, match=message):
        ld.read_hierarchy(data)


def test_hostile_files_are_refused_cheaply(tmp_path, monkeypatch):
    with pytest.raises(InputError, match=r"expected JSON nested at most 100 levels, found deeper nesting"):
        ld.read_hierarchy(b"[" * 1_000_000)
    with pytest.raises(InputError, match="JSON nested at most"):
        ld.read_hierarchy(b'{"a":' * 5000 + b"1" + b"}" * 5000)
    # Below the decoder's limit, above ours:
    with pytest.raises(InputError, match="nesting at most 100 levels deep"):
        ld.read_hierarchy("".join(f'{{"n{i}":' for i in range(500)).encode() + b"null" + b"}" * 500)
    chain = "\n".join(f"n{i} n{i + 1}" for i in range(300)).encode()
    with pytest.raises(InputError, match=r"line 100: expected a tree at most 100 levels deep"):
        ld.read_hierarchy(chain)
    monkeypatch.setattr("lensdash.io._hierarchy_files.MAX_HIERARCHY_BYTES", 100)
    with pytest.raises(InputError, match=r"big.csv: expected a hierarchy file of at most 0 MB, found a larger file"):
        path = tmp_path / "big.csv"
        path.write_bytes(b"a,b\n" * 100)
        ld.read_hierarchy(path)
    with pytest.raises(InputError, match="found a larger file"):
        ld.read_hierarchy(io.BytesIO(b"a,b\n" * 100))
    with pytest.raises(InputError, match=r"nope.csv: expected a readable file"):
        ld.read_hierarchy(tmp_path / "nope.csv")


def test_missing_classes_after_reading():
    h = ld.read_hierarchy(b"animals,cat\nanimals,dog\n")
    with pytest.raises(InputError, match=r"found 2 of 3 classes are not in the hierarchy: 'Cat', 'bird'"):
        h.distances(["Cat", "dog", "bird"])
