"""Argument checks shared by the public functions and views: bad input is refused where it enters, with a message
that names the parameter, shows the value (shortened if long), says what was expected and what to try.

The same rules hold everywhere:

- **Counts, sizes and single indices are ints.** ``bool`` is refused (``True`` is an int in Python, but
  ``batch_size=True`` is a mistake), and so is a float even when it is whole: ``32.0`` usually means that a
  computation such as ``n / 2`` went astray. numpy integers and 0-d integer tensors are ints.
- **Per-example labels and group ids** (``labels``, ``groups``: values that name a class) may be floats when every
  value is a whole number, since labels often arrive as float tensors or float columns; they are then converted
  to int64, which is exact. A float label that is not whole, NaN or inf is refused, never rounded or truncated.
- **Indices and class targets** (positions in an array or in a model's output) must be integers, as numpy and
  torch indexing require: a float array is refused even when whole (convert with ``.long()``).
- **Complex numbers are refused everywhere**: converting them to real numbers would drop the imaginary part.
- **Real-number options** refuse bools, strings, complex numbers, NaN and inf.
- **A string choice** that is not valid lists the valid ones and suggests the closest (``difflib``).
- **Unknown keyword arguments** raise ``TypeError`` naming the valid ones (:func:`keywords_checked`).

Each check takes ``error``, the exception class to raise (a module's own error, such as
:class:`~hiddenwidgets.RepresentationError`, or ``traitlets.TraitError`` in a trait validator).
"""

from __future__ import annotations

import difflib
import functools
import inspect
import math
import numbers
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import torch

__all__ = [
    "check_bool",
    "check_callable",
    "check_choice",
    "check_epoch",
    "check_epochs",
    "check_int",
    "check_keywords",
    "check_mapping",
    "check_names",
    "check_number",
    "check_whole_labels",
    "closest",
    "closest_name",
    "is_complex",
    "keywords_checked",
    "show",
    "what",
]

FnT = TypeVar("FnT", bound=Callable[..., Any])


def show(value: Any, limit: int = 80) -> str:
    """``repr(value)`` shortened to about ``limit`` characters (a tensor or array: its type, dtype and shape)."""
    if isinstance(value, torch.Tensor) and value.numel() > 8:
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    if isinstance(value, np.ndarray) and value.size > 8:
        return f"a {value.dtype} array of shape {value.shape}"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 15] + " …" + text[-12:]


def what(value: Any) -> str:
    """The type and (shortened) value, for "got ..." in a message: ``str 'x'``, ``a torch.float32 tensor of
    shape (12, 5)``."""
    text = show(value)
    return text if text.startswith("a ") and isinstance(value, (torch.Tensor, np.ndarray)) else \
        f"{type(value).__name__} {text}"


def closest_name(value: Any, choices: Iterable[str]) -> str | None:
    """The closest of ``choices`` to a string ``value`` (difflib; else a match up to case, or a prefix)."""
    if not isinstance(value, str):
        return None
    choices = [str(c) for c in choices]
    match = difflib.get_close_matches(value, choices, n=1, cutoff=0.6)
    if not match:  # 'Linear' -> 'linear', 'kde' -> 'kde_upper'
        match = [c for c in choices if c.lower() == value.lower() or c.startswith(value)][:1]
    return match[0] if match else None


