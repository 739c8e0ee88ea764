"""A Hugging Face ``TrainerCallback`` that records named layers with hiddenwidgets' monitor.

Example::

    from hiddenwidgets.integrations.huggingface import MonitorCallback
    with MonitorCallback(["bert.encoder.layer.0", "classifier"], logdir="runs/exp1") as cb:
        Trainer(model, args, train_dataset=ds, callbacks=[cb]).train()
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from .._optional import require
from ._common import CallbackRecorder, numbers_in

TrainerCallback = require("transformers", "hiddenwidgets.integrations.huggingface").TrainerCallback

__all__ = ["MonitorCallback"]


class MonitorCallback(TrainerCallback):
    """Record ``layers`` of the Trainer's model while it trains.

    Parameters are those of :class:`hiddenwidgets.integrations.lightning.MonitorCallback` (``layers`` or
    ``monitor``, ``logdir``, ``recorders``, recorder options). ``recorders`` are stepped in
    ``on_pre_optimizer_step`` (the step's gradients are in) and ended in ``on_epoch_end`` (``end_epoch()`` with
    the recorder's own epoch count).

    Steps the monitor in ``on_step_end`` (after backward and the optimizer step; a step with gradient accumulation
    merges its micro-batches); logs what the Trainer logs (``on_log``: loss, learning rate...) and the evaluation
    metrics (``on_evaluate``) at the current step; closes (or flushes) it in ``on_train_end``. The Trainer has no
    exception hook: use the callback as a context manager (``with MonitorCallback(...) as cb: trainer.train()``)
    so that a failed run is closed too, with the exception as the reason.
    """

    def __init__(self, layers: Any = None, *, monitor: Any = None, logdir: str | os.PathLike | None = None,
                 recorders: Iterable[Any] = (), **options: Any):
        self._rec = CallbackRecorder(layers, monitor=monitor, logdir=logdir, recorders=recorders, **options)

    @property
    def monitor(self) -> Any:
        """The monitor or recorder being stepped (None before training starts)."""
        return self._rec.monitor

    def __enter__(self) -> MonitorCallback:
        return self

    def __exit__(self, kind: Any, err: Any, tb: Any) -> None:
        self._rec.end(f"training ended by {kind.__name__}: {err}" if kind is not None else "")

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if model is None:
            raise RuntimeError("the Trainer gave this callback no model; hiddenwidgets needs it to watch layers")
        self._rec.start(model, rank=args.process_index, world_size=args.world_size)

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._rec.after_backward()

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._rec.end_epoch()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        m = self._rec.monitor
        if m is not None and not m.closed:
            epoch = None if state.epoch is None else int(state.epoch)
            m.step(epoch=epoch)

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        m = self._rec.monitor
        if m is not None and not m.closed and logs:
            m.log(**numbers_in({k: v for k, v in logs.items() if k != "epoch"}))

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any) -> None:
        m = self._rec.monitor
        if m is not None and not m.closed and metrics:
            m.log(**numbers_in({k: v for k, v in metrics.items() if k != "epoch"}))

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._rec.end()
