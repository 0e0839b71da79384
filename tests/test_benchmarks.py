"""Every benchmark runs at a tiny size, so that none of them rots between the runs that produce the figures."""

from __future__ import annotations

import pytest

from benchmarks.__main__ import available, main


def test_every_benchmark_module_is_listed():
    assert {"app", "lab", "loss", "read", "report"} <= set(available())


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["loss", "--scale", "0.0005", "--no-compiled"], "dense lens vs F.cross_entropy"),
        (["read", "--rows", "300", "--cols", "5", "--repeats", "2"], "read_predictions / faster engine"),
        (["lab", "--repeats", "1", "--epochs", "2"], "digits: default run"),
        (["report", "--rows", "2000", "--cols", "5", "--format", "csv"], "rows/s; peak RSS"),
        (["app", "--rows", "200", "--cols", "4", "--repeats", "2"], "rerun / core of the same round"),
    ],
    ids=["loss", "read", "lab", "report", "app"],
)
def test_benchmark_runs_at_a_tiny_size(argv, expected, capsys):
    main(argv)
    assert expected in capsys.readouterr().out
