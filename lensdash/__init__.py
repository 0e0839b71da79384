"""lensdash: see what a confusion lens does to a classifier's loss and gradients.

Lens convention throughout: a lens ``C`` is K×K, row ``i`` is the target
distribution used when the true label is ``i``; entries in ``[0, 1]``, rows
sum to 1. The identity lens is ordinary cross-entropy.
"""

from lensdash.errors import InputError, LensdashError, LensError
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
    merge_lens,
    normalize_lens,
    smoothing_lens,
    uniform_lens,
    validate_lens,
)
from lensdash.losses import (
    LensedCrossEntropyLoss,
    PredictionLensedCrossEntropyLoss,
    lensed_cross_entropy,
    prediction_lensed_cross_entropy,
    soft_target_cross_entropy,
)

__version__ = "0.1.0"

__all__ = [
    "ROW_SUM_ATOL",
    "InputError",
    "Lens",
    "LensError",
    "LensdashError",
    "LensedCrossEntropyLoss",
    "PredictionLensedCrossEntropyLoss",
    "Predictions",
    "align_lens",
    "confusion_lens",
    "distance_lens",
    "expand_lens",
    "hierarchy_distances",
    "hierarchy_lens",
    "identity_lens",
    "lens_to_bytes",
    "lensed_cross_entropy",
    "merge_lens",
    "normalize_lens",
    "prediction_lensed_cross_entropy",
    "read_lens",
    "read_predictions",
    "save_lens",
    "smoothing_lens",
    "soft_target_cross_entropy",
    "uniform_lens",
    "validate_lens",
]
