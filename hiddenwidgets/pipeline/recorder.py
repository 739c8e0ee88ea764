"""Record what the information plane needs during training: layer activations on a fixed evaluation set at chosen
epochs, and per-layer gradient statistics over the mini-batches of every epoch.

No widget code: :class:`~hiddenwidgets.widgets.information_plane.InformationPlane` drives a recorder; the
recorder can be used alone with :mod:`hiddenwidgets.information` to compute the estimates yourself.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..analysis.representations import layer_features
from .capture import Capture, Selector
from .checks import check_bool, check_epoch, check_epochs, check_int, check_whole_labels, keywords_checked, show
from .rundir import RunMember

__all__ = ["EpochRecord", "InformationRecorder", "RecordedInformation", "log_spaced_epochs"]


def log_spaced_epochs(n_epochs: int, points: int = 100) -> list[int]:
    """About ``points`` distinct epochs in [0, n_epochs), spaced evenly in log(1 + epoch), as in the paper."""
    n_epochs = check_int(n_epochs, "n_epochs", minimum=1, hint="pass the number of epochs training will run")
    points = check_int(points, "points", minimum=1, hint="try 100 (about how many epochs to record)")
    raw = np.unique(np.round(np.logspace(0, math.log10(n_epochs), points)).astype(int) - 1)
    return [int(e) for e in raw if 0 <= e < n_epochs]


@dataclass
class EpochRecord:
    epoch: int
    activations: dict[str, np.ndarray] = field(default_factory=dict)  # layer -> (N, units) float32


class InformationRecorder(RunMember):
    """Collects the activations of ``layers`` on ``inputs`` at the epochs in ``epochs``, and gradient statistics.

    Parameters
    ----------
    model : the network (never changed: evaluation runs under ``torch.no_grad()`` in the model's current mode;
        put it in ``eval()`` yourself if it has dropout or batch norm).
    layers : module names whose outputs are the layers T (e.g. ``Sequential(Linear, Tanh)`` blocks; their
        parameters are the layer's weights for the gradient statistics), or a mapping to selectors.
    inputs, labels : the fixed evaluation set (the paper uses all 4096 patterns of the 12-bit task).
    epochs : the epochs to record, or ``None`` for :func:`log_spaced_epochs` of ``n_epochs``.
    gradients : accumulate, per layer and epoch, the mean and standard deviation over mini-batches of the gradient
        of its weights (Shwartz-Ziv & Tishby's drift and diffusion phases). Costs two tensor ops per parameter
        per :meth:`step`.
    batch_size : evaluation batch size.
    logdir : also append what is recorded to this run directory (:mod:`.rundir`; created, or shared with an
        :class:`~hiddenwidgets.ActivationRecorder` of this process given the same ``logdir``): the labels at once,
        then per :meth:`end_epoch` the epoch's gradient statistics and, at scheduled epochs, the activations
        (written on the run writer's thread; :meth:`flush` waits until all is durable).
        ``ActivationMonitor.follow(logdir)`` shows it as an information plane. :meth:`close` (or the end of a
        ``with`` block, or of the process) ends the run with its last recorder. A write error stops the recording,
        never the training (a warning says why, once).

    Everything is checked here, not at the first :meth:`end_epoch`: labels must be integer class ids, one per input
    (floats only when all are whole numbers, as in :mod:`hiddenwidgets.information`; a (N, 1) column is read as
    one label per row); epochs non-negative ints; ``points`` goes with ``n_epochs`` only.
    """

    @keywords_checked
    def __init__(self, model: nn.Module, layers: Iterable[str] | Mapping[str, Selector], inputs: Any, labels: Any, *,
                 epochs: Iterable[int] | None = None, n_epochs: int | None = None, points: int | None = None,
                 gradients: bool = True, batch_size: int = 4096, logdir: str | os.PathLike | None = None):
        self.capture = Capture(model, layers, grad_only=False)
        self.model = model
        self.layers = list(self.capture.taps)
        self.inputs = _evaluation_inputs(inputs)
        self.labels = _class_ids(labels, len(self.inputs))
        if epochs is None:
            if n_epochs is None:
                raise TypeError("pass epochs=[...] to record, or n_epochs=N for about `points` log-spaced epochs")
            epochs = log_spaced_epochs(n_epochs, 100 if points is None else points)
        elif n_epochs is not None or points is not None:
            given = f"n_epochs={show(n_epochs)}" if n_epochs is not None else f"points={show(points)}"
            raise TypeError(f"pass epochs=[...] or n_epochs=N (with points=), not both: {given} would be ignored "
                            "next to epochs")
        self.schedule = check_epochs(epochs, "epochs", allow_empty=True)  # [] records gradient statistics only
        self.batch_size = check_int(batch_size, "batch_size", minimum=1, hint="try 4096 (examples per forward pass)")
        gradients = check_bool(gradients, "gradients")
        self.records: list[EpochRecord] = []
        self.gradients = gradients
        self._params = {name: [p for p in tap.module.parameters() if p.requires_grad]
                        for name, tap in self.capture.taps.items()}
        self.grad_epochs: list[int] = []
        self.grad_mean: dict[str, list[float]] = {name: [] for name in self.layers}
        self.grad_std: dict[str, list[float]] = {name: [] for name in self.layers}
        self._sums: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self._batches = 0
        self._epoch = 0
        self.run_writer = None
        if logdir is not None:
            self._open_run(logdir)

    def _open_run(self, logdir: str | os.PathLike) -> None:
        self._join_run(logdir, "information", {"layers": self.layers, "schedule": self.schedule, "gradients":
                                               self.gradients, "batch_size": self.batch_size},
                       {"labels": np.asarray(self.labels)})

    @property
    def epoch(self) -> int:
        """The epoch the next :meth:`end_epoch` closes."""
        return self._epoch

    def step(self) -> None:
        """After ``loss.backward()``: add this mini-batch's weight gradients to the epoch's statistics."""
        if not self.gradients:
            return
        with torch.no_grad():
            for name, params in self._params.items():
                grads = [p.grad for p in params if p.grad is not None]
                if not grads:
                    continue
                acc = self._sums.get(name)
                if acc is None:
                    self._sums[name] = [(g.detach().clone(), g.detach() * g.detach()) for g in grads]
                else:
                    for (s1, s2), g in zip(acc, grads, strict=True):
                        s1.add_(g)
                        s2.addcmul_(g, g)
        self._batches += 1

    def end_epoch(self, epoch: int | None = None) -> EpochRecord | None:
        """Close an epoch: store its gradient statistics; if it is scheduled, record the activations.

        Returns the new record, or None when the epoch is not in the schedule.
        """
        epoch = check_epoch(epoch, "epoch")
        epoch = self._epoch if epoch is None else epoch
        self._epoch = epoch + 1
        if self._batches:
            self.grad_epochs.append(epoch)
            n = self._batches
            for name in self.layers:
                acc = self._sums.get(name)
                if not acc:
                    self.grad_mean[name].append(float("nan"))
                    self.grad_std[name].append(float("nan"))
                    continue
                mean_sq = sum(float((s1 / n).pow(2).sum()) for s1, _ in acc)
                var = sum(float((s2 / n - (s1 / n).pow(2)).clamp(min=0).sum()) for s1, s2 in acc)
                self.grad_mean[name].append(math.sqrt(mean_sq))
                self.grad_std[name].append(math.sqrt(var))
            self._sums, self._batches = {}, 0
        record = None
        if epoch in self.schedule:
            record = EpochRecord(epoch, self.activations())
            self.records.append(record)
        if self.run_writer is not None:
            self._write_epoch(epoch, grads=bool(self.grad_epochs) and self.grad_epochs[-1] == epoch, record=record)
        return record

    def _write_epoch(self, epoch: int, *, grads: bool, record: EpochRecord | None) -> None:
        arrays: dict[str, np.ndarray] = {}
        if grads:
            arrays["grad_mean"] = np.asarray([self.grad_mean[n][-1] for n in self.layers], dtype=np.float64)
            arrays["grad_std"] = np.asarray([self.grad_std[n][-1] for n in self.layers], dtype=np.float64)
        if record is not None:
            arrays.update({f"act:{name}": record.activations[name] for name in self.layers})
        # an epoch with activations is fsync'd once written; one of gradient statistics alone with the next fsync
        self.run_writer.submit("information", {"what": "epoch", "epoch": epoch, "grads": grads,
                                               "recorded": record is not None}, arrays, durable=record is not None)

    def activations(self) -> dict[str, np.ndarray]:
        """The layers' outputs on the evaluation set, now (float32, samples x units), in the model's own mode."""
        layers = {name: tap.selector for name, tap in self.capture.taps.items()}
        feats = layer_features(self.model, self.inputs, layers, pool="flatten", batch_size=self.batch_size,
                               eval_mode=False)
        return {name: t.numpy() for name, t in feats.items()}


class RecordedInformation:
    """What an :class:`InformationRecorder` of another process recorded, read back from its run directory (the
    reader applies its records as they arrive): the same attributes with the same numbers (``layers``,
    ``labels``, ``schedule``, ``records``, ``grad_epochs``, ``grad_mean``, ``grad_std``, ``epoch``), so that an
    :class:`~hiddenwidgets.InformationPlane` shows it as it would show the recorder. It cannot record."""

    def __init__(self) -> None:
        self.layers: list[str] = []
        self.labels = np.zeros(0, dtype=np.int64)
        self.schedule: list[int] = []
        self.gradients = True
        self.batch_size = 0
        self.records: list[EpochRecord] = []
        self.grad_epochs: list[int] = []
        self.grad_mean: dict[str, list[float]] = {}
        self.grad_std: dict[str, list[float]] = {}
        self._epoch = 0
        self.version = 0  # records applied: a view compares it to know when to recompute
        # held while a record is applied; a view computing from these lists holds it too (its state lock)
        self.lock = threading.RLock()

    @property
    def epoch(self) -> int:
        return self._epoch

    def apply(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Apply one ``information`` record of a run directory."""
        with self.lock:
            self._apply(meta, arrays)

    def _apply(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        if meta.get("what") == "start":
            self.layers = list(meta["layers"])
            self.schedule = list(meta["schedule"])
            self.gradients, self.batch_size = bool(meta["gradients"]), int(meta["batch_size"])
            self.labels = np.array(arrays["labels"])
            self.grad_mean = {name: [] for name in self.layers}
            self.grad_std = {name: [] for name in self.layers}
        elif meta.get("what") == "epoch":
            epoch = int(meta["epoch"])
            self._epoch = epoch + 1
            if meta["grads"]:
                self.grad_epochs.append(epoch)
                for i, name in enumerate(self.layers):
                    self.grad_mean[name].append(float(arrays["grad_mean"][i]))
                    self.grad_std[name].append(float(arrays["grad_std"][i]))
            if meta["recorded"]:
                self.records.append(EpochRecord(epoch, {name: np.array(arrays[f"act:{name}"])
                                                        for name in self.layers}))
        else:
            return  # a record of a later minor version: skipped
        self.version += 1

    def step(self) -> None:
        raise RuntimeError("this information plane shows a run recorded by another process; step() and end_epoch() "
                           "belong to that process's InformationRecorder")

    def end_epoch(self, epoch: int | None = None) -> None:
        self.step()

    def flush(self, timeout: float = 60.0) -> None:
        pass

    def close(self, reason: str = "") -> None:
        pass


def _evaluation_inputs(inputs: Any) -> torch.Tensor:
    try:
        x = torch.as_tensor(inputs)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"inputs must be a tensor of examples (N, ...); got {type(inputs).__name__} ({err})") from None
    if x.is_complex():
        raise ValueError(f"inputs are complex ({x.dtype}); the layers' activations would lose the imaginary part: "
                         "pass real inputs")
    if x.ndim == 0 or len(x) == 0:
        raise ValueError(f"inputs holds 0 examples (shape {tuple(x.shape)}); pass the evaluation set, one example "
                         "per row")
    return x


def _class_ids(labels: Any, n: int) -> np.ndarray:
    """One integer class id per input: the labels the mutual-information estimators take, checked now."""
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"labels must be one class id per input (shape (N,)); got shape {y.shape}: for one-hot "
                         "rows pass labels.argmax(1)")
    if len(y) != n:
        raise ValueError(f"labels has {len(y)} entries for {n} inputs; pass one label per input")
    return check_whole_labels(y, "labels", ValueError, strings=False)
