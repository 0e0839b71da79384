"""Smoke test of ``python -m benchmarks.hierarchy`` at a tiny size (the timings themselves are not tested)."""

import lensdash as ld
from benchmarks import hierarchy as bench


def test_benchmark_runs_at_a_tiny_size(capsys):
    tree = ld.read_hierarchy(bench.wordnet_like(30))
    assert len(tree.leaves) == 30 and 6 <= tree.height[tree.root] <= 16
    result = bench.run(leaves=20, samples=200, repeats=1)
    assert result["leaves"] == 20 and result["read_hierarchy_s"] > 0 and result["metrics_over_softmax_topk"] > 0
    bench.main(["--leaves", "10", "--samples", "50", "--repeats", "1"])
    assert '"hierarchy_metrics_s"' in capsys.readouterr().out
