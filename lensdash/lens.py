r"""Lenses: K×K row-stochastic matrices, their validation and constructors.

Convention used everywhere in lensdash: row ``i`` of a lens ``C`` is the target
distribution used when the true label is ``i``. Every entry is in ``[0, 1]`` and
every row sums to 1 (within :data:`ROW_SUM_ATOL`). The identity lens is plain
one-hot training.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from lensdash.errors import LensError

#: Largest ``|sum(row) - 1|`` a lens row may have. Chosen so that lenses typed
#: with three decimals (``0.333, 0.333, 0.334``) pass, while a row that is
#: plainly not a distribution (``0.5, 0.4``) does not.
ROW_SUM_ATOL = 1e-3

Classes = int | Sequence[str]


def class_names(classes: Classes) -> tuple[str, ...]:
    """Names for ``classes``: ``K`` gives ``("0", ..., "K-1")``; names are kept.

    Raises:
        LensError: fewer than 2 classes, or duplicate names.
    """
    names = tuple(str(i) for i in range(classes)) if isinstance(classes, int) else tuple(str(c) for c in classes)
    if len(names) < 2:
        raise LensError.build("at least 2 classes", f"{len(names)}", fix="A lens needs two or more classes.")
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise LensError.build(
                "unique class names",
                f"{name!r} twice",
                where=f"class {seen[name] + 1} and class {i + 1}",
                fix="Rename one of them.",
            )
        seen[name] = i
    return names


def _as_matrix(lens: object) -> Tensor:
    """Any lens form as a floating-point tensor, unvalidated; a :class:`Lens`'s own (read-only by contract) entries."""
    if isinstance(lens, Lens):
        return lens._matrix
    if isinstance(lens, Tensor):
        matrix = lens.detach()
    else:
        try:
            matrix = torch.as_tensor(lens, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise LensError.build(
                "a K×K matrix of numbers",
                f"{type(lens).__name__} that is not numeric ({exc})",
                fix="Pass a torch tensor, a nested list or a numpy array.",
            ) from None
    if not matrix.is_floating_point():
        matrix = matrix.to(torch.float64)
    return matrix


def validate_lens(lens: object, num_classes: int | None = None, *, atol: float = ROW_SUM_ATOL) -> Tensor:
    r"""Check that ``lens`` is a K×K row-stochastic matrix and return it as a tensor.

    Rows are target distributions: ``lens[i]`` is used when the true label is
    ``i``, so every entry is in ``[0, 1]`` and :math:`|\sum_j C_{ij} - 1| \le` ``atol``.

    Args:
        lens: a tensor, nested list, numpy array or :class:`Lens`.
        num_classes: the K the lens must have, if known.
        atol: row-sum tolerance (default :data:`ROW_SUM_ATOL` = 1e-3).

    Returns:
        The lens as a floating-point tensor (not copied when it already is one).

    Raises:
        LensError: not 2-D, not square, wrong K, NaN/inf, a negative entry,
            an all-zero row or a row not summing to 1. The message names the
            first offending row and column (1-based) and the value.

    Example:
        >>> validate_lens([[1.0, 0.0], [0.5, 0.5]]).shape
        torch.Size([2, 2])
    """
    matrix = _as_matrix(lens)
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
        raise LensError.build(
            "a square K×K matrix",
            f"shape {tuple(matrix.shape)}",
            fix="A lens has one row and one column per class.",
        )
    k = matrix.shape[0]
    if k < 2:
        raise LensError.build("at least 2 classes", f"K={k}", fix="A lens needs two or more classes.")
    if num_classes is not None and k != num_classes:
        raise LensError.build(
            f"a {num_classes}×{num_classes} lens (one row per class of the predictions)",
            f"{k}×{k}",
            fix="Use a lens built for these classes, or build one from the presets.",
        )
    bad = ~torch.isfinite(matrix)
    if bad.any():
        i, j = _first(bad)
        raise LensError.build(
            "a finite number",
            f"{matrix[i, j].item()}",
            where=f"lens row {i + 1}, column {j + 1}",
            fix="Replace it with a probability in [0, 1].",
        )
    neg = matrix < 0
    if neg.any():
        i, j = _first(neg)
        raise LensError.build(
            "a non-negative entry",
            f"{matrix[i, j].item():.6g}",
            where=f"lens row {i + 1}, column {j + 1}",
            fix="Lens entries are probabilities; use 0 for classes a row does not target.",
        )
    sums = matrix.sum(dim=1, dtype=torch.float64)
    zero = sums == 0
    if zero.any():
        i = int(zero.nonzero()[0, 0])
        raise LensError.build(
            "a row with some positive weight",
            "a row of zeros",
            where=f"lens row {i + 1}",
            fix="Put 1 on the diagonal for an unlensed class.",
        )
    off = (sums - 1).abs() > atol
    if off.any():
        i = int(off.nonzero()[0, 0])
        raise LensError.build(
            f"a row summing to 1 (within {atol:g})",
            f"a sum of {sums[i].item():.6g}",
            where=f"lens row {i + 1}",
            fix="Rows are target distributions; normalise the lens (normalize_lens) to fix the sums.",
        )
    return matrix


def lens_matrix(
    lens: object,
    num_classes: int | None = None,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """The one way to turn any lens form into its validated K×K matrix.

    Lens convention: row ``i`` is the target distribution used when the true
    label is ``i``; rows sum to 1.

    Args:
        lens: a :class:`Lens`, tensor, nested list or numpy array.
        num_classes: the K the lens must have, if known.
        dtype: the floating-point dtype wanted (default: the lens's own, float64 for lists).
        device: the device wanted (default: the lens's own).

    Returns:
        A K×K tensor that the caller may modify freely only if it made the copy
        itself: it shares memory with a tensor passed in when no conversion was needed.

    Raises:
        LensError: see :func:`validate_lens`.

    Example:
        >>> lens_matrix(Lens([[1, 0], [0, 1]]), dtype=torch.float32)
        tensor([[1., 0.],
                [0., 1.]])
    """
    matrix = validate_lens(lens, num_classes)
    out = matrix.detach().to(dtype=dtype or matrix.dtype, device=device)
    if isinstance(lens, Lens) and out.data_ptr() == matrix.data_ptr():
        out = out.clone()  # never hand out a Lens's own storage
    return out


def _first(mask: Tensor) -> tuple[int, int]:
    i, j = mask.nonzero()[0].tolist()
    return int(i), int(j)


def normalize_lens(lens: object) -> Tensor:
    r"""Divide each row by its sum so that rows are target distributions.

    Args:
        lens: a K×K matrix with non-negative, finite entries.

    Returns:
        A new K×K tensor whose rows sum to 1.

    Raises:
        LensError: NaN/inf, negative entries or an all-zero row (there is no
            distribution to scale it to).

    Example:
        >>> normalize_lens([[2.0, 2.0], [0.0, 3.0]])
        tensor([[0.5000, 0.5000],
                [0.0000, 1.0000]], dtype=torch.float64)
    """
    matrix = _as_matrix(lens)
    validate_lens(matrix, atol=math.inf)  # everything but the row sums, which we fix
    return matrix / matrix.sum(dim=1, keepdim=True)


class Lens:
    r"""A validated K×K lens with class names.

    Row ``i`` is the target distribution used when the true label is ``i``;
    rows sum to 1. Pass a :class:`Lens` or a plain tensor wherever lensdash
    takes a lens; a :class:`Lens` also remembers its class names (for files
    and the app) and caches the structure the loss uses for its fast path.

    Args:
        matrix: K×K entries (tensor, nested list or numpy array).
        classes: K class names, or omit for ``"0", ..., "K-1"``.
        atol: row-sum tolerance.

    Raises:
        LensError: see :func:`validate_lens`; also a name count that is not K.

    Example:
        >>> lens = Lens([[0.5, 0.5], [0.5, 0.5]], classes=["cat", "dog"])
        >>> lens.num_classes, lens.classes
        (2, ('cat', 'dog'))
    """

    def __init__(self, matrix: object, classes: Classes | None = None, *, atol: float = ROW_SUM_ATOL):
        # A snapshot: later edits of the caller's tensor must not reach the lens or its cached plans.
        self._matrix = validate_lens(matrix, atol=atol).detach().clone()
        k = self._matrix.shape[0]
        self.classes = class_names(k if classes is None else classes)
        if len(self.classes) != k:
            raise LensError.build(
                f"{k} class names (one per lens row)",
                f"{len(self.classes)}",
                fix="Give one name per row of the lens.",
            )
        self._plans: dict[tuple[str, torch.dtype, torch.device], object] = {}

    @property
    def matrix(self) -> Tensor:
        """The K×K entries, as a new tensor on every access.

        A :class:`Lens` is an immutable snapshot: writing into the returned
        tensor changes neither the lens nor the losses computed with it.
        """
        return self._matrix.clone()

    @property
    def num_classes(self) -> int:
        return self._matrix.shape[0]

    def to(self, *args, **kwargs) -> Lens:
        """A copy moved like ``Tensor.to`` (device and/or dtype)."""
        return Lens(self._matrix.to(*args, **kwargs), self.classes, atol=math.inf)

    def is_identity(self) -> bool:
        eye = torch.eye(self.num_classes, dtype=self._matrix.dtype, device=self._matrix.device)
        return bool(torch.equal(self._matrix, eye))

    def __repr__(self) -> str:
        return f"Lens(K={self.num_classes}, classes={list(self.classes)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Lens):
            return NotImplemented
        return self.classes == other.classes and torch.equal(self._matrix, other._matrix.to(self._matrix))

    __hash__ = None  # type: ignore[assignment]


# ----------------------------------------------------------------- constructors


def _square_non_negative(values: object, what: str, fix: str) -> Tensor:
    """A float64 K×K matrix with finite, non-negative entries (distances, confusion counts)."""
    matrix = _as_matrix(values).to(torch.float64)
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
        raise LensError.build(f"a square K×K {what} matrix", f"shape {tuple(matrix.shape)}", fix=fix)
    bad = ~torch.isfinite(matrix) | (matrix < 0)
    if bad.any():
        i, j = _first(bad)
        raise LensError.build(
            f"a finite, non-negative {what} value",
            f"{matrix[i, j].item()}",
            where=f"{what} row {i + 1}, column {j + 1}",
            fix=fix,
        )
    return matrix


def _lens(matrix: Tensor, names: tuple[str, ...]) -> Lens:
    return Lens(matrix, names)


def identity_lens(classes: Classes) -> Lens:
    """The identity lens: plain one-hot cross-entropy.

    Example:
        >>> identity_lens(3).matrix
        tensor([[1., 0., 0.],
                [0., 1., 0.],
                [0., 0., 1.]], dtype=torch.float64)
    """
    names = class_names(classes)
    return _lens(torch.eye(len(names), dtype=torch.float64), names)


def uniform_lens(classes: Classes) -> Lens:
    """Every row uniform: the label carries no information (a reference point)."""
    names = class_names(classes)
    k = len(names)
    return _lens(torch.full((k, k), 1.0 / k, dtype=torch.float64), names)


def _index_of(names: tuple[str, ...], item: object, what: str) -> int:
    if isinstance(item, int) and not isinstance(item, bool):
        if 0 <= item < len(names):
            return item
        raise LensError.build(
            f"a class index in 0..{len(names) - 1}", str(item), where=what, fix="Use a valid class index or name."
        )
    key = str(item)
    if key in names:
        return names.index(key)
    raise LensError.build(
        f"one of the class names {list(names)}", repr(key), where=what, fix="Check the spelling of the class name."
    )


def merge_lens(classes: Classes, groups: Iterable[Iterable[object]]) -> Lens:
    r"""Treat each group of classes as interchangeable.

    For a true label in group :math:`G`, the target is uniform over :math:`G`:
    :math:`C_{ij} = 1/|G|` for :math:`j \in G`. Classes in no group keep their
    one-hot row. This is the seed notebook's lens for ``groups=[[0, 1]]``.

    Args:
        classes: K or K class names.
        groups: groups of class names or indices; a class may be in one group.

    Raises:
        LensError: unknown class, or a class in two groups.

    Example:
        >>> merge_lens(4, [[0, 1]]).matrix[0]
        tensor([0.5000, 0.5000, 0.0000, 0.0000], dtype=torch.float64)
    """
    names = class_names(classes)
    matrix = torch.eye(len(names), dtype=torch.float64)
    owner: dict[int, int] = {}
    for g, group in enumerate(groups):
        members = [_index_of(names, item, f"group {g + 1}") for item in group]
        for m in members:
            if m in owner and owner[m] != g:
                raise LensError.build(
                    "each class in at most one group",
                    f"{names[m]!r} in groups {owner[m] + 1} and {g + 1}",
                    fix="Merge the two groups or remove the class from one.",
                )
            owner[m] = g
        members = sorted(set(members))
        if len(members) < 2:
            continue
        idx = torch.tensor(members)
        matrix[idx.unsqueeze(1), idx] = 1.0 / len(members)
    return _lens(matrix, names)


def smoothing_lens(classes: Classes, epsilon: float) -> Lens:
    r"""Label smoothing: :math:`C = (1-\epsilon) I + \epsilon / K`.

    This is PyTorch's convention (``F.cross_entropy(..., label_smoothing=eps)``):
    the smoothing mass is spread over all K classes, the true one included.

    Raises:
        LensError: ``epsilon`` outside ``[0, 1]``.

    Example:
        >>> smoothing_lens(2, 0.2).matrix
        tensor([[0.9000, 0.1000],
                [0.1000, 0.9000]], dtype=torch.float64)
    """
    names = class_names(classes)
    if not (0.0 <= float(epsilon) <= 1.0):
        raise LensError.build("epsilon in [0, 1]", f"{epsilon}", fix="Typical values are 0.05 to 0.2.")
    k = len(names)
    matrix = torch.full((k, k), float(epsilon) / k, dtype=torch.float64)
    matrix.diagonal().add_(1.0 - float(epsilon))
    return _lens(matrix, names)


def distance_lens(distances: object, beta: float, classes: Classes | None = None) -> Lens:
    r"""Soft labels from class distances (Bertinetto et al. 2020).

    .. math:: C_{ij} = \frac{\exp(-\beta\, d(i,j))}{\sum_k \exp(-\beta\, d(i,k))}

    Args:
        distances: K×K non-negative distances, ``d(i, i) = 0``.
        beta: sharpness; large ``beta`` approaches the identity lens.
        classes: K class names (default ``"0"..``).

    Raises:
        LensError: non-square, NaN, negative distances or ``beta < 0``.

    Example:
        >>> distance_lens([[0, 1], [1, 0]], beta=0.0).matrix
        tensor([[0.5000, 0.5000],
                [0.5000, 0.5000]], dtype=torch.float64)
    """
    d = _square_non_negative(distances, "distance", "Distances are >= 0, one row and column per class.")
    if not (float(beta) >= 0.0) or math.isinf(float(beta)):
        raise LensError.build("a finite beta >= 0", f"{beta}", fix="Try beta between 0.5 and 10.")
    names = class_names(d.shape[0] if classes is None else classes)
    if len(names) != d.shape[0]:
        raise LensError.build(f"{d.shape[0]} class names", f"{len(names)}", fix="Give one name per row.")
    return _lens(torch.softmax(-float(beta) * d, dim=1), names)


def hierarchy_distances(classes: Classes, hierarchy: object) -> Tensor:
    r"""Class distances from a hierarchy: the height of the lowest common ancestor.

    The height of a node is the number of edges on the longest path from it down to a leaf; ``d(i, i) = 0``
    (Bertinetto et al. 2020). ``hierarchy`` is a :class:`~lensdash.hierarchy.Hierarchy`
    (:func:`~lensdash.read_hierarchy`) or nested lists of class names, e.g.
    ``[["cat", "dog"], ["car", ["bus", "truck"]]]``, where each inner list is a group and classes that appear
    nowhere hang off the root.

    Raises:
        LensError: nested lists naming an unknown class or a class twice.
        InputError: a class missing from a :class:`~lensdash.hierarchy.Hierarchy`.

    Example:
        >>> hierarchy_distances(["a", "b", "c"], [["a", "b"]])
        tensor([[0., 1., 2.],
                [1., 0., 2.],
                [2., 2., 0.]], dtype=torch.float64)
    """
    from lensdash.hierarchy import as_hierarchy  # lensdash.hierarchy imports this module

    names = class_names(classes)
    return as_hierarchy(hierarchy, names).distances(names)


def hierarchy_lens(classes: Classes, hierarchy: object, beta: float) -> Lens:
    r"""Soft labels from a hierarchy, exactly as Bertinetto et al. 2020 define them.

    .. math:: C_{yj} = \frac{\exp(-\beta\, d(y,j)/d_{max})}{\sum_k \exp(-\beta\, d(y,k)/d_{max})}

    with ``d`` the LCA height (:func:`hierarchy_distances`) and :math:`d_{max}` its largest value, so the paper's
    β values (4–30) mean what they mean there. Row ``y`` is the target distribution when the true label is ``y``.
    To choose β by the share of each row kept on the true class or its group, see
    :func:`lensdash.hierarchy.beta_for_mass` and :func:`lensdash.hierarchy.default_beta`.

    Args:
        classes: K class names (or K).
        hierarchy: a :class:`~lensdash.hierarchy.Hierarchy` or nested lists of class names.
        beta: sharpness >= 0; 0 gives uniform rows, large β the identity.

    Raises:
        LensError: ``beta < 0`` or nested lists naming unknown classes.
        InputError: a class missing from a :class:`~lensdash.hierarchy.Hierarchy`.

    Example:
        >>> hierarchy_lens(["a", "b", "c"], [["a", "b"]], beta=4.0).matrix[0].round(decimals=3)
        tensor([0.8670, 0.1170, 0.0160], dtype=torch.float64)
    """
    names = class_names(classes)
    d = hierarchy_distances(names, hierarchy)
    return distance_lens(d / d.max(), beta, names)


def confusion_lens(confusion: object, alpha: float, classes: Classes | None = None) -> Lens:
    r"""A lens from a confusion matrix: :math:`C = (1-\alpha) I + \alpha R`.

    ``R`` is ``confusion`` with rows normalised, where row ``i`` holds counts
    (or mean predicted probabilities) for true class ``i``. A class with no
    samples (an all-zero row) keeps its identity row.

    Raises:
        LensError: non-square, NaN/negative entries, ``alpha`` outside ``[0, 1]``.

    Example:
        >>> confusion_lens([[8, 2], [0, 10]], alpha=0.5).matrix
        tensor([[0.9000, 0.1000],
                [0.0000, 1.0000]], dtype=torch.float64)
    """
    counts = _square_non_negative(confusion, "confusion", "Rows are true classes, columns predicted; counts are >= 0.")
    if not (0.0 <= float(alpha) <= 1.0):
        raise LensError.build("alpha in [0, 1]", f"{alpha}", fix="0 keeps the identity, 1 uses the confusion alone.")
    k = counts.shape[0]
    eye = torch.eye(k, dtype=torch.float64)
    sums = counts.sum(dim=1, keepdim=True)
    rows = torch.where(sums > 0, counts / sums.clamp_min(1e-300), eye)
    names = class_names(k if classes is None else classes)
    return _lens((1 - float(alpha)) * eye + float(alpha) * rows, names)


def expand_lens(lens: Lens, classes: Classes) -> Lens:
    """Place a lens over a subset of named classes into the full class list.

    Rows and columns are matched by name; classes the lens does not name keep
    their one-hot (identity) row.

    Raises:
        LensError: the lens names a class not in ``classes``.

    Example:
        >>> small = Lens([[0.5, 0.5], [0.5, 0.5]], classes=["b", "c"])
        >>> expand_lens(small, ["a", "b", "c"]).matrix
        tensor([[1.0000, 0.0000, 0.0000],
                [0.0000, 0.5000, 0.5000],
                [0.0000, 0.5000, 0.5000]], dtype=torch.float64)
    """
    names = class_names(classes)
    missing = [c for c in lens.classes if c not in names]
    if missing:
        raise LensError.build(
            f"lens classes among the prediction classes {list(names)}",
            f"unknown {missing}",
            fix="Rename the lens classes to match the predictions' header.",
        )
    idx = torch.tensor([names.index(c) for c in lens.classes])
    matrix = torch.eye(len(names), dtype=torch.float64)
    sub = lens.matrix.to(torch.float64).cpu()
    matrix[idx] = 0.0
    matrix[idx.unsqueeze(1), idx] = sub
    return _lens(matrix, names)


def align_lens(lens: Lens, classes: Classes) -> tuple[Lens, str | None]:
    """Match a lens to the predictions' classes by name.

    Returns the lens reordered to ``classes`` (or expanded, when it covers a
    subset) and a note saying what was done, or ``None`` when nothing was.

    Raises:
        LensError: the lens names classes the predictions do not have.
    """
    names = class_names(classes)
    if lens.classes == names:
        return lens, None
    if set(lens.classes) == set(names):
        order = torch.tensor([lens.classes.index(c) for c in names])
        return _lens(lens.matrix[order][:, order], names), "The lens rows were reordered to match the class names."
    if lens.classes == class_names(len(lens.classes)):  # an unnamed lens: match by position
        validate_lens(lens.matrix, len(names))
        return _lens(lens.matrix, names), None
    expanded = expand_lens(lens, names)
    others = [c for c in names if c not in lens.classes]
    return (
        expanded,
        f"The lens covers {len(lens.classes)} of {len(names)} classes; "
        f"{others[:5]}{'…' if len(others) > 5 else ''} keep identity rows.",
    )
