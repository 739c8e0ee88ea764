"""The recording side of :class:`~hiddenwidgets.ActivationMonitor`, without any widget: what named layers do in a
training loop, from hooks (:mod:`.capture`) through summaries (:mod:`.summaries`) into a bounded history and the
sender thread (:mod:`.transport`). The view only draws what arrives.

What it guarantees, beyond recording:

- **Right or said.** Every call of a layer in a sampled step is summarised (``calls="merge"``: merged into one
  point, the call count shown; ``"separate"``: one series per call; ``"first"``: only the first). A layer that
  has not run after the first steps, or ran only outside training, is reported in Python (a
  :class:`MonitorWarning`, once) and in the view (its card says so, with the likely cause: a fused attention
  kernel, a compiled graph, weight sharing). Validation passes (``model.eval()`` or ``torch.no_grad()``) are not
  recorded as training; with ``validation=True`` they are recorded as series of their own.
- **Never in the way of training.** ``step()`` never raises for a monitoring problem (a layer whose output cannot
  be summarised, a failed summary): the problem is recorded as an event, warned once, and training goes on. It
  raises only for bad input to ``step()`` itself (a scalar that is not a number).
- **Nothing left behind.** Construction and :meth:`ActivationRecorder.close` are all-or-nothing, also when
  Ctrl+C arrives in the middle. Hooks and the sender thread hold the recorder weakly: a recorder nobody holds
  is collected and takes its hooks with it. Re-running the notebook cell that created a monitor, or creating
  one on the same model and layers, closes the old one.
"""

from __future__ import annotations

import math
import numbers
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from .capture import Call, Capture, Selector
from .interrupts import deferred_interrupts
from .model_state import note_training_step, training_job
from .summaries import LayerSample, LayerSummarizer
from .transport import History, Observation, Streamer

__all__ = ["ActivationRecorder", "MonitorWarning", "TrainingJob", "TrainingStopped"]

CALLS = ("merge", "separate", "first")
CHECK_AFTER = 3  # observed steps before a layer that has not run is reported


class TrainingStopped(Exception):
    """Raised by ``step()`` inside a background job after :meth:`TrainingJob.stop`."""


class MonitorWarning(UserWarning):
    """Something a monitor cannot show (a layer that never runs, an output it cannot summarise). Said once."""


def _noop(*args: Any) -> None:
    pass


