r"""Two models on the same samples: pairing, a paired test, a paired bootstrap, per-class differences.

Lens convention: wherever a lens is taken, row ``i`` is the target distribution used when the true label is ``i``;
rows sum to 1. Every difference is **B − A** (positive: B has the larger value).

The pieces, each usable on its own by the app and the CLI:

* :func:`pair_predictions` lines up B's rows with A's (by an id column when both have one, by row order otherwise)
  and refuses predictions that are not of the same samples.
* :class:`PairedCounts` holds the discordant counts and loss sums. It is a sum over samples, so shards add up
  exactly (``counts_a + counts_b``, or ``all_reduce`` of :meth:`PairedCounts.to_tensor` under torchrun).
* :func:`mcnemar_exact_p` is McNemar's exact test on the discordant pairs:
  with :math:`b` = samples only A gets right and :math:`c` = samples only B gets right,
  :math:`p = \min\bigl(1,\ 2\,F_{\mathrm{Bin}(b+c,\,1/2)}(\min(b, c))\bigr)`, as ``statsmodels``'
  ``mcnemar(table, exact=True)``.
* :func:`paired_bootstrap` resamples the N samples with replacement (the same indices for A and B, so the pairing is
  kept) and gives a percentile interval for the difference of the mean losses.
* :func:`shared_id_column` names the id column two files share (the app's and the CLI's rule).
* :func:`per_class_comparison`, :func:`confusion_difference`, :func:`disagreements` and
  :func:`comparison_summary` (the ``comparison.json`` dict).

Correctness is an input (a boolean vector per model), so the caller chooses the rule: top-1 (:func:`top1_correct`)
or a lens-aware rule.

Sharding (torchrun): the counts and loss sums stream exactly. The bootstrap needs the per-sample pairs; it only uses
the per-sample difference :math:`d_n = \ell^B_n - \ell^A_n`, so the CLI keeps one float64 per sample per loss
(8 bytes per sample for the lensed loss, 16 with the unlensed one too: 100 million samples are 0.8 GB) and gathers
the shards' differences in rank order before calling :func:`paired_bootstrap`. A streaming alternative (the Poisson
bootstrap, one Poisson(1) weight per sample and resample, drawn from a generator keyed by the sample's id) needs no
per-sample storage but costs B random draws per sample and gives a different, not numpy-reproducible, interval; at
8 bytes per sample keeping the differences is the simpler exact choice.

Layout (private modules by job; this module is the public face): ``_compare_pairing`` (pairing, id columns),
``_compare_stats`` (counts, McNemar, bootstrap), ``_compare_tables`` (per-class, confusion difference,
disagreements, summary) and ``_compare_stream`` (the CLI report's streamed, sharded comparison).
"""

from __future__ import annotations

from lensdash._compare_pairing import (
    ID_COLUMNS,
    MAX_LISTED,
    PairedPredictions,
    pair_predictions,
    shared_id_column,
)
from lensdash._compare_stats import (
    MAX_BOOTSTRAP_ELEMENTS,
    BootstrapInterval,
    PairedCounts,
    bootstrap_indices,
    mcnemar_exact_p,
    paired_bootstrap,
    paired_counts,
    top1_correct,
)
from lensdash._compare_tables import (
    comparison_from_counts,
    comparison_summary,
    confusion_difference,
    disagreements,
    per_class_comparison,
)

__all__ = [
    "ID_COLUMNS",
    "MAX_BOOTSTRAP_ELEMENTS",
    "MAX_LISTED",
    "BootstrapInterval",
    "PairedCounts",
    "PairedPredictions",
    "bootstrap_indices",
    "comparison_from_counts",
    "comparison_summary",
    "confusion_difference",
    "disagreements",
    "mcnemar_exact_p",
    "pair_predictions",
    "paired_bootstrap",
    "paired_counts",
    "per_class_comparison",
    "shared_id_column",
    "top1_correct",
]
