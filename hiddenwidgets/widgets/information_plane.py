"""InformationPlane: each layer's (I(X;T), I(T;Y)) over training, live, with the gradient signal-to-noise panel."""

from __future__ import annotations

import math
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch
import traitlets

from .._optional import require
from ..analysis import information
from ..charts import offline_chart
from ..pipeline.capture import Selector
from ..pipeline.checks import check_choice, check_int, check_keywords, check_number, closest, show
from ..pipeline.recorder import InformationRecorder
from ..pipeline.transport import encode
from ._base import HiddenWidget, after_each_cell, model_name, names

__all__ = ["ESTIMATORS", "InformationPlane"]

# name -> (label, function(activations, labels, plane) -> (I_XT, I_TY))
ESTIMATORS: dict[str, tuple[str, Callable[[np.ndarray, np.ndarray, InformationPlane], tuple[float, float]]]] = {
    "binned": ("binning (Shwartz-Ziv & Tishby)",
               lambda t, y, p: information.binned_mi(t, y, n_bins=p.n_bins, value_range=p.value_range)),
    "kde_upper": ("KDE upper bound (Kolchinsky & Tracey)",
                  lambda t, y, p: information.kde_mi(t, y, noise_variance=p.noise_variance, bound="upper",
                                                     progress=False)),
    "kde_lower": ("KDE lower bound (Kolchinsky & Tracey)",
                  lambda t, y, p: information.kde_mi(t, y, noise_variance=p.noise_variance, bound="lower",
                                                     progress=False)),
    "sample_propagation": ("sample propagation (Goldfeld et al.)",
                           lambda t, y, p: information.sample_propagation_mi(t, y, noise_variance=p.noise_variance,
                                                                             progress=False)),
}


