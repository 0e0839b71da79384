"""The load test (benchmarks/load_test.py) at a tiny size, so that it cannot rot."""

import pytest

from benchmarks.load_test import load_test

pytestmark = pytest.mark.browser


def test_load_test_runs_at_a_tiny_size_and_stops_by_itself(capsys):
    figures = load_test(sessions=1, megabytes=0.05, classes=5, after_close=2, timeout=240)
    assert figures["all_equal_to_library"], [r.error for r in figures["results"]]
    assert figures["idle_rss_mb"] > 0 and figures["peak_rss_mb"] >= figures["idle_rss_mb"]
    out = capsys.readouterr().out
    assert "every session's numbers equal the library's: True" in out and "after close" in out