def _positive_int(name: str, value: Any, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


class ActivationRecorder:
    """Record what named layers of ``model`` do while it trains (see the module docstring and
    :class:`~hiddenwidgets.ActivationMonitor`, which documents the options). ``send(header, data)`` receives the
    live frames and ``publish(header, data)`` the whole history on :meth:`flush`; both are held weakly.

    Without a view (a script, a framework callback) pass ``logdir="runs/exp1"``: the same frames go to that run
    directory (:mod:`.rundir`), which ``ActivationMonitor.follow`` shows in a notebook; :meth:`flush` is the
    durability barrier (fsync) and :meth:`close` (or leaving a ``with`` block) ends the run, once every recorder
    of this process writing there (an :class:`~.recorder.InformationRecorder` or ``RepresentationRecorder`` given
    the same ``logdir``) has closed."""

    OPTIONS = ("gradients", "grad_only", "every", "overhead", "fps", "history_points", "bins", "max_elements",
               "dead_window", "calls", "validation", "units", "logdir")
    MAX_BACKLOG = 20_000  # queued steps; far more than any real loop builds up in one frame (at most 1 s)

    def __init__(self, model: nn.Module, layers: Iterable[str] | Mapping[str, Selector], *,
                 send: Callable[[dict, bytes], None] | None = None,
                 publish: Callable[[dict, bytes], None] | None = None, **options: Any):
        unknown = sorted(set(options) - set(self.OPTIONS))
        if unknown:
            raise TypeError(f"unexpected keyword argument(s) {unknown}; valid ones: {', '.join(self.OPTIONS)}")
        o = {"gradients": True, "grad_only": True, "every": None, "overhead": 0.02, "fps": 15.0,
             "history_points": 512, "bins": 64, "max_elements": 2**18, "dead_window": 32, "calls": "merge",
             "validation": False, "units": None, "logdir": None, **options}
        for flag in ("gradients", "grad_only", "validation"):
            if not isinstance(o[flag], bool):
                raise TypeError(f"{flag} must be True or False, got {o[flag]!r}")
        if o["every"] is not None and (isinstance(o["every"], bool) or not isinstance(o["every"], numbers.Integral)
                                       or o["every"] < 1):
            raise ValueError(f"every must be a positive int (sample every k steps) or None (adaptive), got "
                             f"{o['every']!r}")
        if isinstance(o["overhead"], bool) or not isinstance(o["overhead"], numbers.Real) \
                or not 0 < o["overhead"] < 1:
            raise ValueError(f"overhead is a fraction of training time in (0, 1), got {o['overhead']!r}")
        points = _positive_int("history_points", o["history_points"], 4)
        if points % 2:
            raise ValueError(f"history_points must be an even number >= 4, got {points}")
        _positive_int("max_elements", o["max_elements"])
        _positive_int("dead_window", o["dead_window"])
        if o["calls"] not in CALLS:
            raise ValueError(f"calls must be one of {CALLS} (how to record a layer called several times per "
                             f"step); got {o['calls']!r}")
        self._options = o
        try:  # all or nothing: a Ctrl+C held back during the build is raised at the end of the with block
            with deferred_interrupts():
                self._build(model, layers, send, publish)
        except BaseException:
            with deferred_interrupts():
                self._abandon()
            raise

    def _build(self, model: nn.Module, layers: Any, send: Any, publish: Any) -> None:
        o = self._options
        self.capture = Capture(model, layers, gradients=o["gradients"], grad_only=o["grad_only"])
        self.model: nn.Module | None = model
        self.names = list(self.capture.taps)
        units = o["units"]
        if isinstance(units, Mapping):
            bad = sorted(set(units) - set(self.names))
            if bad:
                raise ValueError(f"units names layers that are not monitored: {bad}; monitored: {self.names}")
        self._units = {name: (units.get(name) if isinstance(units, Mapping) else units) for name in self.names}
        self._summarizers: dict[str, LayerSummarizer] = {}
        for name in self.names:
            self._summarizer(name, name)  # checks bins, units... now, not at the first step
        self.history = History(capacity=o["history_points"], bins=o["bins"], layers=list(self.names))
        # what the view says of each layer until it has run (in the first snapshot; no frame needed for it)
        self.history.info = {name: {"state": "waiting", "message": "", "calls": 0, "units": "", "source": ""}
                             for name in self.names}
        self._every, self._overhead = o["every"], float(o["overhead"])
        self._calls: str = o["calls"]
        self._step = 0
        self._epoch: int | None = None
        self._collected: dict[str, LayerSample] = {}
        self._validation: dict[str, LayerSample] = {}
        self._cost = 0.0  # seconds the hooks spent on the current sample
        self._fixed = 0.0  # seconds spent in step() since the interval was last chosen
        self._budget_step = 0
        self._budget_sender = 0.0
        self._resting = False  # hooks taken off between samples by _schedule (not by pause_hooks)
        self._interval = 1
        self._last_armed = 0
        self._last_step_t: float | None = None
        self._step_time = 0.0
        self._closed = False
        self._job: TrainingJob | None = None
        self._stop_requested = False
        self._observing = False
        self._observed = 0
        self._totals = {name: [0, 0] for name in self.names}  # training, other calls over observed steps
        self._unresolved: set[str] = set()  # layers reported as not running, watched until they do
        self._said: set[tuple[str, str]] = set()
        # the sender thread's CPU takes at most half the overhead budget (it stretches its frame period), so that
        # samples keep the other half (see _interval_for)
        self.streamer = Streamer(self.history, send or _noop, publish or _noop, fps=o["fps"],
                                 on_error=self._streamer_failed, on_range=self._widen_grid,
                                 cpu_share=0.5 * float(o["overhead"]))
        self._replace_older(model)
        self.run_writer = None
        if o["logdir"] is not None:  # a second consumer of the same frames: the run directory (pipeline/rundir)
            from .rundir import open_run, run_meta

            # a new run directory, or the one an InformationRecorder / RepresentationRecorder of this process
            # already writes (the same logdir): one writer per directory
            self.run_writer = open_run(o["logdir"], history=self.history, meta=run_meta(self))
            self.streamer.sinks.append(self.run_writer)
        self._finalizer = weakref.finalize(self, _release, self.capture, self.streamer)
        self.capture.attach(self._on_activation, self._on_gradient)
        if o["validation"]:
            self.capture.arm_other()
        self.capture.arm()
        self._observing = True
        self.streamer.start()
        _LIVE.append(weakref.ref(self))

    def _abandon(self) -> None:
        """Undo a half-built (or just built) recorder: an error or Ctrl+C during construction."""
        self._closed = True
        capture = getattr(self, "capture", None)
        if capture is not None:
            capture.release()
        streamer = getattr(self, "streamer", None)
        if streamer is not None:
            streamer._stop.set()
            streamer._wake.set()
        writer = getattr(self, "run_writer", None)
        if writer is not None:
            writer.leave("the recorder's construction failed")
        finalizer = getattr(self, "_finalizer", None)
        if finalizer is not None:
            finalizer.detach()
        self.model = None

    def _summarizer(self, series: str, layer: str) -> LayerSummarizer:
        s = self._summarizers.get(series)
        if s is None:
            o = self._options
            tap = self.capture.taps[layer]
            # saturated units only where the tensor summarised is the module's own output: a selector may pick
            # or transform something whose range the module's type does not state
            s = LayerSummarizer(tap.module, bins=o["bins"], max_elements=o["max_elements"],
                                dead_window=o["dead_window"], units=self._units[layer], model=self.capture.model,
                                saturation=tap.selector is None)
            base = self._summarizers.get(layer)
            if base is not None:
                s.grid = base.grid  # a layer's validation or call series shares its histogram grid
            self._summarizers[series] = s
        return s

    # -- the training loop's side --------------------------------------------------------------------------------
    def step(self, epoch: int | None = None, **scalars: Any) -> None:
        """Record one training step (after ``optimizer.step()``), with scalars to plot, e.g. ``loss=loss``."""
        t0 = time.perf_counter()
        if self._closed:
            if self._in_job():
                raise TrainingStopped("the monitor was closed")
            self._say("closed", "", "this monitor is closed, so step() records nothing (its history is kept and "
                      "save_html still works); create a new monitor to go on recording")
            return
        if scalars:
            scalars = _checked_scalars("step", scalars)
        if epoch is not None:
            if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral):
                raise TypeError(f"step(epoch=...) needs an integer, got {epoch!r}")
            self._epoch = int(epoch)
        self._step += 1
        samples, self._collected = self._collected, {}
        sampled = bool(samples)
        self._check_layers(sampled)
        for key, sample in samples.items():
            self._summarizers[key].finish(sample)
        if self._validation:
            samples.update(self._take_validation())
        if not self._resting and not self.capture.attached and self.model is not None:
            self._attach()  # hooks taken off at the end of a cell: the next step runs with them from its start
        self._hand_over(Observation(self._step, self._epoch, scalars, samples))
        self._schedule(sampled)
        if self.model is not None:
            note_training_step(self.model, self._step)
        self._fixed += time.perf_counter() - t0
        if self._stop_requested and self._in_job():  # TrainingJob.stop(): this step is recorded (its optimizer
            raise TrainingStopped("stopped by TrainingJob.stop()")  # step happened), then the job's loop ends here

    def _in_job(self) -> bool:
        """Whether the caller is the thread of this recorder's TrainingJob (run_in_background)."""
        job = self._job
        return job is not None and threading.current_thread() is job.thread

    def _hand_over(self, obs: Observation) -> None:
        """The one place where a step's record leaves the training thread (to the sender thread)."""
        streamer = self.streamer
        streamer.put(obs)
        if len(streamer.inbox) > self.MAX_BACKLOG:  # never drop steps: wait for the sender to catch up
            streamer.wait_backlog(self.MAX_BACKLOG // 2)

    def _attach(self) -> None:
        self.capture.attach(self._on_activation, self._on_gradient)
        if self._options["validation"]:
            self.capture.arm_other()
        self._observing = True
        self._resting = False

    def log(self, **scalars: Any) -> None:
        """Record scalars (e.g. validation accuracy) at the current step without advancing it."""
        if self._closed:
            self._say("closed", "", "this monitor is closed, so log() records nothing; create a new monitor")
            return
        scalars = _checked_scalars("log", scalars)
        samples = self._take_validation()
        self._hand_over(Observation(self._step, self._epoch, scalars, samples))

    def _take_validation(self) -> dict[str, LayerSample]:
        samples, self._validation = self._validation, {}
        for key, sample in samples.items():
            self._summarizers[key].finish(sample)
        return samples

    def _schedule(self, sampled: bool) -> None:
        """Arm the hooks for the next step or not, so that *everything* the monitor adds to training stays within
        ``overhead``: the summaries of a sampled step (``_cost``, timed in the hooks), and the fixed cost of every
        step (``_fixed``: the time spent in ``step()`` itself, plus the sender thread's CPU time per step, which
        competes with training for the same cores). Between samples, the hooks of an eager model are taken off
        altogether (a module with forward hooks takes PyTorch's slower call path), unless they are needed: for
        validation calls, for the first ``CHECK_AFTER`` steps and for layers reported as not running."""
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
                self._interval = self._interval_for(cost)
        if self._step - self._last_armed >= self._interval:
            if self._resting and self.model is not None:
                self._attach()
            self.capture.arm()
            self._last_armed = self._step
        else:
            if self.capture._armed:
                self.capture.disarm()
            # checked on every unsampled step, not only the one after a sample: the hooks may only come off once
            # the first CHECK_AFTER steps are observed, which can be a step or two after the hooks were disarmed
            # (they had stayed on until the next sample, and for good with every=10**9)
            if not self._resting and self.capture.attached and self._may_rest():
                self.capture.detach()
                self._resting = True

    def _interval_for(self, cost: float) -> int:
        """Steps between samples: the sample's cost spread over them fits in what the fixed per-step cost leaves
        of the budget (at least a quarter of the budget goes to samples, so a view still fills when the fixed cost
        alone exceeds it); at most every 10,000 steps."""
        steps = self._step - self._budget_step
        sender = self.streamer.cpu_seconds
        fixed = (self._fixed + sender - self._budget_sender) / max(steps, 1)
        self._fixed, self._budget_sender, self._budget_step = 0.0, sender, self._step
        budget = self._overhead * self._step_time
        spare = max(budget - fixed, 0.25 * budget)
        return max(1, min(10_000, math.ceil(cost / spare)))

    def _may_rest(self) -> bool:
        """Whether the hooks may come off until the next sample (see :meth:`_schedule`)."""
        return (self._observed >= CHECK_AFTER and not self._unresolved and not self._options["validation"]
                and self.model is not None and not _compiled(self.model))

    def _on_activation(self, name: str, tensor: torch.Tensor, call: Call) -> None:
        t0 = time.perf_counter()
        if call.training:
            if self._calls == "first" and call.index > 0:
                return
            key = name if self._calls != "separate" or call.index == 0 else f"{name} · call {call.index + 1}"
            store = self._collected
        else:
            key, store = f"{name} · validation", self._validation
        summarizer = self._summarizer(key, name)
        sample = summarizer.summarize(tensor, finish=False, detail=key not in store)
        sample.layer = name
        previous = store.get(key)
        store[key] = sample if previous is None else summarizer.merge(previous, sample)
        if call.training:
            self._cost += time.perf_counter() - t0

    def _on_gradient(self, name: str, grad: torch.Tensor, call: Call) -> None:
        if self._calls == "first" and call.index > 0:
            return
        t0 = time.perf_counter()
        key = name if self._calls != "separate" or call.index == 0 else f"{name} · call {call.index + 1}"
        sample = self._collected.get(key)
        if sample is not None:
            with torch.no_grad():
                sample.add_gradient(grad)
        self._cost += time.perf_counter() - t0

    # -- what the layers did -------------------------------------------------------------------------------------
    def _check_layers(self, sampled: bool) -> None:
        """After each step: errors, call counts, and layers that have not run; recorded, said once, never raised.

        Cheap on most steps: after the first ``CHECK_AFTER`` observed steps only a step that was sampled (or a
        layer with a problem waiting to be cleared) looks at the counts."""
        if self.capture.has_errors:
            for err in self.capture.take_errors():
                layer = next((n for n in self.names if f"layer {n!r}" in str(err)), "")
                self.history.note_event("error", self._step, str(err), layer=layer or None)
                if layer:
                    self.history.set_info(layer, state="error", message=str(err))
                self._say("error", layer + str(err)[:60], f"{err} (recorded; training goes on)")
        if self._observed >= CHECK_AFTER and not sampled and not self._unresolved:
            return
        observed = self._observing and self.capture.attached
        counts = self.capture.reset_counts()
        if not observed:
            return
        if self._observed < CHECK_AFTER:
            self._observed += 1
            for name, (trained, other) in counts.items():
                self._totals[name][0] += trained
                self._totals[name][1] += other
        for name, (trained, _) in counts.items():
            if not trained:
                continue
            info = self.history.info.get(name, {})
            tap = self.capture.taps[name]
            update: dict[str, Any] = {"source": tap.source}
            if sampled:
                update["calls"] = tap.armed_calls if self._calls != "first" else 1
            if info.get("state") in ("waiting", "never_ran", "eval_only"):
                update.update(state="ok", message="")
                self._unresolved.discard(name)
                if info.get("state") != "waiting":
                    self.history.note_event("info", self._step, f"{name} runs now (step {self._step})", name)
            summarizer = self._summarizers.get(name)
            if summarizer is not None and summarizer._axis_for:
                update["units"] = next(iter(summarizer._axis_for.values()))[1]
            self.history.set_info(name, **update)
        if self._observed != CHECK_AFTER:
            return
        for name, (trained, other) in self._totals.items():
            if trained:
                continue
            if other:
                state = "eval_only"
                what = (f"ran {other} times in the first {CHECK_AFTER} steps, but only outside training (the model "
                        "in eval mode or under torch.no_grad()), which is not recorded as training. "
                        + ("Its validation series shows those calls." if self._options["validation"] else
                           "Pass validation=True to record those calls as a validation series, or grad_only=False "
                           "if you train in eval mode on purpose."))
            else:
                state = "never_ran"
                what = f"did not run in the first {CHECK_AFTER} training steps. " + likely_cause(
                    self.capture.model, name, self.capture.taps[name].module)
            message = f"layer {name!r} {what}"
            self._unresolved.add(name)
            self.history.set_info(name, state=state, message=message)
            self.history.note_event(state, self._step, message, layer=name)
            self._say(state, name, message)
        # reported once: later steps look at the counts only to clear a problem (this report had been repeated on
        # every step while a layer stayed silent: an event per layer per step and the likely cause recomputed)
        self._observed += 1

    def _say(self, kind: str, key: str, message: str) -> None:
        if (kind, key) not in self._said:
            self._said.add((kind, key))
            warnings.warn(MonitorWarning(message), stacklevel=4)

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def flush(self, timeout: float = 60.0) -> None:
        """Send everything recorded so far and publish the whole history."""
        if self._validation and not self._closed:
            self.streamer.put(Observation(self._step, self._epoch, {}, self._take_validation()))
        if not self.streamer.flush(timeout):
            raise TimeoutError(f"the sender thread did not flush within {timeout} s")

    def close(self, reason: str = "") -> None:
        """Stop recording: remove the hooks, stop the sender thread after publishing the whole history, and
        forget the model (the history stays). Idempotent; all-or-nothing under Ctrl+C."""
        if getattr(self, "_closed", True):
            return
        with deferred_interrupts():
            self._closed = True
            job = self._job
            try:
                if job is not None and job.running and threading.current_thread() is not job.thread:
                    job.stop()
                    job.thread.join(2.0)  # a job that never steps again is left to end on its own
            finally:
                if reason:
                    self.history.note_event("closed", self._step, reason)
                self.capture.detach()
                if self._validation:
                    self.streamer.put(Observation(self._step, self._epoch, {}, self._take_validation()))
                try:
                    self.streamer.stop()
                finally:
                    if self.run_writer is not None:
                        self.run_writer.leave(reason)  # the run ends with the last recorder writing it
                    self.capture.release()
                    for s in self._summarizers.values():
                        s.module = s.model = None
                    self.model = None
                    self._finalizer.detach()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> ActivationRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def pause_hooks(self) -> None:
        """Take the hooks off until the next ``step()`` (end of a notebook cell), unless a background job trains."""
        job = self._job
        if not self._closed and (job is None or not job.running):
            self.capture.detach()
            self._observing = False

    def _replace_older(self, model: nn.Module) -> None:
        cell = _current_cell()
        for ref in list(_LIVE):
            other = ref()
            if other is None or other._closed:
                _LIVE.remove(ref)
                continue
            same_model = other.model is model and set(other.names) == set(self.names)
            same_cell = cell is not None and other._cell is not None and other._cell[0] == cell[0] \
                and other._cell[1] != cell[1]
            if same_model or same_cell:
                why = "the same model and layers" if same_model else "the same notebook cell, run again"
                other.close(reason=f"closed: a newer monitor was created on {why}")
        self._cell = cell

    # -- background training -------------------------------------------------------------------------------------
    def run_in_background(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> TrainingJob:
        if self._closed:
            raise RuntimeError("this monitor is closed; create a new one to train with it")
        if self._job is not None and self._job.running:
            raise RuntimeError("a background job is already running on this monitor; job.stop() it first")
        self._stop_requested = False
        self._job = TrainingJob(self, fn, args, kwargs)
        return self._job

    # -- callbacks from the sender thread ----------------------------------------------------------------------
    def _widen_grid(self, name: str, vmin: float, vmax: float) -> None:
        summarizer = self._summarizers.get(name)
        if summarizer is not None and summarizer.grid is not None:
            summarizer.grid = summarizer.grid.cover(vmin, vmax)

    def _streamer_failed(self, err: BaseException) -> None:
        self.history.note_event("error", self._step, f"sender thread: {type(err).__name__}: {err}")

    def sources(self) -> dict[str, str]:
        """Which tensor of each layer's output is watched, e.g. ``{'lstm': 'output[0]'}``, or why nothing is."""
        out = {}
        for name, tap in self.capture.taps.items():
            info = self.history.info.get(name, {})
            if tap.source:
                out[name] = tap.source
            elif info.get("state") in ("never_ran", "eval_only", "error"):
                out[name] = f"{info['state'].replace('_', ' ')}: {info.get('message', '')}"
            else:
                out[name] = "not captured yet"
        return out

    def status(self) -> dict[str, dict[str, Any]]:
        """Per layer (and per validation or call series): ``state`` ("waiting", "ok", "never_ran", "eval_only",
        "error"), ``message``, ``calls`` (training calls in the last step), ``units`` and ``source``."""
        return {name: dict(info) for name, info in self.history.info.items()}


_LIVE: list[weakref.ref[ActivationRecorder]] = []


def _release(capture: Capture, streamer: Streamer) -> None:
    """Finalizer of a recorder nobody holds any more: its hooks come off and its thread ends."""
    capture.detach()
    streamer._stop.set()
    streamer._wake.set()


def _current_cell() -> tuple[str, int] | None:
    """(notebook cell id, execution count) of the cell running now, where the front end says (JupyterLab)."""
    ipython = sys.modules.get("IPython")  # not imported: not in a notebook (and a script need not import it)
    if ipython is None:
        return None
    ip = ipython.get_ipython()
    kernel = getattr(ip, "kernel", None)
    if kernel is None:
        return None
    try:
        parent = kernel.get_parent()
    except Exception:
        return None
    cell = (parent or {}).get("metadata", {}).get("cellId")
    return (str(cell), int(getattr(ip, "execution_count", 0) or 0)) if cell else None


def _checked_scalars(where: str, scalars: dict[str, Any]) -> dict[str, Any]:
    """Validate in the caller's thread (a bad value must fail here, not drop the call's other scalars later)."""
    out = {}
    for name, value in scalars.items():
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise ValueError(f"{where}({name}=...) needs one number; got a tensor of shape "
                                 f"{tuple(value.shape)}. Log a reduction, e.g. {name}={name}.mean().")
            if value.is_complex():
                raise TypeError(f"{where}({name}=...) got a complex tensor; log its real part or magnitude")
            out[name] = value.detach()
        elif isinstance(value, numbers.Real) and not isinstance(value, bool):
            out[name] = value
        else:
            raise TypeError(f"{where}({name}=...) needs a number or a one-element tensor, got "
                            f"{type(value).__name__}")
    return out


def likely_cause(model: nn.Module | None, name: str, module: nn.Module | None) -> str:
    """Why a named module may never be called in a forward pass, as far as the model tells."""
    causes = []
    compiled = model is not None and (hasattr(model, "_orig_mod") or _dynamo_compiled_anything())
    if compiled:
        causes.append("the model runs as a torch.compile'd graph compiled before the monitor's hooks were added, "
                      "and compiled graphs do not call hooks added later: create the monitor before "
                      "torch.compile(model), or call torch.compiler.reset() after creating it")
    if isinstance(module, nn.Dropout) and any(k in name.lower() for k in ("attn", "attention")):
        impl = getattr(getattr(model, "config", None), "_attn_implementation", None)
        how = f"implementation {impl!r}: " if impl else ""
        parent = name.rsplit(".", 1)[0] if "." in name else ""
        causes.append(f"attention dropout is applied inside the attention computation ({how}a fused kernel such "
                      "as scaled_dot_product_attention, or a functional dropout that only reads this module's "
                      "rate), so the module itself is never called and has no output of its own"
                      + (f"; watch {parent!r}, the attention block, instead" if parent else ""))
    if model is not None and module is not None:
        shared = _sharing(model, name, module)
        if shared:
            causes.append(f"its weights are shared with {shared}: the model may compute through that module (or "
                          "a functional call on the shared weights) instead of calling this one; watch that one")
    if not causes:
        causes.append("the forward pass never calls it: a branch not taken, or a module this model's forward "
                      "does not use (e.g. a pooler or head the task does not need); choose a layer that runs")
    return "Likely cause: " + "; or ".join(causes) + "."


def _compiled(model: nn.Module) -> bool:
    """Whether hooks on ``model`` must stay where they are: anything was compiled with torch.compile in this
    process (a compiled graph calls the hooks it was traced with; taking them off and on could recompile)."""
    return hasattr(model, "_orig_mod") or _dynamo_compiled_anything()


_COUNTERS: Any = None


def _dynamo_compiled_anything() -> bool:
    global _COUNTERS
    if _COUNTERS is None:
        if "torch._dynamo" not in sys.modules:
            return False  # nothing imported Dynamo, so nothing was compiled
        try:
            from torch._dynamo.utils import counters
        except Exception:
            return False
        _COUNTERS = counters
    return bool(_COUNTERS.get("stats", {}).get("unique_graphs", 0))


def _sharing(model: nn.Module, name: str, module: nn.Module) -> str:
    mine = {id(p) for p in module.parameters()}
    if not mine:
        return ""
    for other_name, other in model.named_modules(remove_duplicate=False):
        if other is module or other_name == name or other_name.startswith(name + ".") or name.startswith(
                other_name + ".") or not other_name:
            continue
        if mine & {id(p) for p in other.parameters(recurse=False)}:
            return repr(other_name)
    return ""


class TrainingJob:
    """A training function running on a background thread (see ``ActivationMonitor.run_in_background``)."""

    def __init__(self, recorder: ActivationRecorder, fn: Callable[..., Any], args: tuple, kwargs: dict):
        self._recorder = recorder
        self.result: Any = None
        self.exception: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn, args, kwargs), name="hiddenwidgets-training",
                                       daemon=True)
        # marked before the thread starts: from now on hiddenwidgets' own work on this model uses a copy
        self._marking = training_job(recorder.model, self.thread) if recorder.model is not None else _nothing()
        self._marking.__enter__()
        try:
            self.thread.start()
        except BaseException:
            self._marking.__exit__(None, None, None)
            raise

    def _run(self, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        r = self._recorder
        try:
            self.result = fn(*args, **kwargs)
        except TrainingStopped as stop:
            r.history.note_event("stopped", r._step, f"background job stopped at step {r._step} ({stop})")
        except BaseException as err:
            self.exception = err
            r.history.note_event("error", r._step, f"background job failed: {type(err).__name__}: {err}")
        finally:
            self._marking.__exit__(None, None, None)
            r.capture.detach()
            if not r._closed:
                r.flush()

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def __repr__(self) -> str:
        state = "running" if self.running else ("failed" if self.exception else "finished")
        return f"<TrainingJob {state} at step {self._recorder._step}>"

    def stop(self) -> None:
        """Ask the loop to end at its next ``step()`` call (which records its step first)."""
        self._recorder._stop_requested = True

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the job to end; re-raises its exception, if any. Returns False on timeout."""
        self.thread.join(timeout)
        if self.thread.is_alive():
            return False
        if self.exception is not None:
            raise self.exception
        return True


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
