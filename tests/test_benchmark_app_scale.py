"""Smoke test of ``python -m benchmarks app_scale`` at a tiny size (the timings themselves are not tested)."""

import pytest

from benchmarks.__main__ import available, main


def test_listed():
    assert "app_scale" in available()


@pytest.mark.parametrize("fmt, cols", [("npz", 50), ("csv", 8)])
def test_runs_at_a_tiny_size(fmt, cols, capsys):
    main(["app_scale", "--rows", "200", "--cols", str(cols), "--format", fmt, "--repeats", "1"])
    out = capsys.readouterr().out
    assert "page ready / (read + analysis), median of 3 fresh sessions" in out
    assert "rerun / core of the same round" in out
    assert "largest figure" in out and "resident memory grown by the session" in out