class InformationPlane(HiddenWidget):
    """Watch each layer move in the information plane while a network trains (Shwartz-Ziv & Tishby 2017).

    ``plane.step()`` after each ``loss.backward()`` (gradient statistics), ``plane.end_epoch()`` after each epoch
    (records the layers on the evaluation set at scheduled epochs and updates the view, at most 10 times a
    second; the last state is sent at the end of the cell or by :meth:`flush`). The estimator, bin count and noise
    can be changed afterwards, in the view or in Python, without retraining: activations of recorded epochs are
    kept (N x units float32 per layer and recorded epoch).

    Parameters
    ----------
    model, layers, inputs, labels : as :class:`~hiddenwidgets.recorder.InformationRecorder` (layers are modules
        whose outputs are the layers T, e.g. ``Sequential(Linear, Tanh)`` blocks).
    n_epochs : with ``epochs=None``, record about ``points`` log-spaced epochs of ``n_epochs``.
    estimator : one of :data:`ESTIMATORS` (default ``"binned"``).
    n_bins : bin edges for ``"binned"`` (default 30). value_range : ``(lo, hi)``, ``"observed"`` or
        ``"adaptive"`` (default ``(-1, 1)``, for tanh; use ``"observed"`` for ReLU).
    noise_variance : for the KDE and sample-propagation estimators (default 1e-3, Saxe et al.'s).
    estimator_samples : the KDE and sample-propagation estimators use a fixed random subset of this many evaluation
        samples (default 1024; their cost grows with its square).
    logdir : also record into this run directory (see :class:`~hiddenwidgets.InformationRecorder`), for a
        notebook elsewhere to follow: ``ActivationMonitor.follow(logdir)`` or :meth:`from_run`.
    """

    _view_file = "information_plane"

    layers = traitlets.List(traitlets.Unicode(), help="Layer names (read-only).").tag(sync=True)
    estimator = traitlets.Unicode("binned", help="Estimator name; the view can change it. Default 'binned'.").tag(
        sync=True)
    n_bins = traitlets.Int(30, help="Bin edges for the binned estimator. Default 30.").tag(sync=True)
    noise_variance = traitlets.Float(1e-3, help="Noise variance for KDE/sample propagation. Default 1e-3.").tag(
        sync=True)
    title = traitlets.Unicode("Information plane", help="Heading of the view.").tag(sync=True)
    status = traitlets.Unicode("", help="What the widget is doing (read-only).").tag(sync=True)
    _state = traitlets.Dict(help="Everything the view shows, {header, data}.").tag(sync=True)

    _VIEW_OPTIONS = ("estimator", "n_bins", "value_range", "noise_variance", "estimator_samples", "title", "layout")
    _OPTIONS = ("epochs", "n_epochs", "points", "gradients", "batch_size", "logdir", *_VIEW_OPTIONS)

    def _describe(self) -> str:
        return (f"each layer's path in the information plane, I(X;T) against I(T;Y) (Shwartz-Ziv & Tishby 2017), for "
                f"layers {names(self.layers)} of {model_name(self.recorder.model)}, estimator {self.estimator!r}")

    def __init__(self, model: torch.nn.Module, layers: Iterable[str] | Mapping[str, Selector], inputs: Any,
                 labels: Any, **options: Any):
        check_keywords("InformationPlane()", options, self._OPTIONS)
        view = self._view_options(options)
        recorder = InformationRecorder(model, layers, inputs, labels, epochs=options.get("epochs"),
                                       n_epochs=options.get("n_epochs"), points=options.get("points"),
                                       gradients=options.get("gradients", True),
                                       batch_size=options.get("batch_size", 4096), logdir=options.get("logdir"))
        self._start(recorder, options, *view)

    @classmethod
    def from_run(cls, run: Any, **options: Any) -> InformationPlane:
        """The information plane of what an :class:`~hiddenwidgets.InformationRecorder` of another process recorded:
        ``run`` is its run directory (read as it is now) or a :class:`~hiddenwidgets.pipeline.recorder.
        RecordedInformation` that a reader keeps up to date (``ActivationMonitor.follow`` does, and refreshes this
        view as epochs arrive). View options as for the constructor (``estimator``, ``n_bins``...); the estimates
        are computed here from the recorded activations, exactly as for the recorder itself."""
        check_keywords("InformationPlane.from_run()", options, cls._VIEW_OPTIONS)
        from ..pipeline.recorder import RecordedInformation

        if not isinstance(run, RecordedInformation):
            from ..pipeline.rundir import RunDirError, read_run

            reader = read_run(run)
            if reader.information is None:
                raise RunDirError(f"the run at {str(run)!r} holds no information-plane records: record with "
                                  "InformationRecorder(..., logdir=...) or InformationPlane(..., logdir=...)")
            run = reader.information
        plane = cls.__new__(cls)
        plane._start(run, options, *plane._view_options(options))
        plane._seen = run.version
        return plane

    def refresh(self) -> bool:
        """Show epochs a followed run recorded since the last look (:meth:`from_run`); False if there were none."""
        version = getattr(self.recorder, "version", None)
        if version is None or version == getattr(self, "_seen", None):
            return False
        self._seen = version
        with self._lock:
            self._estimates()
            self._dirty = True
        self.flush()
        return True

    @staticmethod
    def _view_options(options: dict[str, Any]) -> tuple:
        estimator = options.get("estimator", "binned")
        _check_estimator(estimator)
        n_bins = _check_bins(options.get("n_bins", 30))
        noise_variance = _check_noise(options.get("noise_variance", 1e-3))
        value_range = _check_value_range(options.get("value_range", (-1.0, 1.0)))
        samples = check_int(options.get("estimator_samples", 1024), "estimator_samples", minimum=1,
                            error=traitlets.TraitError, hint="try 1024 (samples for the KDE estimators)")
        return estimator, n_bins, noise_variance, value_range, samples

    def _start(self, recorder: Any, options: dict[str, Any], estimator: str, n_bins: int, noise_variance: float,
               value_range: Any, samples: int) -> None:
        self.recorder = recorder
        self._value_range = value_range
        n = len(self.recorder.labels)
        k = min(n, samples)
        self._subset = np.sort(np.random.default_rng(0).choice(n, size=k, replace=False)) if k < n else None
        self._cache: dict[tuple, dict[int, np.ndarray]] = {}
        self._notes: dict[tuple, dict[str, str]] = {}
        # the training thread (end_epoch) and the kernel's comm thread (a new estimator chosen in the view) both
        # compute and publish. They share the widget's state lock (see HiddenWidget): the comm thread holds it
        # while our observer runs, so a second lock would deadlock against end_epoch.
        # A plane fed from a run directory shares the lock its reader applies new records under.
        self._state_lock = self._lock = getattr(recorder, "lock", None) or threading.RLock()
        self._last_sent = 0.0
        self._dirty = False
        super().__init__(layers=self.recorder.layers, estimator=estimator, n_bins=n_bins,
                         noise_variance=noise_variance,
                         title=options.get("title", "Information plane"),
                         **({"layout": options["layout"]} if options.get("layout") is not None else {}))
        self._publish_state()
        self._unhook = after_each_cell(self._end_of_cell)

    # -- training loop -----------------------------------------------------------------------------------------
    def step(self) -> None:
        """After ``loss.backward()``: add the mini-batch's weight gradients to this epoch's statistics."""
        self.recorder.step()

    def end_epoch(self, epoch: int | None = None) -> None:
        """After each epoch: record it if scheduled, then update the view (at most 10 times a second)."""
        with self._lock:
            record = self.recorder.end_epoch(epoch)
            if record is not None:
                self._estimates()  # compute the new epoch for the current estimator
            self._dirty = True
        if time.monotonic() - self._last_sent >= 0.1:
            self.flush()

    def flush(self) -> None:
        """Send the current state to the view and store it in the widget's state (for re-display and export)."""
        with self._lock:
            if self._dirty:
                self._publish_state()

    # -- estimates ------------------------------------------------------------------------------------------------
    def _key(self) -> tuple:
        if self.estimator == "binned":
            vr = self.value_range if isinstance(self.value_range, str) else tuple(self.value_range)
            return ("binned", self.n_bins, vr)
        return (self.estimator, self.noise_variance)

    def _estimates(self) -> np.ndarray:
        """(recorded epochs, layers, 2) array of (I_XT, I_TY) for the current estimator; cached per setting."""
        with self._lock:
            return self._compute()

    def _compute(self) -> np.ndarray:
        cache = self._cache.setdefault(self._key(), {})
        fn = ESTIMATORS[self.estimator][1]
        y = self.recorder.labels
        missing = [r for r in self.recorder.records if r.epoch not in cache]
        for i, record in enumerate(missing):
            if len(missing) > 5:
                self.status = f"computing {ESTIMATORS[self.estimator][0]}: epoch {i + 1} of {len(missing)}"
            values = []
            for name in self.recorder.layers:
                t = record.activations[name]
                yy = y
                if self.estimator != "binned" and self._subset is not None:
                    t, yy = t[self._subset], y[self._subset]
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", information.InformationWarning)
                    values.append(fn(t, yy, self))
                for w in caught:  # keep the first warning of each kind per setting; the view shows them
                    kind = str(w.message).split(":")[0][:40]
                    if issubclass(w.category, information.InformationWarning) and kind not in self._notes.setdefault(
                            self._key(), {}):
                        self._notes[self._key()][kind] = f"{name}, epoch {record.epoch}: {w.message}"
            cache[record.epoch] = np.asarray(values, dtype=np.float64)
        self.status = ""
        if not self.recorder.records:
            return np.zeros((0, len(self.recorder.layers), 2))
        return np.stack([cache[r.epoch] for r in self.recorder.records])

    def estimates(self) -> dict[str, Any]:
        """The current estimates: ``{"epochs": [...], "layers": [...], "I_XT": (E, L), "I_TY": (E, L)}`` in bits."""
        est = self._estimates()
        return {"epochs": [r.epoch for r in self.recorder.records], "layers": list(self.recorder.layers),
                "I_XT": est[..., 0], "I_TY": est[..., 1]}

    def phase_transition(self) -> dict[str, int | None]:
        """Per layer, the end of the drift phase (Shwartz-Ziv & Tishby): after the epoch where the gradient's
        signal-to-noise ratio ||mean|| / ||std|| over mini-batches peaks above 1, the first epoch where it falls
        below 1. Both norms are smoothed over 5 epochs first. None where the ratio never exceeded 1."""
        out: dict[str, int | None] = {}
        epochs = self.recorder.grad_epochs
        for name in self.recorder.layers:
            mean = _smooth(np.asarray(self.recorder.grad_mean[name]))
            std = _smooth(np.asarray(self.recorder.grad_std[name]))
            with np.errstate(divide="ignore", invalid="ignore"):
                snr = np.where(std > 0, mean / std, np.inf)
            snr = np.nan_to_num(snr, nan=0.0)
            if not len(snr) or snr.max() <= 1:
                out[name] = None
                continue
            peak = int(np.argmax(snr))
            below = np.nonzero(snr[peak:] < 1)[0]
            out[name] = int(epochs[peak + below[0]]) if len(below) else None
        return out

    def records(self) -> list[dict[str, Any]]:
        """The estimates as rows ``{"layer", "epoch", "I_XT", "I_TY"}`` (bits), one per layer and recorded epoch."""
        e = self.estimates()
        return [{"layer": name, "epoch": epoch, "I_XT": float(e["I_XT"][i, j]), "I_TY": float(e["I_TY"][i, j])}
                for i, epoch in enumerate(e["epochs"]) for j, name in enumerate(e["layers"])]

    def to_dataframe(self):
        """:meth:`records` as a pandas DataFrame (needs pandas)."""
        pd = require("pandas", "InformationPlane.to_dataframe (records() gives the same rows)")
        return pd.DataFrame(self.records(), columns=["layer", "epoch", "I_XT", "I_TY"])

    @offline_chart
    def to_altair(self):
        """An Altair chart of the same data (trajectories coloured by epoch), to restyle as you like."""
        import altair as alt

        base = alt.Chart(alt.Data(values=self.records())).encode(
            x=alt.X("I_XT:Q", title="I(X;T) [bits]"), y=alt.Y("I_TY:Q", title="I(T;Y) [bits]"),
            tooltip=["layer:N", "epoch:Q", alt.Tooltip("I_XT:Q", format=".3f"), alt.Tooltip("I_TY:Q", format=".3f")])
        lines = base.mark_line(color="#bbbbbb", strokeWidth=1).encode(detail="layer:N", order="epoch:Q")
        points = base.mark_circle(size=40).encode(
            color=alt.Color("epoch:Q", scale=alt.Scale(scheme="viridis", type="symlog")))
        return (lines + points).properties(title=f"Information plane: {ESTIMATORS[self.estimator][0]}",
                                           width=420, height=320)

    # -- view ---------------------------------------------------------------------------------------------------
    @traitlets.validate("estimator")
    def _valid_estimator(self, proposal: dict) -> str:
        _check_estimator(proposal["value"])
        return proposal["value"]

    @traitlets.validate("n_bins")
    def _valid_bins(self, proposal: dict) -> int:
        return _check_bins(proposal["value"])

    @traitlets.validate("noise_variance")
    def _valid_noise(self, proposal: dict) -> float:
        return _check_noise(proposal["value"])

    @property
    def value_range(self) -> tuple[float, float] | str:
        """Range of the bin edges for the binned estimator: ``(lo, hi)``, ``"observed"`` or ``"adaptive"``."""
        return self._value_range

    @value_range.setter
    def value_range(self, value: Any) -> None:
        self._value_range = _check_value_range(value)
        if hasattr(self, "recorder"):
            with self._lock:
                self._dirty = True
            self.flush()

    @traitlets.observe("estimator", "n_bins", "noise_variance")
    def _setting_changed(self, change: dict) -> None:
        if hasattr(self, "recorder"):
            self._dirty = True
            self.flush()

    def _publish_state(self) -> None:
        est = self._estimates()
        rec = self.recorder
        g_idx = _log_indices(len(rec.grad_epochs), 400)
        arrays = {
            "epochs": np.asarray([r.epoch for r in rec.records], dtype=np.int32),
            "points": est.astype(np.float32).reshape(-1, len(rec.layers), 2),
            "grad_epochs": np.asarray(rec.grad_epochs, dtype=np.int32)[g_idx],
            "grad_mean": np.asarray([rec.grad_mean[n] for n in rec.layers], dtype=np.float32).reshape(
                len(rec.layers), -1)[:, g_idx],
            "grad_std": np.asarray([rec.grad_std[n] for n in rec.layers], dtype=np.float32).reshape(
                len(rec.layers), -1)[:, g_idx],
        }
        transition = self.phase_transition()
        known = [e for e in transition.values() if e is not None]
        index, data = encode(arrays)
        header = {
            "index": index,
            "layers": rec.layers,
            "epoch": rec.epoch - 1,
            "scheduled": len(rec.schedule),
            "estimator": self.estimator,
            "estimators": [{"name": k, "label": v[0]} for k, v in ESTIMATORS.items()],
            "label": ESTIMATORS[self.estimator][0],
            "bounds": {"I_XT": math.log2(max(len(rec.labels), 2)), "I_TY": _label_entropy(rec.labels)},
            "transition": transition,
            "notes": list(self._notes.get(self._key(), {}).values())[:3],
            "transition_epoch": int(np.median(known)) if known else None,
        }
        with self._state_lock:
            self._state = {"header": header, "data": data}
        self._last_sent = time.monotonic()
        self._dirty = False

    def _end_of_cell(self, error: BaseException | None) -> None:
        self.flush()

    def close(self) -> None:
        """Stop updating after each cell (the recorder holds no hooks between evaluations) and stop writing to its
        run directory, if it has one."""
        unhook, self._unhook = getattr(self, "_unhook", None), None
        if unhook is not None:
            unhook()
        recorder = getattr(self, "recorder", None)
        if recorder is not None:
            recorder.close()


