"""The error every transformer analysis raises for input it cannot serve (it says why and what to try)."""

from __future__ import annotations

__all__ = ["TransformerError"]


class TransformerError(ValueError):
    """A transformer analysis was given something it cannot compute on: the message says what was wrong, what
    was expected, and what to try."""
