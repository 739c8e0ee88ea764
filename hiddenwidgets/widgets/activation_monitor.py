"""ActivationMonitor: layer activations streamed live from a training loop into a notebook view.

The recording itself (hooks, summaries, history, the sender thread) is
:class:`~hiddenwidgets.pipeline.monitor.ActivationRecorder`; this class is its view and forwards to it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from .._optional import require
from ..pipeline.capture import Selector
from ..pipeline.interrupts import deferred_interrupts
from ..pipeline.monitor import ActivationRecorder, MonitorWarning, TrainingJob, TrainingStopped
from ..pipeline.transport import Streamer
from ._base import after_each_cell, model_name, names
from ._monitor_view import MonitorView

__all__ = ["ActivationMonitor", "MonitorWarning", "TrainingJob", "TrainingStopped"]


class ActivationMonitor(MonitorView):
    """Watch named layers of a PyTorch model while it trains.

    ``monitor.step(loss=loss)`` after each optimiser step records the step; the view (display the monitor in a
    notebook) updates live, ~15 times a second, while the training cell runs. Every view of it, a re-display, a
    page reload and :meth:`save_html` show the whole history once it is flushed (automatically at the end of
    each notebook cell, or by :meth:`flush`).

    Parameters
    ----------
    model : the network. It is never changed: no ``train()``/``eval()``, no ``requires_grad`` changes; the only
        hooks are ours, on the named layers, and they come off at :meth:`close`, at the end of a ``with`` block,
        after a notebook cell that ended (error, ``KeyboardInterrupt`` or not; they come back at the next
        ``step()``), and when a background job ends. Names of a ``torch.compile``d or ``DataParallel`` model may
        be given with or without its ``_orig_mod.`` / ``module.`` prefix.
    layers : names from ``model.named_modules()``; or a mapping ``name -> selector`` to choose which tensor of a
        tuple/dict/dataclass output to watch (an index, key, attribute name or callable; default: the first
        tensor; a ``PackedSequence`` stands for its ``.data``).
    gradients : also record the norm of d(loss)/d(layer output) on sampled steps (default True).
    grad_only : record only training forward passes: autograd on and the layer in training mode, so validation
        under ``model.eval()`` or ``torch.no_grad()`` is not recorded as training (default True). False records
        every call as training (for models trained in eval mode on purpose).
    validation : also record the forward passes outside training, as a series of their own per layer, named
        ``"<layer> · validation"`` (default False).
    calls : a layer called several times per step (weight sharing, a reused module): ``"merge"`` every call into
        one point per step (default; the card shows the call count), ``"separate"`` (one series per call,
        ``"<layer> · call 2"``...), or ``"first"`` (only the first call).
    units : which axis of a layer's output indexes its units (for dead units and feature maps):
        ``"channels_first"``, ``"channels_last"``, an axis index, or a mapping ``layer -> one of those``. Default:
        decided from the layer (convolutions: axis 1; linear layers, norms and attention: the last axis, so a
        channels-last ConvNeXt/Swin block is right), and shown on the layer's card.
    every : sample layer summaries every ``every`` steps. Default ``None``: adaptively, so that summarising costs
        about ``overhead`` of the training time (2 %).
    overhead : time budget for everything the monitor adds to training, a fraction of wall time (default 0.02):
        the sender thread keeps to half of it (fewer, larger frames when frames are costly), the sampled summaries
        and ``step()`` itself to the rest.
    fps : most frames per second sent to the browser (default 15; fewer when a frame costs more than the sender's
        share of ``overhead``, at least one a second; all views in a kernel also share a budget of 120 messages/s,
        far below Jupyter's silent-drop limit of 1000/s).
    history_points : points kept per series; past that, neighbouring points merge (default 512).
    bins : histogram bins per layer, even (default 64).
    max_elements : elements per layer summarised for histograms, moments, zeros and NaN/inf counts, a fixed stride
        beyond (default 2**18); a NaN/inf anywhere is still detected, dead units use the whole tensor.
    dead_window : sampled batches a unit must stay inactive (never > 0) to count as dead (default 32).
    title : heading of the view.
    logdir : also append everything the view gets to this run directory (created; it must not hold anything
        yet): frames, scalars, events and layer info, in checksummed TFRecord segments that survive ``kill -9``
        and stay bounded in size. Another notebook shows it with :meth:`follow`. Default None (no disk).

    A layer that does not run (a module a fused kernel replaces, a model compiled before the hooks were added), a
    layer that runs only outside training and an output that cannot be summarised are reported with a
    :class:`MonitorWarning` (once) and on the layer's card; ``step()`` never raises for them.
    """

    _view_file = "activation_monitor"
    _LAYERS_ARE = "monitored layers"

    _VIEW_OPTIONS = ("title", "layout")

    def _describe(self) -> str:
        return (f"activation histograms, feature maps, dead units and gradient norms of layers {names(self.layers)} of "
                f"{model_name(self.recorder.model)}, {self.recorder._step} training steps recorded")

    def __init__(self, model: torch.nn.Module, layers: Iterable[str] | Mapping[str, Selector], *,
                 gradients: bool = True, grad_only: bool = True, validation: bool = False, calls: str = "merge",
                 units: str | int | Mapping[str, str | int] | None = None, every: int | None = None,
                 overhead: float = 0.02, fps: float = 15.0, history_points: int = 512, bins: int = 64,
                 max_elements: int = 2**18, dead_window: int = 32, title: str = "", layout: Any = None,
                 logdir: str | os.PathLike | None = None, **unknown: Any):
        if unknown:
            valid = (*ActivationRecorder.OPTIONS, *self._VIEW_OPTIONS)
            raise TypeError(f"ActivationMonitor got unexpected keyword argument(s) {sorted(unknown)}; valid ones: "
                            f"{', '.join(valid)}")
        if not isinstance(title, str):
            raise TypeError(f"title must be a string, got {type(title).__name__}")
        try:  # all or nothing, also when Ctrl+C arrives during construction (raised at the end of the block)
            with deferred_interrupts():
                self.recorder = ActivationRecorder(
                    model, layers, send=self._send_frame, publish=self._publish, gradients=gradients,
                    grad_only=grad_only, validation=validation, calls=calls, units=units, every=every,
                    overhead=overhead, fps=fps, history_points=history_points, bins=bins,
                    max_elements=max_elements, dead_window=dead_window, logdir=logdir)
                self._show(self.recorder.streamer, list(self.recorder.names), title or "Activations", layout)
                self._ipython_unhook = after_each_cell(self._end_of_cell)
        except BaseException:
            with deferred_interrupts():
                recorder = self.__dict__.get("recorder")
                if recorder is not None:
                    recorder._abandon()
                unhook = self.__dict__.get("_ipython_unhook")
                if unhook is not None:
                    unhook()
            raise

    @staticmethod
    def follow(path: str | os.PathLike | Iterable[str | os.PathLike], *, poll: float = 0.3, title: str = "",
               fps: float = 15.0) -> Any:
        """Show a run recorded by another process (``logdir=`` of a monitor or recorder, a Lightning or Hugging Face
        callback, each rank of a DDP job) in this view, live as it is written, or replayed once it has ended.

        ``path`` is a run directory, or a list of them for one view per run side by side (an ``ipywidgets.HBox``
        of :class:`~hiddenwidgets.widgets.followed_run.FollowedRun`). The directory is looked at every ``poll``
        seconds. Pause and layer choice act on the view; the job itself cannot be paused or stopped from here.
        Where the job's :class:`~hiddenwidgets.InformationRecorder` or
        :class:`~hiddenwidgets.RepresentationRecorder` wrote to the same directory, an information plane and a
        projector of their records are shown below the monitor (``view.information_plane``, ``view.projector``).
        Raises :class:`~hiddenwidgets.pipeline.rundir.RunDirError` for a directory that does not exist, is
        empty, or was written by a newer hiddenwidgets.
        """
        from .followed_run import follow

        return follow(path, poll=poll, title=title, fps=fps)

    # -- recording: forwarded to the recorder ------------------------------------------------------------------
    def step(self, epoch: int | None = None, **scalars: Any) -> None:
        """Record one training step (after ``optimizer.step()``), with scalars to plot, e.g. ``loss=loss``.

        Scalars may be Python numbers or one-element tensors (read later on the sender thread, so a GPU loss does
        not make this call wait for the device). ``epoch`` sets the epoch counter shown in the view. Bad scalars
        raise here; problems of the monitoring itself never do (see the class docstring).
        """
        self.recorder.step(epoch, **scalars)

    def log(self, **scalars: Any) -> None:
        """Record scalars (e.g. validation accuracy) at the current step without advancing it."""
        self.recorder.log(**scalars)

    def flush(self, timeout: float = 60.0) -> None:
        """Send everything recorded so far and store the whole history in the widget's state."""
        self.recorder.flush(timeout)

    def close(self) -> None:
        """Stop monitoring: remove the hooks, send and store the whole history. The view stays on screen.

        Idempotent. ``step()`` afterwards records nothing (and says so once). Use :meth:`dispose` to also remove
        the view.
        """
        recorder = getattr(self, "recorder", None)
        if recorder is None or recorder.closed:
            return
        with deferred_interrupts():
            unhook, self._ipython_unhook = getattr(self, "_ipython_unhook", None), None
            if unhook is not None:
                unhook()
            recorder.close()

    @property
    def closed(self) -> bool:
        return self.recorder.closed

    def __enter__(self) -> ActivationMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run_in_background(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> TrainingJob:
        """Run ``fn(*args, **kwargs)`` (a training loop that calls ``step()``) on a background thread.

        The cell returns at once and the kernel stays free, in every front end. ``job.stop()`` makes the next
        ``step()`` record its step and then raise :class:`TrainingStopped`, which ends ``fn`` quietly (no step
        that happened is lost); hooks come off when it ends. While
        it runs, hiddenwidgets' own computations on the same model (attribution, TCAV, features) run on a copy
        of its weights, so they never disturb the training.
        """
        return self.recorder.run_in_background(fn, *args, **kwargs)

    def sources(self) -> dict[str, str]:
        """Which tensor of each layer's output is watched, e.g. ``{'lstm': 'output[0]'}``, or why nothing is."""
        return self.recorder.sources()

    def status(self) -> dict[str, dict[str, Any]]:
        """Per layer: ``state`` ("waiting", "ok", "never_ran", "eval_only", "error"), ``message``, ``calls``
        (calls in the last step), ``units`` (which axis the units are, and why) and ``source``."""
        return self.recorder.status()

    def to_dataframe(self):
        """The per-layer statistics and the scalars the view shows, one row per history point, as a pandas
        DataFrame: ``series`` (layer or scalar), ``kind`` ("layer"/"scalar"), ``step_first``/``step_last`` (the
        steps a point covers: long runs keep a coarsened history, merged exactly), then ``mean``, ``std``,
        ``min``, ``max``, ``zero_frac``, ``dead_frac``, ``nonfinite``, ``grad_norm``, ``outside`` and ``samples``
        for layers, ``mean``/``min``/``max``/``n`` for scalars. Everything recorded so far is flushed first."""
        pd = require("pandas", "ActivationMonitor.to_dataframe")
        self.recorder.flush()
        rows = self.recorder.streamer.read(lambda history: history.records())
        columns = ["series", "kind", "step_first", "step_last", "mean", "std", "min", "max", "zero_frac", "dead_frac",
                   "nonfinite", "grad_norm", "outside", "samples", "n"]
        return pd.DataFrame(rows, columns=columns)

    @property
    def history(self):
        return self.recorder.history

    @property
    def capture(self):
        return self.recorder.capture

    @property
    def streamer(self):
        return self.recorder.streamer

    @property
    def frames_sent(self) -> int:
        """Frames sent to the browser so far (each carries its sequence number; the view counts gaps)."""
        return self.recorder.streamer.frames_sent

    def _end_of_cell(self, error: BaseException | None) -> None:
        """Runs after each notebook cell: take the hooks off (unless a background job trains) and flush."""
        recorder = self.recorder
        if recorder.closed:
            return
        recorder.pause_hooks()
        if error is not None:
            recorder.history.note_event("interrupted", recorder._step,
                                        f"cell ended with {type(error).__name__} at step {recorder._step}; hooks "
                                        "removed until the next step()")
        self.flush()

    def _streamer(self) -> Streamer | None:
        recorder = self.__dict__.get("recorder")
        return None if recorder is None else recorder.streamer