def _check_estimator(name: str) -> None:
    if not isinstance(name, str) or name not in ESTIMATORS:
        raise traitlets.TraitError(f"unknown estimator {show(name)}; choose one of {', '.join(ESTIMATORS)}"
                                   f"{closest(name, ESTIMATORS)}")


def _check_bins(value: Any) -> int:
    return check_int(value, "n_bins", minimum=2, error=traitlets.TraitError,
                     hint="try 30 (bin edges; the paper's)")


def _check_noise(value: Any) -> float:
    return check_number(value, "noise_variance", above=0.0, error=traitlets.TraitError,
                        hint="try 1e-3 (Saxe et al.'s)")


VALUE_RANGES = ("observed", "adaptive")


def _check_value_range(value: Any) -> tuple[float, float] | str:
    """``(lo, hi)`` with finite lo < hi, or "observed" or "adaptive" (see :func:`information.binned_mi`)."""
    if isinstance(value, str):
        return check_choice(value, "value_range", VALUE_RANGES, traitlets.TraitError,
                            hint="or (lo, hi) for fixed edges, e.g. (-1, 1) for tanh")
    if not isinstance(value, (tuple, list, np.ndarray)) or len(value) != 2:
        raise traitlets.TraitError(f"value_range must be (lo, hi), 'observed' or 'adaptive'; got {show(value)}")
    lo = check_number(value[0], "value_range's lo", error=traitlets.TraitError)
    hi = check_number(value[1], "value_range's hi", error=traitlets.TraitError)
    if not lo < hi:
        raise traitlets.TraitError(f"value_range must have lo < hi; got {show(tuple(value))}: swap them, or use "
                                   "'observed' for the data's own range")
    return (lo, hi)


def _label_entropy(labels: np.ndarray) -> float:
    return information.entropy_bits(np.unique(labels, return_counts=True)[1])


def _smooth(values: np.ndarray, window: int = 5) -> np.ndarray:
    if len(values) < window:
        return values
    kernel = np.ones(window) / window
    padded = np.pad(values, (window // 2, window - 1 - window // 2), mode="edge")
    return np.convolve(padded, kernel, mode="valid")


def _log_indices(n: int, most: int) -> np.ndarray:
    """At most ``most`` indices into range(n), log-spaced, always including the first and last."""
    if n <= most:
        return np.arange(n)
    return np.unique(np.round(np.logspace(0, math.log10(n), most)).astype(int) - 1)
