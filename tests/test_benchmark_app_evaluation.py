"""The Evaluation tab's benchmark at a tiny size, so that it cannot rot."""

from benchmarks.__main__ import available, main


def test_the_evaluation_benchmark_runs_at_a_tiny_size(capsys):
    assert "app_evaluation" in available()
    main(["app_evaluation", "--rows", "200", "--cols", "4", "--repeats", "2"])
    assert "evaluation rerun / core of the same round" in capsys.readouterr().out
