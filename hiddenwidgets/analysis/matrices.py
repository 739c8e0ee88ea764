"""Representations as matrices: the checks every geometry function shares (projection, probes, similarity).

A representation is a 2-D float tensor of shape (examples, features). Conv and sequence layers are pooled to that
shape by :func:`hiddenwidgets.representations.pool`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..pipeline.checks import check_whole_labels, is_complex, show

__all__ = ["RepresentationError", "as_class_labels", "as_labels", "as_matrix"]


class RepresentationError(ValueError):
    """Bad input to a representation function: the message says what was expected and what to try."""


def as_matrix(x: Any, name: str = "representation", dtype: torch.dtype = torch.float64, *,
              check_finite: bool = True) -> torch.Tensor:
    """``x`` (tensor, array or nested list) as a detached CPU tensor of shape (examples, features).

    Raises :class:`RepresentationError` for other shapes, fewer than 2 examples, non-finite values, values that
    are not numbers, and complex values (their imaginary part would be dropped). ``check_finite=False`` leaves the
    NaN/inf check to the caller (:func:`refuse_nonfinite`), for one whose result shows any NaN or inf anyway.
    """
    if is_complex(x) or (not isinstance(x, torch.Tensor) and np.asarray(x).dtype.kind == "c"):
        raise RepresentationError(f"{name} holds complex numbers; a representation is real-valued and converting "
                                  f"it would drop the imaginary part: pass x.real, x.abs() or "
                                  f"torch.view_as_real(x).flatten(1) (real and imaginary parts as features)")
    if isinstance(x, torch.Tensor):
        t = x.detach().to("cpu", dtype)
    else:
        try:
            arr = np.asarray(x)
        except (TypeError, ValueError) as err:
            raise RepresentationError(f"{name} must be a tensor or array of shape (examples, features); "
                                      f"got {type(x).__name__} ({err})") from err
        if arr.dtype.kind not in "biuf":
            raise RepresentationError(f"{name} must hold numbers; got {type(x).__name__} of {arr.dtype} values "
                                      f"({show(x)}): convert the data to a float tensor first")
        t = torch.as_tensor(arr, dtype=dtype)
    if t.ndim != 2:
        hint = ("pool conv or sequence layers to (examples, features) first, e.g. with "
                "hiddenwidgets.representations.pool" if t.ndim > 2 else "reshape to (examples, 1) for one feature")
        raise RepresentationError(f"{name} must have shape (examples, features); got {tuple(t.shape)}: {hint}")
    if t.shape[0] < 2:
        raise RepresentationError(f"{name} needs at least 2 examples; got {t.shape[0]}")
    if t.shape[1] < 1:
        raise RepresentationError(f"{name} has no features (shape {tuple(t.shape)})")
    if check_finite:
        refuse_nonfinite(t, name)
    return t


def refuse_nonfinite(t: torch.Tensor, name: str) -> None:
    """Raise :class:`RepresentationError` if the matrix ``t`` holds a NaN or inf, saying where."""
    # a NaN or inf anywhere makes the sum non-finite: one pass, no n × p mask; only then look where they are
    # (a sum that overflowed on finite values finds nothing here and passes)
    if not bool(torch.isfinite(t.sum())) and bool((bad := ~torch.isfinite(t)).any()):
        rows = bad.any(dim=1).nonzero().flatten()
        raise RepresentationError(f"{name} has NaN or inf in {len(rows)} of {t.shape[0]} examples (first: example "
                                  f"{rows[0].item()}); check the layer for overflow or drop those examples")


def as_labels(labels: Any, n: int, name: str = "labels") -> np.ndarray:
    """``labels`` as a 1-D numpy array of length ``n`` (any dtype: ints, strings, floats; complex is refused)."""
    if isinstance(labels, (str, bytes)):
        raise RepresentationError(f"{name} must hold one value per example; got the string {show(labels)}")
    arr = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if arr.dtype.kind == "c":
        raise RepresentationError(f"{name} holds complex numbers, whose imaginary part would be dropped; pass real "
                                  "values (one per example)")
    if arr.ndim != 1:
        arr = arr.reshape(-1) if arr.ndim == 2 and 1 in arr.shape else arr
    if arr.ndim != 1:
        raise RepresentationError(f"{name} must be one value per example (1-D); got shape {arr.shape}")
    if len(arr) != n:
        raise RepresentationError(f"{name} has {len(arr)} entries but there are {n} examples; pass one per example")
    return arr


def as_class_labels(labels: Any, n: int, name: str = "labels") -> np.ndarray:
    """Class labels, one per example: ints, strings or bools as given; floats only when all are whole numbers
    (converted to int64, exactly). Floats that are not whole (continuous values), NaN, inf and complex numbers are
    refused, never rounded. See :mod:`hiddenwidgets.pipeline.checks` for the rules every function shares."""
    return check_whole_labels(as_labels(labels, n, name), name, RepresentationError)
