"""The lens families, named once: the registry that core, UI and CLI read.

Lens convention: row ``i`` of a lens is the target distribution used when the
true label is ``i``; rows sum to 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lensdash.errors import InputError


@dataclass(frozen=True)
class Family:
    """One lens family: its name (CLI, files, code), its label (UI) and its loss function.

    The loss is named here and imported when first used, so that reading the
    registry (the CLI's ``--help``) does not import torch.
    """

    name: str
    label: str
    loss_name: str

    @property
    def loss(self) -> Callable[..., Any]:
        """The functional loss of this family, from :mod:`lensdash.losses`."""
        from lensdash import losses

        return getattr(losses, self.loss_name)


FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        Family("target", "target-side (seed): KL(C[y] ‖ softmax)", "lensed_cross_entropy"),
        Family("prediction", "prediction-side: −log (softmax·C)[y]", "prediction_lensed_cross_entropy"),
    )
}

#: The family names in a fixed order (the first is the default).
FAMILY_NAMES: tuple[str, ...] = tuple(FAMILIES)


def family(name: str) -> Family:
    """The family called ``name``.

    Raises:
        InputError: no such family.

    Example:
        >>> family("target").label
        'target-side (seed): KL(C[y] ‖ softmax)'
    """
    try:
        return FAMILIES[name]
    except (KeyError, TypeError):
        raise InputError.build(
            f"a lens family in {sorted(FAMILIES)}",
            repr(name),
            fix="'target' is the seed's KL(C[y] || softmax), 'prediction' the forward correction.",
        ) from None


__all__ = ["FAMILIES", "FAMILY_NAMES", "Family", "family"]
