"""FollowedRun: the ActivationMonitor view of a run directory written by another process (a script, a Lightning or
Hugging Face job, a DDP rank), live while it is written and as a replay after it ended."""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..pipeline.rundir import MANIFEST, RunDirError, RunReader, merge_histories, rank_dirs
from ..pipeline.transport import History, Streamer
from ._base import names
from ._monitor_view import MonitorView

__all__ = ["FollowedRun", "follow"]


class FollowedRun(MonitorView):
    """The monitor view of the run recorded at ``path`` (see :meth:`ActivationMonitor.follow`).

    A reader thread applies the records written since its last look every ``poll`` seconds (0.3 by default: one
    ``stat`` and one read of the new bytes per file, never a busy loop) and the view gets frames as a live
    monitor's does. Pause and layer choice act on this view; the job itself is another process, which nothing
    here can pause or stop: :meth:`step` and :meth:`run_in_background` say so. Polling ends once the run has
    ended (its writer closed it, or the writer's process is gone); the history then stays, for :meth:`save_html`
    and re-display.

    Where the job also ran an :class:`~hiddenwidgets.InformationRecorder` or a
    :class:`~hiddenwidgets.RepresentationRecorder` with the same ``logdir``, their views come with this one (shown
    below it, as soon as their first records arrive, and updated as more do): :attr:`information_plane`, an
    :class:`~hiddenwidgets.InformationPlane` computed from the recorded activations, and :attr:`projector`, a
    :class:`~hiddenwidgets.Projector` of the recorded representations. For a DDP job (``rank0``, ``rank1``...)
    those are rank 0's.
    """

    _view_file = "activation_monitor"
    _LAYERS_ARE = "layers of this run"

    def _describe(self) -> str:
        return (f"the activation monitor's view of the run recorded in {self.path.name}/ (another process): layers "
                f"{names(self.layers)}")

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
        self.information_plane: Any = None  # an InformationPlane, once the run has information-plane records
        self.projector: Any = None  # a Projector, once the run has recorded representations
        self._box: Any = None
        self._said_end = False
        self._stop = threading.Event()
        self.read_once()
        names = list(self.history.layers) or list(self.reader.manifest.get("layers", []))
        self._show(self.streamer, names, title or f"{self.path.name} · followed from disk")
        self.streamer.start()
        self.flush()
        self._thread = threading.Thread(target=_follow, args=(weakref.ref(self), self._stop, self.poll_interval),
                                        name="hiddenwidgets-follow", daemon=True)
        self._thread.start()

    def _streamer(self) -> Streamer | None:
        return self.__dict__.get("streamer")

    def _known_layers(self) -> list[str]:
        # also those the run's manifests name: a DDP job's merged history has none until every rank has a point
        names = dict.fromkeys(super()._known_layers())
        for r in self.__dict__.get("readers", ()):
            names.update(dict.fromkeys(r.manifest.get("layers", [])))
        return list(names)

    # -- reading ----------------------------------------------------------------------------------------------
    @property
    def following(self) -> bool:
        """Whether the run is still being read as it is written (False once it ended or this view closed)."""
        return not self._stop.is_set()

    def read_once(self) -> int:
        """Apply what the job wrote since the last look; returns the number of records. The reader thread calls
        this every ``poll`` seconds; call it yourself to catch up at once."""
        # the sender thread builds frames from this history: the readers change it while it does not
        n, done, resync = self.streamer.read(lambda _history: self._apply_new_records())
        layers = list(self.history.layers)
        if layers != list(getattr(self, "layers", [])) and hasattr(self, "_state_lock"):
            with self._state_lock:
                self.layers = layers
        if resync:
            self.streamer.resync()
        elif n or done:
            self.streamer.wake()
        self._update_other_views()
        if done:
            self._stop.set()
        return n

    def _apply_new_records(self) -> tuple[int, bool, bool]:
        # a writer gone *before* this look has everything it wrote on disk already; one that ends during the
        # look is read to its end at the next
        gone = [r.ended or not r.writer_alive for r in self.readers]
        resets = sum(r.resets for r in self.readers)
        n = sum(r.poll() for r in self.readers)
        resync = sum(r.resets for r in self.readers) != resets
        done = all(g or r.ended for g, r in zip(gone, self.readers, strict=True))
        if (n or done) and len(self.readers) > 1:
            self._merge(final=done)
        if done and not self._said_end:
            self._said_end = True
            self._note_end()
        return n, done, resync

    def _update_other_views(self) -> None:
        """The information plane and projector of the run's other recorders: created when their first records
        arrive, told when more did."""
        r = self.reader
        added = []
        if r.information is not None:
            if self.information_plane is None:
                from .information_plane import InformationPlane

                self.information_plane = InformationPlane.from_run(
                    r.information, title=f"{self.path.name} · information plane, followed from disk")
                added.append(self.information_plane)
            else:
                self.information_plane.refresh()
        reps = r.representations
        if reps is not None and reps.layers and self.projector is None:
            from .projector import Projector

            # later epochs reach the projector through reps' listeners, as a recorder's do
            self.projector = Projector(reps, title=f"{self.path.name} · representations, followed from disk")
            added.append(self.projector)
        if added and self._box is not None:
            self._box.children = (*self._box.children, *added)

    @property
    def views(self) -> list[Any]:
        """This view, then the information plane and the projector where the run has their records."""
        return [v for v in (self, self.information_plane, self.projector) if v is not None]

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        # shown as a column: this view, then the other recorders' views (added to it as their records arrive)
        if self._box is None:
            import ipywidgets

            self._box = ipywidgets.VBox(self.views)
        bundle = self._box._repr_mimebundle_(**kwargs)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        if isinstance(data, dict):  # without widgets: what each view is, not the box's truncated repr
            data["text/plain"] = "\n".join(repr(view) for view in self._box.children)
        return bundle

    def _merge(self, final: bool) -> None:
        """The ranks' histories merged into this view's history, sent again whole. Ranks whose points differ
        are an error once every rank has been read to its end (``final``)."""
        try:
            merged = merge_histories([r.history for r in self.readers])
        except RunDirError:
            if final:
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
            view.streamer.wake()
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
