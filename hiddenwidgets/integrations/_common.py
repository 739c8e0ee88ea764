"""What both framework callbacks share: who owns the recorder, what to log, how it ends."""

from __future__ import annotations

import numbers
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from torch import nn

from ..pipeline.monitor import ActivationRecorder


class CallbackRecorder:
    """The recorder behind a framework callback: the user's monitor (a view in a notebook), or one this callback
    creates on the framework's model and owns (``logdir`` for a script; under DDP each rank writes
    ``<logdir>/rank<r>``)."""

    def __init__(self, layers: Any = None, *, monitor: Any = None, logdir: str | os.PathLike | None = None,
                 recorders: Iterable[Any] = (), **options: Any):
        if monitor is None and layers is None and not recorders:
            raise TypeError("give the layers to watch (and logdir=... in a script), or monitor=<an "
                            "ActivationMonitor or ActivationRecorder you created>, or recorders=[...]")
        if monitor is not None and (layers is not None or logdir is not None or options):
            raise TypeError("monitor=... already says what to record; layers, logdir and recorder options go to "
                            "the monitor you create, not to the callback")
        unknown = sorted(set(options) - set(ActivationRecorder.OPTIONS))
        if unknown:
            raise TypeError(f"unexpected keyword argument(s) {unknown}; valid ones: layers, monitor, logdir, "
                            + ", ".join(o for o in ActivationRecorder.OPTIONS if o != "logdir") + ", recorders")
        self.layers, self.logdir, self.options = layers, logdir, options
        self.recorders = checked_recorders(recorders)
        self.monitor = monitor
        self.owned = monitor is None

    def start(self, model: nn.Module, rank: int = 0, world_size: int = 1) -> Any:
        if self.layers is None and self.owned:
            return None  # recorders only
        if self.monitor is None or (self.owned and self.monitor.closed):
            logdir = self.logdir
            if logdir is not None and world_size > 1:
                logdir = Path(logdir) / f"rank{rank}"
            self.monitor = ActivationRecorder(model, self.layers, logdir=logdir, **self.options)
        return self.monitor

    def after_backward(self) -> None:
        """The step's gradients are in (before the optimizer uses them): the recorders that keep gradient
        statistics (an InformationRecorder or InformationPlane) add them."""
        for r in self.recorders:
            if hasattr(r, "step"):
                r.step()

    def end_epoch(self, epoch: int | None = None) -> None:
        """An epoch of training ended: each recorder records it if scheduled (activations, representations)."""
        for r in self.recorders:
            r.end_epoch(epoch)

    def end(self, reason: str = "") -> None:
        """Close the recorder this callback created; only flush a monitor the user gave (it is theirs), and the
        views among the recorders; the recorders themselves (and their run directories) stay the user's to close."""
        for r in self.recorders:
            if hasattr(r, "flush"):
                r.flush()
        m = self.monitor
        if m is None or m.closed:
            return
        if self.owned:
            m.close(reason)
        else:
            if reason:
                recorder = getattr(m, "recorder", m)
                recorder.history.note_event("stopped", recorder._step, reason)
            m.flush()


def checked_recorders(recorders: Iterable[Any]) -> list[Any]:
    """The recorders a callback steps besides the monitor: each needs ``end_epoch`` (``step`` is called too, after
    backward, where it exists)."""
    if recorders is None or isinstance(recorders, (str, bytes)) or not isinstance(recorders, Iterable):
        raise TypeError(f"recorders must be a list of recorders (InformationRecorder, InformationPlane, "
                        f"RepresentationRecorder); got {type(recorders).__name__}")
    out = list(recorders)
    for r in out:
        if not callable(getattr(r, "end_epoch", None)):
            raise TypeError(f"recorders: {type(r).__name__} has no end_epoch(); pass InformationRecorder, "
                            "InformationPlane or RepresentationRecorder objects (the monitor goes to monitor=)")
    return out


def numbers_in(metrics: Any, prefix: str = "") -> dict[str, float]:
    """The metrics that are single finite or non-finite numbers (tensors of one element included), by name."""
    out = {}
    for key, value in dict(metrics or {}).items():
        if hasattr(value, "numel"):
            if value.numel() != 1:
                continue
            value = value.detach()
        elif not isinstance(value, numbers.Real) or isinstance(value, bool):
            continue
        out[f"{prefix}{key}"] = value if hasattr(value, "numel") else float(value)
    return out
