"""Progress of long Python-side work (probes, TCAV, the KDE estimators): a bar in a notebook or a terminal.

Every long function takes ``progress``:

- ``None`` (default): a tqdm bar (a widget in a notebook, text on stderr in a terminal) that appears only if the
  work lasts more than a second, so quick calls print nothing; ``HIDDENWIDGETS_PROGRESS=0`` silences every
  default bar (CI logs, scripts);
- ``True``: the bar from the start; ``False``: silent;
- a callable ``progress(done, total)``: called instead of a bar (views use this); returning ``False`` cancels
  where the function says it can be cancelled.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

DELAY = 1.0  # seconds before a default bar appears
OFF = ("0", "false", "off", "no")


class Reporter:
    """Reports ``(done, total)``; returns what a user callback returned (False cancels), else None."""

    def __init__(self, callback: Callable[[int, int | None], Any] | None = None, bar: Any = None):
        self._callback, self._bar = callback, bar

    def __call__(self, done: int, total: int | None = None) -> Any:
        if self._bar is not None:
            if total is not None and self._bar.total != total:
                self._bar.total = total
            if done > self._bar.n:
                self._bar.update(done - self._bar.n)
            return None
        return self._callback(done, total) if self._callback is not None else None

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


SILENT = Reporter()


def check_progress(progress: Any, name: str = "progress", error: type[Exception] = ValueError) -> Any:
    if progress is None or isinstance(progress, bool) or callable(progress):
        return progress
    raise error(f"{name} must be True (a progress bar), False (silent), None (a bar if the work lasts over a "
                f"second) or a callable progress(done, total); got {type(progress).__name__}")


def reporter(progress: Any, desc: str, *, unit: str = "it", total: int | None = None,
             error: type[Exception] = ValueError) -> Reporter:
    """The :class:`Reporter` that ``progress`` asks for (see the module docstring). Close it when done."""
    progress = check_progress(progress, error=error)
    if progress is False or (progress is None and os.environ.get("HIDDENWIDGETS_PROGRESS", "").lower() in OFF):
        return SILENT
    if callable(progress):  # (a bool is not callable)
        return Reporter(callback=progress)
    try:
        from tqdm.auto import tqdm
    except ModuleNotFoundError:  # a dependency; without it, work goes on silently rather than failing
        return SILENT
    bar = tqdm(total=total, desc=desc, unit=unit, delay=0 if progress is True else DELAY, leave=True,
               dynamic_ncols=True)
    return Reporter(bar=bar)
