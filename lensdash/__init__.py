"""lensdash: see what a confusion lens does to a classifier's loss and gradients.

Lens convention throughout: a lens ``C`` is K×K, row ``i`` is the target
distribution used when the true label is ``i``; entries in ``[0, 1]``, rows
sum to 1. The identity lens is ordinary cross-entropy.
"""

from lensdash.compare import (
    BootstrapInterval,
    PairedCounts,
    PairedPredictions,
    comparison_from_counts,
    comparison_summary,
    confusion_difference,
    disagreements,
    mcnemar_exact_p,
    pair_predictions,
    paired_bootstrap,
    paired_counts,
    per_class_comparison,
    top1_correct,
)
from lensdash.errors import InputError, LensdashError, LensError
from lensdash.hierarchy import (
    Hierarchy,
    HierarchySums,
    beta_for_mass,
    default_beta,
    hierarchy_metrics,
    mass_kept,
)
from lensdash.hierarchy_files import read_hierarchy
from lensdash.io import Predictions, lens_to_bytes, read_lens, read_predictions, save_lens
from lensdash.lens import (
    ROW_SUM_ATOL,
    Lens,
    align_lens,
    confusion_lens,
    distance_lens,
    expand_lens,
    hierarchy_distances,
    hierarchy_lens,
    identity_lens,
    lens_matrix,
    merge_lens,
    normalize_lens,
    smoothing_lens,
    uniform_lens,
    validate_lens,
)
from lensdash.losses import (
    LensedCrossEntropyLoss,
    PredictionLensedCrossEntropyLoss,
    check_loss_inputs,
    lensed_cross_entropy,
    prediction_lensed_cross_entropy,
    soft_target_cross_entropy,
)
from lensdash.metrics import (
    MetricSums,
    averaged_scores,
    calibration_bins,
    calibration_error,
    lens_rule,
    precision_recall_f1,
    reliability_table,
    top_k_hits,
)
from lensdash.slices import SliceAccumulator, Slices, slice_table

__version__ = "0.1.0"

__all__ = [
    "ROW_SUM_ATOL",
    "BootstrapInterval",
    "Hierarchy",
    "HierarchySums",
    "InputError",
    "Lens",
    "LensError",
    "LensdashError",
    "LensedCrossEntropyLoss",
    "MetricSums",
    "PairedCounts",
    "PairedPredictions",
    "PredictionLensedCrossEntropyLoss",
    "Predictions",
    "SliceAccumulator",
    "Slices",
    "align_lens",
    "averaged_scores",
    "beta_for_mass",
    "calibration_bins",
    "calibration_error",
    "check_loss_inputs",
    "comparison_from_counts",
    "comparison_summary",
    "confusion_difference",
    "confusion_lens",
    "default_beta",
    "disagreements",
    "distance_lens",
    "expand_lens",
    "hierarchy_distances",
    "hierarchy_lens",
    "hierarchy_metrics",
    "identity_lens",
    "lens_matrix",
    "lens_rule",
    "lens_to_bytes",
    "lensed_cross_entropy",
    "mass_kept",
    "mcnemar_exact_p",
    "merge_lens",
    "normalize_lens",
    "pair_predictions",
    "paired_bootstrap",
    "paired_counts",
    "per_class_comparison",
    "precision_recall_f1",
    "prediction_lensed_cross_entropy",
    "read_hierarchy",
    "read_lens",
    "read_predictions",
    "reliability_table",
    "save_lens",
    "slice_table",
    "smoothing_lens",
    "soft_target_cross_entropy",
    "top1_correct",
    "top_k_hits",
    "uniform_lens",
    "validate_lens",
]
