"""ActivationMonitor: layer activations streamed live from a training loop into a notebook view."""

from __future__ import annotations

import math
import numbers
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import traitlets

from ..pipeline.capture import Capture, Selector
from ..pipeline.summaries import LayerSample, LayerSummarizer
from ..pipeline.transport import History, Observation, Streamer
from ._base import HiddenWidget, after_each_cell

__all__ = ["ActivationMonitor", "TrainingJob", "TrainingStopped"]


class TrainingStopped(Exception):
    """Raised by :meth:`ActivationMonitor.step` inside a background job after :meth:`TrainingJob.stop`."""


class ActivationMonitor(HiddenWidget):
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
        ``step()``), and when a background job ends.
    layers : names from ``model.named_modules()``; or a mapping ``name -> selector`` to choose which tensor of a
        tuple/dict/dataclass output to watch (an index, key, attribute name or callable; default: the first
        tensor).
    gradients : also record the norm of d(loss)/d(layer output) on sampled steps (default True).
    grad_only : sample only forward passes run with autograd on, so validation passes under ``torch.no_grad()``
        are not recorded as training batches (default True).
    every : sample layer summaries every ``every`` steps. Default ``None``: adaptively, so that summarising costs
        about ``overhead`` of the training time (2 %).
    overhead : time budget for the adaptive sampling, a fraction of wall time (default 0.02).
    fps : most frames per second sent to the browser (default 15; all views in a kernel also share a budget of
        120 messages/s, far below Jupyter's silent-drop limit of 1000/s).
    history_points : points kept per series; past that, neighbouring points merge (default 512).
    bins : histogram bins per layer, even (default 64).
    max_elements : elements per layer summarised for histograms, moments, zeros and NaN/inf counts, a fixed stride
        beyond (default 2**18); a NaN/inf anywhere is still detected, dead units use the whole tensor.
    dead_window : sampled batches a unit must stay inactive (never > 0) to count as dead (default 32).
    title : heading of the view.
    """

    _view_file = "activation_monitor"

    layers = traitlets.List(traitlets.Unicode(), help="Monitored layer names (read-only).").tag(sync=True)
    selected_layers = traitlets.List(traitlets.Unicode(), help="Layers shown in detail; the view sets it.").tag(
        sync=True, echo_update=False)
    paused = traitlets.Bool(False, help="Stop sending frames; history keeps recording. Default False.").tag(
        sync=True, echo_update=False)
    title = traitlets.Unicode("", help="Heading of the view. Default: 'Activations'.").tag(sync=True)
    _history = traitlets.Dict(help="Snapshot of the whole history, set by flush().").tag(sync=True)

    MAX_BACKLOG = 20_000  # queued steps; far more than any real loop builds up in one frame (~66 ms)

    _OPTIONS = ("gradients", "grad_only", "every", "overhead", "fps", "history_points", "bins", "max_elements",
                "dead_window", "title", "layout")

    def __init__(self, model: torch.nn.Module, layers: Iterable[str] | Mapping[str, Selector], **options: Any):
        unknown = sorted(set(options) - set(self._OPTIONS))
        if unknown:
            raise TypeError(f"ActivationMonitor got unexpected keyword argument(s) {unknown}; "
                            f"valid ones: {', '.join(self._OPTIONS)}")
        o = {"gradients": True, "grad_only": True, "every": None, "overhead": 0.02, "fps": 15.0,
             "history_points": 512, "bins": 64, "max_elements": 2**18, "dead_window": 32, "title": "", **options}
        if o["every"] is not None and (not isinstance(o["every"], int) or o["every"] < 1):
            raise ValueError(f"every must be a positive int or None (adaptive), got {o['every']!r}")
        if not 0 < o["overhead"] < 1:
            raise ValueError(f"overhead is a fraction of training time in (0, 1), got {o['overhead']!r}")
        self.capture = Capture(model, layers, gradients=o["gradients"], grad_only=o["grad_only"])
        names = list(self.capture.taps)
        self._summarizers = {
            name: LayerSummarizer(tap.module, bins=o["bins"], max_elements=o["max_elements"],
                                  dead_window=o["dead_window"])
            for name, tap in self.capture.taps.items()
        }
        self.history = History(capacity=o["history_points"], bins=o["bins"], layers=names)
        super().__init__(layers=names, selected_layers=names[:1], title=o["title"] or "Activations",
                         **({"layout": o["layout"]} if o.get("layout") is not None else {}))
        self._every, self._overhead = o["every"], o["overhead"]
        self._step = 0
        self._epoch: int | None = None
        self._collected: dict[str, LayerSample] = {}
        self._cost = 0.0
        self._interval = 1
        self._last_armed = 0
        self._last_step_t: float | None = None
        self._step_time = 0.0
        self._closed = False
        self._job: TrainingJob | None = None
        self._stop_requested = False
        self.streamer = Streamer(self.history, self._send_frame, self._publish, fps=o["fps"],
                                 on_error=self._streamer_failed, on_range=self._widen_grid)
        self.streamer.select(self.selected_layers)
        self.on_msg(self._on_custom_msg)
        self.capture.attach(self._on_activation, self._on_gradient)
        self.capture.arm()
        self.streamer.start()
        self._ipython_unhook = after_each_cell(self._end_of_cell)

    # -- the training loop's side --------------------------------------------------------------------------------
    def step(self, epoch: int | None = None, **scalars: Any) -> None:
        """Record one training step (after ``optimizer.step()``), with scalars to plot, e.g. ``loss=loss``.

        Scalars may be Python numbers or one-element tensors (read later on the sender thread, so a GPU loss does
        not make this call wait for the device). ``epoch`` sets the epoch counter shown in the view.
        """
        if self._closed:
            raise RuntimeError("this ActivationMonitor is closed: step() cannot record any more. Its history is "
                               "kept (save_html still works); create a new monitor to go on recording.")
        if self._stop_requested and threading.current_thread() is getattr(self._job, "thread", None):
            raise TrainingStopped("stopped by TrainingJob.stop()")
        for name, value in scalars.items():
            if isinstance(value, torch.Tensor):
                if value.numel() != 1:
                    raise ValueError(f"step({name}=...) needs one number; got a tensor of shape "
                                     f"{tuple(value.shape)}. Log a reduction, e.g. {name}={name}.mean().")
                scalars[name] = value.detach()
            elif not isinstance(value, numbers.Real):
                raise TypeError(f"step({name}=...) needs a number or a one-element tensor, got "
                                f"{type(value).__name__}")
        if epoch is not None:
            self._epoch = int(epoch)
        errors = self.capture.take_errors() if any(t.error for t in self.capture.taps.values()) else ()
        if errors:
            raise errors[0]
        if not self.capture.attached:
            self.capture.attach(self._on_activation, self._on_gradient)
        self._step += 1
        samples, self._collected = self._collected, {}
        self.streamer.put(Observation(self._step, self._epoch, scalars, samples))
        if len(self.streamer.inbox) > self.MAX_BACKLOG:  # never drop steps: wait for the sender to catch up
            self.streamer.wait_backlog(self.MAX_BACKLOG // 2)
        self._schedule(bool(samples))

    def log(self, **scalars: Any) -> None:
        """Record scalars (e.g. validation accuracy) at the current step without advancing it."""
        if self._closed:
            raise RuntimeError("this ActivationMonitor is closed; create a new monitor to go on recording.")
        for name, value in scalars.items():
            if isinstance(value, torch.Tensor) and value.numel() != 1:
                raise ValueError(f"log({name}=...) needs one number, got a tensor of shape {tuple(value.shape)}")
        self.streamer.put(Observation(self._step, self._epoch, {k: _detached(v) for k, v in scalars.items()}, {}))

    def _schedule(self, sampled: bool) -> None:
        now = time.perf_counter()
        if self._last_step_t is not None:
            dt = now - self._last_step_t
            self._step_time = dt if self._step_time == 0 else 0.9 * self._step_time + 0.1 * dt
        self._last_step_t = now
        if sampled:
            cost, self._cost = self._cost, 0.0
            if self._every is not None:
                self._interval = self._every
            elif self._step_time > 0:
                self._interval = max(1, min(10_000, math.ceil(cost / (self._overhead * self._step_time))))
        if self._step - self._last_armed >= self._interval:
            self.capture.arm()  # every layer, also one that skipped the last armed forward (a branch not taken)
            self._last_armed = self._step

    def _on_activation(self, name: str, tensor: torch.Tensor) -> None:
        t0 = time.perf_counter()
        self._collected[name] = self._summarizers[name].summarize(tensor)
        self._cost += time.perf_counter() - t0

    def _on_gradient(self, name: str, grad: torch.Tensor) -> None:
        t0 = time.perf_counter()
        sample = self._collected.get(name)
        if sample is not None:
            with torch.no_grad():
                sample.grad_norm = torch.linalg.vector_norm(grad.detach().float())
        self._cost += time.perf_counter() - t0

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def flush(self, timeout: float = 60.0) -> None:
        """Send everything recorded so far and store the whole history in the widget's state."""
        if not self.streamer.flush(timeout):
            raise TimeoutError(f"the sender thread did not flush within {timeout} s")

    def close(self) -> None:
        """Stop monitoring: remove the hooks, send and store the whole history. The view stays on screen.

        Idempotent. ``step()`` afterwards raises. Use :meth:`dispose` to also remove the view.
        """
        if getattr(self, "_closed", True):
            return
        self._closed = True
        try:
            job = self._job
            if job is not None and job.running and threading.current_thread() is not job.thread:
                job.stop()
                job.thread.join(30)
        finally:
            self.capture.detach()
            unhook, self._ipython_unhook = self._ipython_unhook, None
            if unhook is not None:
                unhook()
            self.streamer.stop()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> ActivationMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _end_of_cell(self, error: BaseException | None) -> None:
        """Runs after each notebook cell: take the hooks off (unless a background job trains) and flush."""
        if self._closed:
            return
        job = self._job
        if job is None or not job.running:
            self.capture.detach()
        if error is not None:
            self.history.note_event("interrupted", self._step,
                                    f"cell ended with {type(error).__name__} at step {self._step}; hooks removed")
        self.flush()

    # -- background training -------------------------------------------------------------------------------------
    def run_in_background(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> TrainingJob:
        """Run ``fn(*args, **kwargs)`` (a training loop that calls ``step()``) on a background thread.

        The cell returns at once and the kernel stays free, in every front end. ``job.stop()`` makes the next
        ``step()`` raise :class:`TrainingStopped`, which ends ``fn`` quietly; hooks come off when it ends.
        """
        if self._job is not None and self._job.running:
            raise RuntimeError("a background job is already running on this monitor; job.stop() it first")
        self._stop_requested = False
        self._job = TrainingJob(self, fn, args, kwargs)
        return self._job

    # -- browser side ----------------------------------------------------------------------------------------------
    @traitlets.observe("selected_layers")
    def _selected_changed(self, change: dict) -> None:
        unknown = [name for name in change["new"] if name not in self.capture.taps]
        if unknown:
            raise traitlets.TraitError(f"unknown layer(s) {unknown}; monitored layers: {list(self.capture.taps)}")
        streamer = getattr(self, "streamer", None)
        if streamer is not None:
            streamer.select(change["new"])

    @traitlets.observe("paused")
    def _paused_changed(self, change: dict) -> None:
        streamer = getattr(self, "streamer", None)
        if streamer is not None:
            streamer.paused = bool(change["new"])
            if not change["new"]:
                streamer.resync()

    def _on_custom_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "resync":
            self.streamer.resync()

    def _send_frame(self, header: dict, data: bytes) -> None:
        self.send({"type": "frame", **header}, [data])

    def _publish(self, header: dict, data: bytes) -> None:
        with self._state_lock:
            self._history = {"header": header, "data": data}

    def _widen_grid(self, name: str, vmin: float, vmax: float) -> None:
        summarizer = self._summarizers[name]
        if summarizer.grid is not None:
            summarizer.grid = summarizer.grid.cover(vmin, vmax)

    def _streamer_failed(self, err: BaseException) -> None:
        self.history.note_event("error", self._step, f"sender thread: {type(err).__name__}: {err}")

    @property
    def frames_sent(self) -> int:
        """Frames sent to the browser so far (each carries its sequence number; the view counts gaps)."""
        return self.streamer.frames_sent

    def sources(self) -> dict[str, str]:
        """Which tensor of each layer's output is watched, e.g. ``{'lstm': 'output[0]'}``."""
        return self.capture.describe()


class TrainingJob:
    """A training function running on a background thread (see :meth:`ActivationMonitor.run_in_background`)."""

    def __init__(self, monitor: ActivationMonitor, fn: Callable[..., Any], args: tuple, kwargs: dict):
        self._monitor = monitor
        self.result: Any = None
        self.exception: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn, args, kwargs), name="hiddenwidgets-training",
                                       daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        m = self._monitor
        try:
            self.result = fn(*args, **kwargs)
        except TrainingStopped:
            m.history.note_event("stopped", m._step, f"background job stopped at step {m._step}")
        except BaseException as err:
            self.exception = err
            m.history.note_event("error", m._step, f"background job failed: {type(err).__name__}: {err}")
        finally:
            m.capture.detach()
            if not m._closed:
                m.flush()

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def __repr__(self) -> str:
        state = "running" if self.running else ("failed" if self.exception else "finished")
        return f"<TrainingJob {state} at step {self._monitor._step}>"

    def stop(self) -> None:
        """Ask the loop to end at its next ``step()`` call."""
        self._monitor._stop_requested = True

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the job to end; re-raises its exception, if any. Returns False on timeout."""
        self.thread.join(timeout)
        if self.thread.is_alive():
            return False
        if self.exception is not None:
            raise self.exception
        return True


def _detached(value: Any) -> Any:
    return value.detach() if isinstance(value, torch.Tensor) else value
