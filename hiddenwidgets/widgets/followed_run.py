"""FollowedRun: the ActivationMonitor view of a run directory written by another process (a script, a Lightning or
Hugging Face job, a DDP rank), live while it is written and as a replay after it ended."""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import traitlets

from ..pipeline.rundir import MANIFEST, RunDirError, RunReader, merge_histories, rank_dirs
from ..pipeline.transport import History, Streamer
from ._base import HiddenWidget

__all__ = ["FollowedRun", "follow"]


class FollowedRun(HiddenWidget):
    """The monitor view of the run recorded at ``path`` (see :meth:`ActivationMonitor.follow`).

    A reader thread applies the records written since its last look every ``poll`` seconds (0.3 by default: one
    ``stat`` and one read of the new bytes, never a busy loop) and the view gets frames as a live monitor's does.
    Pause and layer choice act on this view; the job itself is another process, which nothing here can pause
    or stop: :meth:`step` and :meth:`run_in_background` say so. Polling ends once the run has ended (its writer
    closed it, or the writer's process is gone); the history then stays, for :meth:`save_html` and re-display.
    """

    _view_file = "activation_monitor"

    layers = traitlets.List(traitlets.Unicode(), help="Layers of the run (read-only).").tag(sync=True)
    selected_layers = traitlets.List(traitlets.Unicode(), help="Layers shown in detail; the view sets it.").tag(
        sync=True, echo_update=False)
    paused = traitlets.Bool(False, help="Stop updating this view; the run goes on being read.").tag(
        sync=True, echo_update=False)
    title = traitlets.Unicode("", help="Heading of the view. Default: the run directory's name.").tag(sync=True)
    _history = traitlets.Dict(help="Snapshot of the whole history.").tag(sync=True)

    def __init__(self, path: str | os.PathLike, *, poll: float = 0.3, title: str = "", fps: float = 15.0,
                 **unknown: Any):
        if unknown:
            raise TypeError(f"FollowedRun got unexpected keyword argument(s) {sorted(unknown)}; valid ones: "
                            "path, poll, title, fps")
        if isinstance(poll, bool) or not isinstance(poll, (int, float)) or not 0.05 <= poll <= 60:
            raise ValueError(f"poll is the seconds between looks at the run directory, in [0.05, 60]; got {poll!r}")
        self.path = Path(path)
        ranks = rank_dirs(self.path) if not (self.path / MANIFEST).exists() else []
        # one reader per rank of a multi-process job (rank0, rank1...: the view shows them merged), else one
        self.readers = [RunReader(d) for d in ranks] or [RunReader(self.path)]  # RunDirError: missing, empty...
        self.reader = self.readers[0]
        if ranks:
            self.history = History(capacity=self.reader.history.capacity, bins=self.reader.history.bins, layers=[])
        else:
            self.history = self.reader.history
        self.poll_interval = float(poll)
        self.streamer = Streamer(self.history, self._send_frame, self._publish, fps=fps)
        self._said_end = False
        self._stop = threading.Event()
        self.read_once()
        names = list(self.history.layers) or list(self.reader.manifest.get("layers", []))
        super().__init__(layers=names, selected_layers=names[:1],
                         title=title or f"{self.path.name} · followed from disk")
        self.streamer.select(self.selected_layers)
        self.on_msg(self._on_custom_msg)
        self.streamer.start()
        self.flush()
        self._thread = threading.Thread(target=_follow, args=(weakref.ref(self), self._stop, self.poll_interval),
                                        name="hiddenwidgets-follow", daemon=True)
        self._thread.start()

    # -- reading ----------------------------------------------------------------------------------------------
    @property
    def following(self) -> bool:
        """Whether the run is still being read as it is written (False once it ended or this view closed)."""
        return not self._stop.is_set()

    def read_once(self) -> int:
        """Apply what the job wrote since the last look; returns the number of records. The reader thread calls
        this every ``poll`` seconds; call it yourself to catch up at once."""
        with self.streamer._work_lock:  # the sender thread builds frames from this history under the same lock
            resets = sum(r.resets for r in self.readers)
            n = sum(r.poll() for r in self.readers)
            if sum(r.resets for r in self.readers) != resets:
                self.streamer._resync = True
            if n and len(self.readers) > 1:
                self._merge()
            layers = list(self.history.layers)
            done = all(r.ended or not r.writer_alive for r in self.readers)
            if done and not self._said_end:
                self._said_end = True
                self._note_end()
        if layers != list(getattr(self, "layers", [])) and hasattr(self, "_state_lock"):
            with self._state_lock:
                self.layers = layers
        if n or done:
            self.streamer._wake.set()
            self.streamer._ensure_thread()
        if done:
            self._stop.set()
        return n

    def _merge(self) -> None:
        """The ranks' histories merged into this view's history, sent again whole."""
        try:
            merged = merge_histories([r.history for r in self.readers])
        except RunDirError:
            if all(r.ended or not r.writer_alive for r in self.readers):
                raise
            return  # ranks a step apart while they run: merge at the next look
        h = self.history
        h.series.clear()
        h.series.update(merged.series)
        h.layers[:] = merged.layers
        h.step, h.epoch = merged.step, merged.epoch
        if merged.info != h.info:
            h.info.clear()
            h.info.update(merged.info)
            h.info_version += 1
        if merged.events != h.events:
            h.events[:] = merged.events
            h.events_version += 1

    def _note_end(self) -> None:
        h = self.history
        if len(self.readers) > 1:
            ended = sum(r.ended for r in self.readers)
            h.note_event("run_ended", h.step, f"{ended} of {len(self.readers)} ranks closed their runs at step "
                         f"{h.step}; shown merged")
            return
        r = self.reader
        if r.ended:
            h.note_event("run_ended", h.step, f"the run ended at step {h.step}"
                         + (f" ({r.end_reason})" if r.end_reason else "") + "; replayed from disk")
        else:
            h.note_event("writer_gone", h.step, f"the writing process is gone without closing the run (killed or "
                         f"crashed) at step {h.step}; everything it wrote completely is shown")
        torn = r.torn or "; ".join(f"{p.segment}: {p.what} at byte {p.offset}" for p in r.damaged)
        if torn:
            h.note_event("torn", h.step, f"torn tail: {torn}")

    def flush(self, timeout: float = 60.0) -> None:
        """Send everything read so far and store the whole history in the widget's state."""
        if not self.streamer.flush(timeout):
            raise TimeoutError(f"the sender thread did not flush within {timeout} s")

    def close(self) -> None:
        """Stop reading the run (the view stays, with what was read). Idempotent."""
        stop = self.__dict__.get("_stop")
        if stop is not None:
            stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the run has ended and been read to its end; False on timeout."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- what a followed run cannot do ------------------------------------------------------------------------------
    def step(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"this view follows a run recorded by another process ({self.path}); step() belongs "
                           "to that process's monitor. Pause here pauses this view only.")

    def log(self, *args: Any, **kwargs: Any) -> None:
        self.step()

    def run_in_background(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"this view follows a run recorded by another process ({self.path}); it cannot start, "
                           "pause or stop that job, only show it")

    # -- browser side ----------------------------------------------------------------------------------------------
    @traitlets.validate("selected_layers")
    def _valid_selection(self, proposal: dict) -> list[str]:
        known = self.history.layers if hasattr(self, "history") else []
        unknown = [name for name in proposal["value"] if name not in known]
        if unknown:
            raise traitlets.TraitError(f"unknown layer(s) {unknown}; layers of this run: {known}")
        return proposal["value"]

    @traitlets.observe("selected_layers")
    def _selected_changed(self, change: dict) -> None:
        if hasattr(self, "streamer"):
            self.streamer.select(change["new"])

    @traitlets.observe("paused")
    def _paused_changed(self, change: dict) -> None:
        if hasattr(self, "streamer"):
            self.streamer.paused = bool(change["new"])
            if not change["new"]:
                self.streamer.resync()

    def _on_custom_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "resync":
            self.streamer.resync()

    def _send_frame(self, header: dict, data: bytes) -> None:
        self.send({"type": "frame", **header}, [data])

    def _publish(self, header: dict, data: bytes) -> None:
        with self._state_lock:
            self._history = {"header": header, "data": data}


