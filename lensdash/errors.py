"""Errors a user can cause, with one message style.

Every message says what was expected, what was found, where (1-based row and
column, as a spreadsheet shows them) and how to fix it, so the app can show it
verbatim with ``st.error`` and the CLI can print it without a traceback.
"""

from __future__ import annotations

from typing import TypeVar

_E = TypeVar("_E", bound="LensdashError")


def _message(expected: str, found: str, where: str | None, fix: str | None) -> str:
    parts = []
    if where:
        parts.append(f"{where}: ")
    parts.append(f"expected {expected}, found {found}.")
    if fix:
        parts.append(f" {fix}")
    return "".join(parts)


class LensdashError(ValueError):
    """Base class of the errors a user can cause; a ``ValueError``."""

    @classmethod
    def build(
        cls: type[_E],
        expected: str,
        found: str,
        *,
        where: str | None = None,
        fix: str | None = None,
    ) -> _E:
        """Make an error whose message follows the project's one style."""
        return cls(_message(expected, found, where, fix))


class LensError(LensdashError):
    """A lens that is not a valid K×K row-stochastic matrix."""


class InputError(LensdashError):
    """Predictions, labels or files that lensdash cannot use."""
