"""The structure of a lens that the losses compute with (private).

Lenses people build are mostly structured: identity, merged groups, label
smoothing, a few confused pairs. Each row is a per-row constant background
plus a few larger entries. Keeping that form lets the losses skip ``C[y]``
(N×K) and touch only ``N×m`` entries, ``m`` the widest row's support.
A lens without such structure keeps its dense form.

Plans are cached only where the lens cannot change under them: on an
immutable :class:`~lensdash.Lens`, or for a plain tensor keyed by its identity
and its version counter (an in-place edit bumps the version, so the plan is rebuilt).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import torch
from torch import Tensor

from lensdash.lens import Lens, lens_matrix, validate_lens


@dataclass(frozen=True)
class TargetPlan:
    """Row form of ``C``: ``C[i] = background[i] + scatter(idx[i], val[i])``, or dense."""

    rowsum: Tensor  # (K,) sum_j C_ij (1 within the lens tolerance)
    dense: Tensor | None  # (K, K) when the sparse form would not pay
    background: Tensor | None  # (K,), None when every row's background is 0
    idx: Tensor | None  # (K, m) column indices of the entries above the background
    val: Tensor | None  # (K, m) those entries minus the background; 0 pads
    # Kernel tables derived from this plan (smoothing folded in, entropies), built once per argument set.
    derived: dict = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class PredictionPlan:
    """Column form of ``C`` for ``log (p @ C)[y]``: ``C[:, y] = beta + scatter(col_idx[y], col_val[y])``, or dense."""

    log_columns: Tensor | None  # (K, K) log C^T when dense
    col_idx: Tensor | None  # (K, m)
    col_logval: Tensor | None  # (K, m) log of the entries above beta; -inf pads
    log_beta: Tensor | None  # () log of the one background shared by all entries; None when 0
    derived: dict = field(default_factory=dict, compare=False, repr=False)  # as TargetPlan.derived


def _sparse_pays(width: int, k: int) -> bool:
    return width <= max(1, k // 4)


def target_plan(c: Tensor, structured: bool = True) -> TargetPlan:
    """The row form of ``c``; ``structured=False`` keeps it dense without reading values back (for compiled code)."""
    rowsum = c.sum(dim=1)
    if not structured:
        return TargetPlan(rowsum, c.contiguous(), None, None, None)
    k = c.shape[0]
    background = c.amin(dim=1)
    above = c - background.unsqueeze(1)
    width = int((above > 0).sum(dim=1).max())
    if not _sparse_pays(width, k):
        return TargetPlan(rowsum, c.contiguous(), None, None, None)
    val, idx = above.topk(max(width, 1), dim=1)
    return TargetPlan(rowsum, None, background if bool(background.any()) else None, idx, val)


def prediction_plan(c: Tensor, structured: bool = True) -> PredictionPlan:
    """The column form of ``c``; ``structured=False`` keeps it dense (see :func:`target_plan`)."""
    if not structured:
        return PredictionPlan(torch.log(c.T).contiguous(), None, None, None)
    k = c.shape[0]
    beta = c.min()
    above = (c - beta).T
    width = int((above > 0).sum(dim=1).max())
    if not _sparse_pays(width, k):
        return PredictionPlan(torch.log(c.T).contiguous(), None, None, None)
    val, idx = above.topk(max(width, 1), dim=1)
    log_beta = torch.log(beta) if float(beta) > 0 else None
    return PredictionPlan(None, idx, torch.log(val), log_beta)


_BUILDERS = {"target": target_plan, "prediction": prediction_plan}

# Plans for plain tensors, keyed by id() and checked against a weak reference
# and the tensor's version counter, so an in-place edit is never missed.
_tensor_plans: dict[int, tuple[weakref.ref, int, dict]] = {}


def _store_for_tensor(lens: Tensor, num_classes: int) -> dict:
    key = id(lens)
    entry = _tensor_plans.get(key)
    if entry is not None and entry[0]() is lens and entry[1] == lens._version:
        return entry[2]
    validate_lens(lens, num_classes)
    store: dict = {}

    def forget(_ref: weakref.ref) -> None:  # the tensor is gone: its id may be reused
        _tensor_plans.pop(key, None)

    _tensor_plans[key] = (weakref.ref(lens, forget), lens._version, store)
    return store


def plan_for(lens: object, side: str, num_classes: int, dtype: torch.dtype, device: torch.device):
    """The cached plan of ``lens`` for one side, dtype and device (validated once per lens version).

    Inside ``torch.compile`` nothing is read back to the host: the lens is
    used densely (no structure search, no validation, no cache).
    """
    if torch.compiler.is_compiling():
        matrix = lens._matrix if isinstance(lens, Lens) else lens
        if not isinstance(matrix, Tensor):
            matrix = torch.as_tensor(matrix)
        return _BUILDERS[side](matrix.detach().to(device=device, dtype=dtype), False)
    if isinstance(lens, Lens):
        if lens.num_classes != num_classes:
            validate_lens(lens, num_classes)
        store, matrix = lens._plans, lens._matrix
    elif isinstance(lens, Tensor) and not lens.requires_grad:
        store, matrix = _store_for_tensor(lens, num_classes), lens
    else:
        matrix = lens_matrix(lens, num_classes)
        store = {}
    if matrix.shape[0] != num_classes:
        validate_lens(matrix, num_classes)
    key = (side, dtype, device)
    plan = store.get(key)
    if plan is None:
        plan = _BUILDERS[side](matrix.detach().to(device=device, dtype=dtype))
        store[key] = plan
    return plan
