"""A PyTorch Lightning callback that records named layers with hiddenwidgets' monitor.

Example::

    from hiddenwidgets.integrations.lightning import MonitorCallback
    trainer = lightning.Trainer(callbacks=[MonitorCallback(["encoder.0", "head"], logdir="runs/exp1")])

and in a notebook ``hw.ActivationMonitor.follow("runs/exp1")``; or, in the notebook that trains, pass
``monitor=hw.ActivationMonitor(model, layers)`` (displayed) instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from .._optional import require

try:
    from lightning.pytorch import Callback
except ModuleNotFoundError:  # the older package name, else an error that says what to install
    try:
        from pytorch_lightning import Callback
    except ModuleNotFoundError:
        Callback = require("lightning", "hiddenwidgets.integrations.lightning").pytorch.Callback

from ._common import CallbackRecorder, numbers_in

__all__ = ["MonitorCallback"]


class MonitorCallback(Callback):
    """Record ``layers`` of the LightningModule while it trains.

    Parameters
    ----------
    layers : names from ``pl_module.named_modules()`` (or a mapping name -> selector), as for
        :class:`~hiddenwidgets.ActivationMonitor`.
    monitor : instead of ``layers``: an :class:`~hiddenwidgets.ActivationMonitor` (a view in this notebook) or
        :class:`~hiddenwidgets.ActivationRecorder` you created on the module; the callback steps it and flushes it
        at the end, and leaves closing it to you.
    logdir : run directory to write (a script); under DDP each rank writes ``<logdir>/rank<r>``.
    recorders : more recorders to step with the fit: :class:`~hiddenwidgets.InformationRecorder` or
        :class:`~hiddenwidgets.InformationPlane` (``step()`` in ``on_before_optimizer_step``, once the step's
        gradients are in; ``end_epoch(epoch)`` in ``on_train_epoch_end``) and
        :class:`~hiddenwidgets.RepresentationRecorder` (``end_epoch``). Give them the same ``logdir`` to record
        them into the same run directory. They stay yours to close.
    **options : recorder options (``every``, ``gradients``, ``validation``...).

    Steps the monitor in ``on_train_batch_end`` (after backward and the optimizer step), with the step's loss and
    the epoch; logs the validation metrics (``trainer.callback_metrics`` named ``val*``) in
    ``on_validation_epoch_end``; closes (or flushes) it in ``on_train_end``, and in ``on_exception`` with the
    exception as the reason, so hooks never outlive the fit.
    """

    def __init__(self, layers: Any = None, *, monitor: Any = None, logdir: str | os.PathLike | None = None,
                 recorders: Iterable[Any] = (), **options: Any):
        super().__init__()
        self._rec = CallbackRecorder(layers, monitor=monitor, logdir=logdir, recorders=recorders, **options)

    @property
    def monitor(self) -> Any:
        """The monitor or recorder being stepped (None before the fit starts)."""
        return self._rec.monitor

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self._rec.start(pl_module, rank=trainer.global_rank, world_size=trainer.world_size)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        m = self._rec.monitor
        if m is None or m.closed:
            return
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        scalars = numbers_in({"loss": loss}) if loss is not None else {}
        m.step(epoch=trainer.current_epoch, **scalars)

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        self._rec.after_backward()

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self._rec.end_epoch(trainer.current_epoch)

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        m = self._rec.monitor
        if m is None or m.closed or trainer.sanity_checking:
            return
        metrics = {k: v for k, v in trainer.callback_metrics.items() if k.startswith("val")}
        m.log(**numbers_in(metrics))

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self._rec.end()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._rec.end(f"training ended by {type(exception).__name__}: {exception}")