def _follow(ref: weakref.ref[FollowedRun], stop: threading.Event, interval: float) -> None:
    """The reader thread: holds its view weakly, so a view nobody holds is collected and this thread ends."""
    while not stop.wait(interval):
        view = ref()
        if view is None:
            return
        try:
            view.read_once()
            if stop.is_set():
                view.flush()
        except Exception as err:  # the view says what went wrong; reading stops
            h = view.history
            h.note_event("error", h.step, f"reading the run stopped: {type(err).__name__}: {err}")
            stop.set()
            view.streamer._wake.set()
        finally:
            del view


def follow(paths: str | os.PathLike | Iterable[str | os.PathLike], **options: Any) -> Any:
    """One :class:`FollowedRun` per run directory; several side by side in an ``ipywidgets.HBox``."""
    if isinstance(paths, (str, os.PathLike)):
        return FollowedRun(paths, **options)
    import ipywidgets

    views = [FollowedRun(p, **options) for p in paths]
    if not views:
        raise ValueError("follow() needs a run directory, or a list of them; got an empty list")
    for v in views:
        v.layout = ipywidgets.Layout(flex="1 1 0", min_width="360px")
    box = ipywidgets.HBox(views, layout=ipywidgets.Layout(flex_flow="row wrap", width="100%"))
    return box