def closest(value: Any, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices`` to a string ``value``, or an empty string."""
    match = closest_name(value, choices)
    return f" (did you mean {match!r}?)" if match else ""


def _then(hint: str | None) -> str:
    return f": {hint}" if hint else ""


def check_int(value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None,
              error: type[Exception] = ValueError, hint: str | None = None) -> int:
    """``value`` as a Python int; refuses bools, floats (whole or not), strings and values outside the bounds."""
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, torch.Tensor) and value.dtype == torch.bool):
        raise error(f"{name} must be an int; got the bool {value!r}{_then(hint)}")
    try:
        out = operator.index(value)  # int, numpy integers, 0-d integer tensors; never a float
    except TypeError:
        kind = type(value).__name__
        extra = f" (pass int({value!r}) if that is what you mean)" if isinstance(value, float) and \
            math.isfinite(value) and value.is_integer() else ""
        raise error(f"{name} must be an int; got {kind} {show(value)}{extra}{_then(hint)}") from None
    low = minimum is not None and out < minimum
    high = maximum is not None and out > maximum
    if low or high:
        if minimum is not None and maximum is not None:
            want = f"between {minimum} and {maximum}"
        elif minimum is not None:
            want = f">= {minimum}"
        else:
            want = f"<= {maximum}"
        raise error(f"{name} must be {want}; got {out}{_then(hint)}")
    return int(out)


def check_number(value: Any, name: str, *, minimum: float | None = None, maximum: float | None = None,
                 above: float | None = None, below: float | None = None, error: type[Exception] = ValueError,
                 hint: str | None = None) -> float:
    """``value`` as a finite float; refuses bools, strings, complex numbers, NaN, inf and values outside the bounds
    (``minimum``/``maximum`` inclusive, ``above``/``below`` exclusive)."""
    if isinstance(value, (bool, np.bool_)) or (not isinstance(value, (numbers.Real, np.floating, np.integer)) \
            and not (isinstance(value, torch.Tensor) and value.ndim == 0 and not value.is_complex())):
        kind = "complex number" if isinstance(value, complex) else type(value).__name__
        raise error(f"{name} must be a real number; got {kind} {show(value)}{_then(hint)}")
    out = float(value)
    if not math.isfinite(out):
        raise error(f"{name} must be a finite number; got {out}{_then(hint)}")
    bounds = [("minimum", minimum, out < minimum if minimum is not None else False, f">= {minimum}"),
              ("maximum", maximum, out > maximum if maximum is not None else False, f"<= {maximum}"),
              ("above", above, out <= above if above is not None else False, f"> {above}"),
              ("below", below, out >= below if below is not None else False, f"< {below}")]
    broken = [want for _, bound, bad, want in bounds if bound is not None and bad]
    if broken:
        wants = " and ".join(want for _, bound, _, want in bounds if bound is not None)
        raise error(f"{name} must be {wants}; got {show(value)}{_then(hint)}")
    return out


def check_bool(value: Any, name: str, error: type[Exception] = ValueError) -> bool:
    """``value`` if it is True or False (numpy bools too); anything else (1, 'yes', None) is refused."""
    if not isinstance(value, (bool, np.bool_)):
        raise error(f"{name} must be True or False; got {what(value)}")
    return bool(value)


def check_choice(value: Any, name: str, choices: Sequence[str], error: type[Exception] = ValueError,
                 hint: str | None = None) -> str:
    """``value`` if it is one of ``choices``; otherwise an error listing them and suggesting the closest."""
    if isinstance(value, str) and value in choices:
        return value
    listed = ", ".join(repr(c) for c in choices)
    raise error(f"{name} must be one of {listed}; got {show(value)}{closest(value, choices)}{_then(hint)}")


def check_callable(value: Any, name: str, error: type[Exception] = ValueError, *,
                   optional: bool = True) -> Callable[..., Any] | None:
    if value is None and optional:
        return None
    if not callable(value):
        raise error(f"{name} must be a callable{' or None' if optional else ''}; got "
                    f"{what(value)}")
    return value


def check_names(value: Any, name: str, error: type[Exception] = ValueError, *, optional: bool = True,
                count: int | None = None) -> list[str] | None:
    """A list of strings (``class_names``, ``feature_names``, method names). A bare string is refused: iterating
    it would give its characters."""
    if value is None and optional:
        return None
    if isinstance(value, str):
        raise error(f"{name} must be a list of strings; got the string {show(value)}, which would be read as its "
                    f"characters: pass [{value!r}] for one name")
    try:
        items = list(value)
    except TypeError:
        raise error(f"{name} must be a list of strings; got {what(value)}") from None
    bad = [v for v in items if not isinstance(v, str)]
    if bad:
        raise error(f"{name} must be a list of strings; entry {show(bad[0])} is {type(bad[0]).__name__}: pass "
                    f"[str(v) for v in {name}] if they are names")
    if count is not None and len(items) != count:
        raise error(f"{name} has {len(items)} names for {count} entries; pass one name per entry")
    return items


def check_epoch(value: Any, name: str = "epoch", error: type[Exception] = ValueError, *,
                optional: bool = True) -> int | None:
    """An epoch number: a non-negative int, or None where that is allowed."""
    if value is None and optional:
        return None
    return check_int(value, name, minimum=0, error=error)


def check_epochs(value: Any, name: str = "epochs", error: type[Exception] = ValueError, *,
                 allow_empty: bool = False) -> list[int]:
    """A schedule of epochs: an iterable of non-negative ints (whole floats refused like any count), sorted and
    without repeats. An int alone is refused with the hint ``range(n)``; an empty one unless ``allow_empty``."""
    if isinstance(value, (numbers.Number, np.generic)) or (isinstance(value, torch.Tensor) and value.ndim == 0):
        raise error(f"{name} must be a list of epoch numbers; got {show(value)}: pass range({value}) for epochs "
                    f"0..{value}-1, or [{value}] for that epoch alone")
    if isinstance(value, str):
        raise error(f"{name} must be a list of epoch numbers; got the string {show(value)}")
    try:
        items = value.tolist() if isinstance(value, (np.ndarray, torch.Tensor)) else list(value)
    except TypeError:
        raise error(f"{name} must be a list of epoch numbers; got {what(value)}") from None
    out = set()
    for item in items:
        try:
            out.add(check_int(item, f"each of {name}", minimum=0, error=error))
        except error as err:
            raise error(f"{name} = {show(value)}: {err}") from None
    if not out and not allow_empty:
        raise error(f"{name} is empty: nothing would be recorded; pass at least one epoch, e.g. range(10)")
    return sorted(out)


def is_complex(x: Any) -> bool:
    """Whether ``x`` (tensor, array, number or nested list) holds complex numbers."""
    if isinstance(x, torch.Tensor):
        return x.is_complex()
    if isinstance(x, (complex, np.complexfloating)):
        return True
    if isinstance(x, np.ndarray):
        return x.dtype.kind == "c"
    return False


def check_whole_labels(arr: np.ndarray, name: str, error: type[Exception] = ValueError, *,
                       strings: bool = True) -> np.ndarray:
    """Per-example labels (1-D array) as given, or as int64 when they are floats that are all whole numbers.

    Refuses complex values, NaN or inf, floats that are not whole, and (``strings=False``) anything but numbers.
    """
    kind = arr.dtype.kind
    if kind == "c":
        raise error(f"{name} holds complex numbers; labels are class names or integer ids, and the imaginary part "
                    "would be dropped: pass the real labels")
    if kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise error(f"{name} contains NaN or inf ({int(bad.sum())} of {len(arr)}, first at example {i}); give "
                        f"every example a class (or drop those examples)")
        whole = arr == np.round(arr)
        if not whole.all():
            i = int(np.flatnonzero(~whole)[0])
            raise error(f"{name} must be {'class ids or names' if strings else 'integer class ids'}, but example {i} "
                        f"has {arr[i].item()!r}, which is not a "
                        f"whole number; they look like continuous values: bin them (np.digitize) or pass integer"
                        f"{' or string' if strings else ''} labels (whole-number floats such as 2.0 are accepted)")
        return arr.astype(np.int64)
    if kind == "O":
        values = [v for v in arr.tolist()]
        if any(isinstance(v, (complex, np.complexfloating)) for v in values):
            raise error(f"{name} holds complex numbers; pass the real labels")
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise error(f"{name} contains NaN or inf; give every example a class (or drop those examples)")
    if not strings and kind not in "iub":
        raise error(f"{name} must be integer class ids; got {arr.dtype} values such as {show(arr[:3].tolist())}: "
                    f"encode them first, e.g. np.unique({name}, return_inverse=True)[1]")
    return arr


def check_keywords(where: str, given: Iterable[str], valid: Iterable[str]) -> None:
    """``TypeError`` naming the unknown keyword arguments, the closest valid one to each, and all valid ones."""
    valid = list(valid)
    unknown = [k for k in given if k not in valid]
    if not unknown:
        return
    hints = "; ".join(f"{k!r}: did you mean {closest_name(k, valid)!r}?" for k in unknown if closest_name(k, valid))
    noun = "argument" if len(unknown) == 1 else "arguments"
    raise TypeError(f"{where} got unexpected keyword {noun} {', '.join(map(repr, unknown))}"
                    + (f" ({hints})" if hints else "") + f". Valid keyword arguments: {', '.join(valid) or 'none'}")


def keywords_checked(fn: FnT) -> FnT:
    """Decorate a function (or ``__init__``) so that an unknown keyword argument raises ``TypeError`` naming the
    valid ones and the closest, rather than Python's message, which names only the unknown one. Functions that
    take ``**kwargs`` check those themselves."""
    params = inspect.signature(fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return fn  # it takes **kwargs: it checks those itself
    valid = [p.name for p in params.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
             and p.name not in ("self", "cls")]
    valid_set = set(valid)
    where = fn.__qualname__.replace(".__init__", "") + "()"

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if kwargs and not valid_set.issuperset(kwargs):
            check_keywords(where, kwargs, valid)
        return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def check_mapping(value: Any, name: str, contents: str, error: type[Exception] = ValueError) -> Mapping:
    if not isinstance(value, Mapping):
        raise error(f"{name} must be a dict of {contents}; got {what(value)}")
    return value
