"""Run directories: a recorder's frames on disk, appended as the job runs, and read back live or after the job.

A run directory holds::

    run.json                 what the run is (format, version, layers, options, who wrote it); written once
    writer.lock              the writer's lock (``flock``) and its pid: one writer per directory
    frames-000000.tfrecord   records, appended; a new segment starts with a snapshot when one grows past
    frames-000001.tfrecord   ``SEGMENT_BYTES``, and all but the newest ``KEEP_SEGMENTS`` are then deleted

Each segment is a TFRecord file (:mod:`.records`: length, masked CRC-32C, payload, masked CRC-32C). A payload is
``b"HWR1"``, a little-endian uint32 ``n``, ``n`` bytes of UTF-8 JSON, then a blob of little-endian arrays that
the JSON indexes as ``[dtype, offset, shape]`` (the frame codec of :mod:`.transport`, plus float64). The JSON's
``type`` is

- ``"snapshot"``: the whole history (each series' stored sufficient statistics from point 0: ``raw``), its
  layers, per-layer info and events; a reader starts here;
- ``"frame"``: one frame exactly as the live view gets it (``header``, whose ``index`` points into the blob), plus
  the stored rows behind the points it carries (``raw``, so a reader rebuilds the history exactly, not from the
  float32 view numbers), new events, and the latest feature maps of every layer at most every ``DETAIL_EVERY`` s;
- ``"news"``: at each flush, the latest feature maps of every layer and new events (no series);
- ``"end"``: the writer closed the run.

The other recorders of the same job (:class:`~.recorder.InformationRecorder`,
:class:`~hiddenwidgets.analysis.representations.RepresentationRecorder`) write through the same writer (one lock,
one framing, one payload codec) into a file of their own per record kind, ``information.tfrecord`` and
``representations.tfrecord``. Their records are written on the writer's thread (``end_epoch`` does not wait for
checksums or the disk); the recorder's ``flush()`` (and ``close()``) is the barrier after which every record is
durable (``fsync``). These
files are never rotated: what they hold is what the recorder keeps in memory, bounded by its epoch schedule (the
activations of the scheduled epochs), and a reader needs all of it. :func:`open_run` gives the recorders of one
process the one writer of a directory, whichever of them comes first.

The writer is a *sink* of the recorder's :class:`~.transport.Streamer` (called on its thread, after each frame
and at each flush); ``step()`` never waits for the disk. A write error (disk full, permissions, a file size
limit) stops the recording, never the training: the monitor's history gets an event and Python a warning, once.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import socket
import struct
import threading
import time
import warnings
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .records import frame as frame_record
from .records import scan
from .summaries import HistogramGrid
from .transport import History, LayerSeries, ScalarSeries

__all__ = ["CHANNELS", "FORMAT", "VERSION", "RunDirError", "RunReader", "RunWriter", "merge_histories", "open_run",
           "rank_dirs", "read_ranks", "read_run"]

FORMAT = "hiddenwidgets-run"
VERSION = 1
MANIFEST = "run.json"
LOCK = "writer.lock"
MAGIC = b"HWR1"
SEGMENT_BYTES = 16 * 2**20  # a new segment (starting with a snapshot) past this size
KEEP_SEGMENTS = 2  # segments kept: the run directory stays below about KEEP_SEGMENTS * SEGMENT_BYTES + a snapshot
DETAIL_EVERY = 10.0  # seconds between feature maps of one layer on disk
SYNC_EVERY = 5.0  # seconds between fsyncs besides those at flush(), rotation and close
MAX_PENDING_BYTES = 256 * 2**20  # the other recorders' records queued for the writer's thread, at most
_DTYPES = {name: np.dtype(name) for name in ("float64", "float32", "float16", "int64", "int32", "int16", "int8",
                                             "uint64", "uint32", "uint16", "uint8", "bool")}
CHANNELS = ("information", "representations")  # record kinds of the other recorders, one file each


class RunDirError(Exception):
    """A run directory that cannot be written or read as asked (missing, empty, taken, newer, not a run)."""


def _segment_name(i: int) -> str:
    return f"frames-{i:06d}.tfrecord"


def _segments(path: Path) -> list[int]:
    out = []
    for p in path.glob("frames-*.tfrecord"):
        with contextlib.suppress(ValueError):
            out.append(int(p.name[7:13]))
    return sorted(out)


def _pack(arrays: dict[str, np.ndarray], base: int = 0) -> tuple[dict[str, list], bytes]:
    index, parts, offset = {}, [], base
    for key, arr in arrays.items():
        arr = np.ascontiguousarray(arr)
        name = arr.dtype.name
        if name not in _DTYPES:
            raise TypeError(f"array {key!r} has dtype {name}; run directories store {sorted(_DTYPES)}")
        raw = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        raw += b"\0" * (-len(raw) % 8)
        index[key] = [name, offset, list(arr.shape)]
        parts.append(raw)
        offset += len(raw)
    return index, b"".join(parts)


def _unpack(index: dict[str, list], blob: bytes) -> dict[str, np.ndarray]:
    out = {}
    for key, (dtype, offset, shape) in index.items():
        dt = np.dtype(_DTYPES[dtype]).newbyteorder("<")
        count = int(np.prod(shape)) if shape else 1
        out[key] = np.frombuffer(blob, dtype=dt, count=count, offset=offset).reshape(shape)
    return out


def encode_record(meta: dict[str, Any], blob: bytes) -> bytes:
    text = json.dumps(meta, separators=(",", ":"), allow_nan=True).encode()
    return MAGIC + struct.pack("<I", len(text)) + text + blob


def decode_record(payload: bytes) -> tuple[dict[str, Any], bytes]:
    if payload[:4] != MAGIC:
        raise RunDirError(f"a record does not start with {MAGIC!r}: not a hiddenwidgets run record")
    (n,) = struct.unpack("<I", payload[4:8])
    return json.loads(payload[8 : 8 + n]), payload[8 + n :]


def _series_raw(key: str, s: Any, i0: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    head = {"key": key, "name": s.name, "kind": s.kind, "i0": i0, "count": s.count, "stride": s.stride,
            "open": s.open, "samples": s.samples, "rev": s.rev}
    arrays = {f"{key}/rows": s.rows[i0 : s.count]}
    if isinstance(s, LayerSeries):
        g = s.grid
        head.update(grid=None if g is None else [g.lo, g.width, g.bins], shape=list(s.shape), source=s.source)
        arrays[f"{key}/hist"] = s.hist[i0 : s.count]
    return head, arrays


# ----------------------------------------------------------------------------------------------------------------
# writing
class RunWriter:
    """Append a recorder's frames to a run directory (see the module docstring). One writer per directory.

    ``path`` is created if missing; an existing directory must be empty. ``meta`` goes into ``run.json``.
    Called as ``writer(kind, header, data)`` by the streamer (a *sink*); :meth:`close` ends the run.
    """

    def __init__(self, path: str | os.PathLike, history: History, *, meta: dict[str, Any] | None = None,
                 on_stop: Any = None):
        self.path = Path(path)
        self.history = history
        self.stopped = ""  # why recording stopped ("" while it records)
        self.records = 0
        self.bytes = 0
        self._on_stop = on_stop
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._segment = 0
        self._segment_bytes = 0
        self._events_written = 0
        self._events_version = -1
        self._detail_written: dict[str, tuple[int, float]] = {}
        self._synced_at = time.monotonic()
        self.users = 0  # recorders of this process writing through it (open_run); the last to leave closes it
        self._channels: dict[str, int] = {}  # record kind -> fd of its file (the other recorders' records)
        self._channel_lock = threading.Lock()  # their records come from the training thread, frames from another
        self._channel_synced = time.monotonic()
        self._meta = dict(meta or {})
        self._said_closed = False
        # the other recorders' records wait here for the writer's thread (checksums and fsync off their thread)
        self._pending: list[tuple[str, dict[str, Any], dict[str, np.ndarray], bool, int]] = []  # ..., bytes
        self._pending_bytes = 0
        self._busy = False  # the writer's thread holds records taken from _pending
        self._pending_cv = threading.Condition()
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"run directory {str(self.path)!r} is a file, not a directory; choose another logdir")
        self.path.mkdir(parents=True, exist_ok=True)
        if self._leftovers() and not (self.path / LOCK).exists():
            self._refuse()  # a directory that is not ours: not even a lock file is added to it
        self._lock()  # a run directory in use: refused naming the writer that holds it
        try:
            if self._leftovers():
                self._refuse()
            self._created = time.time()
            self._write_manifest()
            self._open_segment(0)
        except BaseException:
            self._release()
            raise
        self._finalizer = weakref.finalize(self, _close_fds, [self._fd, self._lock_fd], self._channels)
        with _OPEN_LOCK:
            _OPEN[_key(self.path)] = self

    def _write_manifest(self) -> None:
        h = self.history
        manifest = {"format": FORMAT, "version": VERSION, "created": self._created, "pid": os.getpid(),
                    "host": socket.gethostname(), "layers": list(h.layers), "capacity": h.capacity, "bins": h.bins,
                    "recorders": sorted(self._channels), **self._meta}
        _write_atomically(self.path / MANIFEST, json.dumps(manifest, indent=1).encode())

    @property
    def closed(self) -> bool:
        """Whether the run has ended here (closed, or its directory released after a failed start)."""
        return self._lock_fd is None

    def attach_history(self, history: History, meta: dict[str, Any] | None = None) -> None:
        """Record ``history`` (an activation recorder's) in this run, which another recorder of this process opened
        first: ``run.json`` is rewritten with its layers and options and a new segment starts with its snapshot.
        One activation recorder per run directory."""
        if self.history.layers or self.history.series:
            raise RunDirError(f"run directory {str(self.path)!r} already records an activation monitor of this "
                              "process (layers " + ", ".join(map(repr, self.history.layers)) + "); one "
                              "ActivationRecorder per run directory. Choose another logdir for this one.")
        self.history = history
        self._meta.update(meta or {})
        with self._channel_lock:  # the other recorders rewrite run.json too (a new record kind)
            self._write_manifest()
        self._open_segment(self._segment + 1)

    def leave(self, reason: str = "") -> None:
        """One recorder of :func:`open_run` is done with this run; the last one closes it (see :meth:`close`)."""
        with _OPEN_LOCK:
            self.users = max(0, self.users - 1)
            last = self.users == 0
        if last:
            self.close(reason)

    def submit(self, kind: str, meta: dict[str, Any], arrays: dict[str, np.ndarray], *, durable: bool = True
               ) -> None:
        """Queue one record of another recorder for the writer's thread, which appends it (:meth:`append`, computing its
        checksums and ``fsync`` there, not in the training loop); :meth:`drain` waits until it is on disk. The
        arrays must not change afterwards (the recorders hand over arrays they never write again). Past
        ``MAX_PENDING_BYTES`` queued, this waits for the disk: memory stays bounded."""
        nbytes = sum(int(a.nbytes) for a in arrays.values())
        with self._pending_cv:
            while self._pending_bytes and self._pending_bytes + nbytes > MAX_PENDING_BYTES:
                self._pending_cv.wait(1.0)
            self._pending.append((kind, meta, arrays, durable, nbytes))
            self._pending_bytes += nbytes
            start = not self._busy
            self._busy = True
        if start:
            threading.Thread(target=self._write_pending, name="hiddenwidgets-rundir", daemon=True).start()

    def _write_pending(self) -> None:
        while True:
            with self._pending_cv:
                if not self._pending:
                    self._busy = False
                    self._pending_cv.notify_all()
                    return
                batch, self._pending = self._pending, []
            for kind, meta, arrays, durable, nbytes in batch:
                self.append(kind, meta, arrays, durable=durable)
                with self._pending_cv:
                    self._pending_bytes -= nbytes
                    self._pending_cv.notify_all()

    def drain(self, timeout: float | None = 60.0) -> bool:
        """Wait until every record :meth:`submit` queued is written (and fsync'd where durable); False on
        timeout. The durability barrier of the information and representation recorders' ``flush()``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._pending_cv:
            while self._busy or self._pending:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._pending_cv.wait(left)
        return True

    def append(self, kind: str, meta: dict[str, Any], arrays: dict[str, np.ndarray], *, durable: bool = True
               ) -> bool:
        """Append one record of another recorder (``kind`` one of :data:`CHANNELS`) to its file, durable
        (``fsync``) when this returns unless ``durable=False`` (then at the next durable record, within
        ``SYNC_EVERY`` s, or at close). A write error stops the whole recording as for frames (training goes on);
        returns False, writing nothing, once recording has stopped."""
        if kind not in CHANNELS:
            raise ValueError(f"record kind {kind!r} is not one of {CHANNELS}")
        with self._channel_lock:
            if self.stopped or self._lock_fd is None:
                if not self.stopped and not self._said_closed:  # a record after the run ended: said, once
                    self._said_closed = True
                    from .monitor import MonitorWarning

                    warnings.warn(MonitorWarning(
                        f"the run at {str(self.path)!r} has ended (its writer was closed), so a {kind} record "
                        "was not written, nor will later ones be; the recorder keeps recording in memory. Record "
                        "into a new logdir to keep them on disk."), stacklevel=3)
                return False
            try:
                fd = self._channels.get(kind)
                if fd is None:
                    fd = os.open(self.path / f"{kind}.tfrecord", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                    self._channels[kind] = fd
                    self._write_manifest()  # names the recorders this run holds (and fsyncs the directory)
                index, blob = _pack(arrays)
                record = frame_record(encode_record({**meta, "type": kind, "t": time.time(), "arrays": index},
                                                    blob))
                _write_all(fd, record)
                if durable or time.monotonic() - self._channel_synced > SYNC_EVERY:
                    os.fsync(fd)
                    self._channel_synced = time.monotonic()
                self.records += 1
                self.bytes += len(record)
                return True
            except Exception as err:  # never into the training loop (see _stop)
                self._stop(err)
                return False

    def _leftovers(self) -> list[str]:
        return sorted(p.name for p in self.path.iterdir() if p.name != LOCK)

    def _refuse(self) -> None:
        raise RunDirError(f"run directory {str(self.path)!r} is not empty ({_describe_existing(self.path)}); "
                          "nothing was overwritten. Choose a new logdir (e.g. runs/exp2), or delete this one "
                          "first.")

    def _lock(self) -> None:
        import fcntl

        lock_path = self.path / LOCK
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise RunDirError(f"run directory {str(self.path)!r} is being written by another writer (process "
                              f"{holder}); one writer per run directory. Close that monitor (or end that "
                              "process), or choose another logdir.") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())
        self._lock_fd = fd

    def _release(self) -> None:
        with self._channel_lock:
            channels = dict(self._channels)
            self._channels.clear()  # the same dict the finalizer holds: nothing is closed twice
        for fd in channels.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        for attr in ("_fd", "_lock_fd"):
            fd = getattr(self, attr)
            if fd is not None:
                setattr(self, attr, None)
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _open_segment(self, i: int) -> None:
        fd = os.open(self.path / _segment_name(i), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_EXCL, 0o644)
        old, self._fd, self._segment, self._segment_bytes = self._fd, fd, i, 0
        if old is not None:
            os.close(old)
        self._write(self._snapshot())
        os.fsync(fd)
        _fsync_dir(self.path)
        for j in _segments(self.path):
            if j <= i - KEEP_SEGMENTS:
                (self.path / _segment_name(j)).unlink(missing_ok=True)

    # -- the sink --------------------------------------------------------------------------------------------------
    def __call__(self, kind: str, header: dict, data: bytes) -> None:
        if self.stopped or self._fd is None:
            return
        try:
            if kind == "frame":
                self._write(self._frame(header, data))
                if self._segment_bytes > SEGMENT_BYTES:
                    self._open_segment(self._segment + 1)
                if time.monotonic() - self._synced_at > SYNC_EVERY:
                    self.sync()
            elif kind == "flush":  # the latest feature maps and events too, then the barrier
                meta: dict[str, Any] = {"type": "news", "t": time.time()}
                arrays: dict[str, np.ndarray] = {}
                self._news(meta, arrays, all_details=True)
                if len(meta) > 2:
                    index, blob = _pack(arrays)
                    meta["arrays"] = index
                    self._write(encode_record(meta, blob))
                self.sync()
        except Exception as err:  # never into the training loop: record why, say it once, stop recording
            self._stop(err)

    def sync(self) -> None:
        """Make everything written so far durable (``fsync``); the barrier behind ``flush()``."""
        if self._fd is not None and not self.stopped:
            os.fsync(self._fd)
            self._synced_at = time.monotonic()

    def _stop(self, err: BaseException) -> None:
        self.stopped = f"{type(err).__name__}: {err}"
        message = (f"stopped recording to {str(self.path)!r} at step {self.history.step}: {self.stopped}. "
                   "Training goes on and the live view keeps updating; the run directory holds every record "
                   "written before this.")
        self.history.note_event("recording_stopped", self.history.step, message)
        self._release_fd()
        from .monitor import MonitorWarning

        warnings.warn(MonitorWarning(message), stacklevel=2)

    def _release_fd(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _write(self, payload: bytes) -> None:
        record = frame_record(payload)
        _write_all(self._fd, record)  # type: ignore[arg-type]
        self.records += 1
        self.bytes += len(record)
        self._segment_bytes += len(record)

    def _news(self, meta: dict[str, Any], arrays: dict[str, np.ndarray], *, all_details: bool = False) -> None:
        h = self.history
        if h.events_version != self._events_version:
            start = min(self._events_written, max(0, len(h.events) - 1))
            meta["events_from"], meta["events"] = start, h.events[start:]
            self._events_written, self._events_version = len(h.events), h.events_version
        now, details = time.monotonic(), []
        for layer, d in h.details.items():
            version, at = self._detail_written.get(layer, (None, -1e9))
            if version == d.version or (not all_details and now - at < DETAIL_EVERY):
                continue
            key = f"detail:{layer}"
            arrays[key] = d.values
            details.append({"layer": layer, "step": d.step, "note": d.note, "kind": d.kind, "array": key})
            self._detail_written[layer] = (d.version, now)
        if details:
            meta["details"] = details

    def _frame(self, header: dict, data: bytes) -> bytes:
        raw, arrays = [], {}
        for head in header["series"]:
            key = f"{head['kind']}:{head['name']}"
            s = self.history.series[key]
            rhead, rarr = _series_raw(key, s, head["i0"])
            raw.append(rhead)
            arrays.update(rarr)
        meta: dict[str, Any] = {"type": "frame", "t": time.time(), "header": header, "raw": raw}
        self._news(meta, arrays)
        index, blob = _pack(arrays, base=len(data) + (-len(data) % 8))
        meta["arrays"] = index
        return encode_record(meta, data + b"\0" * (-len(data) % 8) + blob)

    def _snapshot(self) -> bytes:
        h = self.history
        raw, arrays = [], {}
        for key, s in h.series.items():
            rhead, rarr = _series_raw(key, s, 0)
            raw.append(rhead)
            arrays.update(rarr)
        self._events_written = 0
        self._events_version = -1
        self._detail_written = {}
        meta: dict[str, Any] = {"type": "snapshot", "t": time.time(), "step": h.step, "epoch": h.epoch,
                                "capacity": h.capacity, "bins": h.bins, "layers": list(h.layers),
                                "layer_info": h.info, "raw": raw}
        self._news(meta, arrays, all_details=True)
        meta.setdefault("events_from", 0)
        meta.setdefault("events", [])
        index, blob = _pack(arrays)
        meta["arrays"] = index
        return encode_record(meta, blob)

    def close(self, reason: str = "") -> None:
        """End the run: the queued records of the other recorders written, an ``end`` record, fsync, and the lock
        released. Idempotent."""
        self.drain(None)
        try:
            if self._fd is not None and not self.stopped:
                try:
                    with self._channel_lock:
                        for fd in self._channels.values():
                            os.fsync(fd)
                    self._write(encode_record({"type": "end", "t": time.time(), "step": self.history.step,
                                               "reason": reason}, b""))
                    os.fsync(self._fd)
                except OSError as err:
                    self._stop(err)
        finally:
            self._release()
            with _OPEN_LOCK:
                if _OPEN.get(_key(self.path)) is self:
                    del _OPEN[_key(self.path)]
            finalizer = getattr(self, "_finalizer", None)
            if finalizer is not None:
                finalizer.detach()


_OPEN: dict[str, RunWriter] = {}  # run directories this process writes, by resolved path
_OPEN_LOCK = threading.Lock()


def _key(path: Path) -> str:
    return str(path.resolve())


class RunMember:
    """What a recorder that appends its own records to a run directory shares (the information-plane and the
    representation recorders): joining the process's writer for the directory, :meth:`flush` (the durability
    barrier), :meth:`close` and use as a context manager. ``run_writer`` is None when the recorder keeps its
    records in memory only."""

    run_writer: RunWriter | None = None

    def _join_run(self, logdir: str | os.PathLike, kind: str, start: dict[str, Any],
                  arrays: dict[str, np.ndarray]) -> None:
        writer = open_run(logdir)
        self.run_writer = writer
        self._run_finalizer = weakref.finalize(self, writer.leave)  # at the latest when the process exits
        writer.submit(kind, {"what": "start", **start}, arrays)

    def flush(self, timeout: float = 60.0) -> None:
        """Wait until everything recorded so far is durable in the run directory (``logdir``); records are
        written on the run writer's thread, so ``end_epoch`` never waits for the disk."""
        if self.run_writer is not None and not self.run_writer.drain(timeout):
            raise TimeoutError(f"the run directory's writer did not write within {timeout} s")

    def close(self, reason: str = "") -> None:
        """Write what is queued and stop writing to the run directory (the run ends once its last recorder
        closed). Idempotent; the records in memory stay."""
        writer, self.run_writer = self.run_writer, None
        if writer is not None:
            self._run_finalizer.detach()
            writer.drain(None)
            writer.leave(reason)

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_run(path: str | os.PathLike | RunWriter, *, history: History | None = None,
             meta: dict[str, Any] | None = None) -> RunWriter:
    """The writer of run directory ``path`` for one more recorder of this process (release it with
    :meth:`RunWriter.leave`): the writer another recorder of this process already holds there, or a new one (the
    directory must then be new or empty; :class:`RunWriter` says why not). ``history`` is an activation recorder's
    history (its frames go to the run's segments). ``path`` may also be a writer (joined as is)."""
    if isinstance(path, RunWriter):
        writer = path
        if writer.closed:
            raise RunDirError(f"the run at {str(writer.path)!r} has ended (its writer was closed); record into a "
                              "new logdir")
        if history is not None:
            writer.attach_history(history, meta)
    else:
        with _OPEN_LOCK:
            writer = _OPEN.get(_key(Path(path)))
        if writer is not None and not writer.closed:
            if history is not None:
                writer.attach_history(history, meta)
        else:
            writer = RunWriter(path, history if history is not None else History(layers=[]), meta=meta)
    with _OPEN_LOCK:
        writer.users += 1
    return writer


def _write_all(fd: int, record: bytes) -> None:
    view = memoryview(record)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _close_fds(fds: list[int | None], channels: dict[str, int] | None = None) -> None:
    for fd in [*fds, *(channels or {}).values()]:
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _describe_existing(path: Path) -> str:
    manifest = path / MANIFEST
    if manifest.exists():
        try:
            m = json.loads(manifest.read_text())
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(m.get("created", 0)))
            return f"it holds a run written by process {m.get('pid')} on {m.get('host')} at {when}"
        except (OSError, ValueError):
            return "it holds a run.json that cannot be read"
    names = sorted(p.name for p in path.iterdir() if p.name != LOCK)
    return f"it holds {', '.join(names[:5])}{'...' if len(names) > 5 else ''}"


# ----------------------------------------------------------------------------------------------------------------
# reading
@dataclass
class Problem:
    segment: str
    offset: int
    what: str


class RunReader:
    """Read a run directory into a :class:`~.transport.History`, incrementally: :meth:`poll` applies the records
    written since the last call (a run still being written, or a finished one at once).

    ``history`` may be given (a view's history, updated in place). Raises :class:`RunDirError` for a directory
    that does not exist, holds no run, or was written by a newer format version.
    """

    def __init__(self, path: str | os.PathLike, history: History | None = None):
        self.path = Path(path)
        self.manifest = check_run_dir(self.path)
        m = self.manifest
        self.history = history if history is not None else History(capacity=int(m["capacity"]),
                                                                   bins=int(m["bins"]), layers=[])
        self.history.capacity, self.history.bins = int(m["capacity"]), int(m["bins"])
        self.segment: int | None = None
        self.offset = 0
        self.records = 0
        self.ended = False
        self.end_reason = ""
        self.pending: Problem | None = None  # bytes after the last complete record (torn, or still being written)
        self.damaged: list[Problem] = []  # torn or corrupt ends of segments the writer has since left
        self.resets = 0  # snapshots applied (a reader that fell behind a deleted segment jumps to the next one)
        # the other recorders' records (see CHANNELS): what each holds, rebuilt as the recorder holds it in memory
        self.information: Any = None  # a recorder.RecordedInformation once the run has information records
        self.representations: Any = None  # an analysis.representations.Representations, likewise
        self.channel_records = {kind: 0 for kind in CHANNELS}
        self._channel_offset = {kind: 0 for kind in CHANNELS}
        self._channel_pending: dict[str, Problem] = {}

    # -- what a follower asks --------------------------------------------------------------------------------------
    @property
    def writer_alive(self) -> bool:
        """Whether the writer may still append: False once the run has ended, or once its lock is free (the
        writer closed it, crashed or was killed). A writer on another host (a shared file system) cannot be
        judged from here, so it counts as running until its run ends."""
        if self.ended:
            return False
        try:
            text = (self.path / LOCK).read_text()
        except OSError:
            return False
        parts = text.split()
        if len(parts) < 4 or parts[0] != "pid":
            return False
        if parts[3] != socket.gethostname():
            return True
        import fcntl

        fd = os.open(self.path / LOCK, os.O_RDONLY)
        try:  # a lock we can take is a lock nobody holds: its writer ended (closed, crashed, or was killed)
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)

    @property
    def torn(self) -> str:
        """Why the run's last bytes are not a record ("" if none are, or if its writer may still finish them)."""
        found = [p for p in (self.pending, *self._channel_pending.values()) if p is not None]
        if not found or (not self.ended and self.writer_alive):
            return ""
        return "; ".join(f"{p.segment}: {p.what} at byte {p.offset}" for p in found) + \
            "; every record before it was read"

    # -- reading ----------------------------------------------------------------------------------------------
    def poll(self) -> int:
        """Apply the records written since the last call; returns how many."""
        return self._poll_frames() + self._poll_channels()

    def _poll_channels(self) -> int:
        applied = 0
        for kind in CHANNELS:
            path = self.path / f"{kind}.tfrecord"
            if not path.exists():
                continue
            payloads, where = scan(path, self._channel_offset[kind])
            for payload in payloads:
                meta, blob = decode_record(payload)
                self._apply_channel(kind, meta, _unpack(meta.get("arrays", {}), blob))
            applied += len(payloads)
            self.channel_records[kind] += len(payloads)
            self._channel_offset[kind] = where.end
            if where.torn:
                self._channel_pending[kind] = Problem(path.name, where.end, where.problem)
            else:
                self._channel_pending.pop(kind, None)
        return applied

    def _apply_channel(self, kind: str, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        if kind == "information":
            if self.information is None:
                from .recorder import RecordedInformation

                self.information = RecordedInformation()
            self.information.apply(meta, arrays)
        elif kind == "representations":
            from ..analysis.representations import apply_representation_record

            self.representations = apply_representation_record(self.representations, meta, arrays)

    def _poll_frames(self) -> int:
        applied = 0
        while True:
            segments = _segments(self.path)
            if not segments:
                return applied
            if self.segment is None or self.segment < segments[0]:
                # start (or restart, if the segment being read was deleted) at the oldest segment's snapshot
                self.segment, self.offset = segments[0], 0
            name = _segment_name(self.segment)
            try:
                payloads, where = scan(self.path / name, self.offset)
            except FileNotFoundError:
                self.segment = None
                continue
            for payload in payloads:
                self._apply(*decode_record(payload))
                applied += 1
            self.records += len(payloads)
            self.offset = where.end
            self.pending = Problem(name, where.end, where.problem) if where.torn else None
            later = [s for s in segments if s > self.segment]
            if not later:
                return applied
            # the writer moved on to a newer segment, so this one is complete; a torn end here stays reported
            if self.pending is not None:
                self.damaged.append(self.pending)
                self.pending = None
            self.segment, self.offset = later[0], 0

    def _apply(self, meta: dict[str, Any], blob: bytes) -> None:
        kind = meta.get("type")
        h = self.history
        if kind == "end":
            self.ended, self.end_reason = True, meta.get("reason", "")
            return
        arrays = _unpack(meta.get("arrays", {}), blob)
        if kind == "snapshot":
            self.resets += 1
            if "capacity" in meta:  # a monitor that joined a run another recorder started has its own
                h.capacity, h.bins = int(meta["capacity"]), int(meta["bins"])
            h.series.clear()
            h.details.clear()
            h.events.clear()
            h.step, h.epoch = meta["step"], meta["epoch"]
            layers, info = meta["layers"], meta["layer_info"]
        elif kind == "frame":
            header = meta["header"]
            h.step, h.epoch = header["step"], header["epoch"]
            layers, info = header["layers"], header["layer_info"]
        elif kind == "news":
            layers, info = list(h.layers), h.info
        else:
            return  # a record type from a later minor version: skipped, the run still reads
        for head in meta.get("raw", ()):
            _apply_series(h, head, arrays)
        h.layers[:] = layers
        if info != h.info:
            h.info.clear()
            h.info.update(info)
            h.info_version += 1
        if "events" in meta:
            h.events[meta["events_from"] :] = meta["events"]
            h.events_version += 1
        for d in meta.get("details", []):
            h.add_detail(d["layer"], d["step"], arrays[d["array"]], d["note"], d["kind"])


def _apply_series(h: History, head: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    key = head["key"]
    s = h.series.get(key)
    if s is None:
        s = LayerSeries(head["name"], h.capacity, h.bins) if head["kind"] == "layer" else \
            ScalarSeries(head["name"], h.capacity)
        h.series[key] = s
    i0, count = head["i0"], head["count"]
    s.rows[i0:count] = arrays[f"{key}/rows"]
    s.rows[count:] = 0
    if isinstance(s, LayerSeries):
        grid = head.get("grid")
        s.grid = None if grid is None else HistogramGrid(float(grid[0]), float(grid[1]), int(grid[2]))
        if grid is not None and s.hist.shape[1] != grid[2]:
            s.hist = np.zeros((s.capacity, int(grid[2])))
        s.hist[i0:count] = arrays[f"{key}/hist"]
        s.hist[count:] = 0
        s.shape, s.source = tuple(head["shape"]), head["source"]
    s.count, s.stride, s.open, s.samples, s.rev = count, head["stride"], head["open"], head["samples"], head["rev"]
    s.dirty = min(s.dirty, i0)


def check_run_dir(path: Path) -> dict[str, Any]:
    """The manifest of the run at ``path``, or a :class:`RunDirError` saying why there is none to read."""
    if not path.exists():
        raise RunDirError(f"no run directory at {str(path)!r}: nothing has been recorded there. Start the job "
                          "with ActivationMonitor(..., logdir=...) or ActivationRecorder(..., logdir=...) first, "
                          "or check the path.")
    if not path.is_dir():
        raise RunDirError(f"{str(path)!r} is a file, not a run directory")
    manifest = path / MANIFEST
    if not manifest.exists():
        empty = not any(p.name != LOCK for p in path.iterdir())
        raise RunDirError(f"run directory {str(path)!r} " + (
            "is empty: no run has been written there (yet)" if empty else
            f"holds no {MANIFEST}, so it is not a hiddenwidgets run directory"))
    try:
        m = json.loads(manifest.read_text())
    except ValueError as err:
        raise RunDirError(f"{str(manifest)!r} cannot be read as JSON ({err})") from None
    if m.get("format") != FORMAT:
        raise RunDirError(f"{str(manifest)!r} is not a hiddenwidgets run (format {m.get('format')!r})")
    if not isinstance(m.get("version"), int) or m["version"] > VERSION:
        raise RunDirError(f"run directory {str(path)!r} was written in format version {m.get('version')!r}, "
                          f"newer than this hiddenwidgets reads (up to {VERSION}): upgrade hiddenwidgets to read "
                          "it. Nothing was changed.")
    return m


def read_run(path: str | os.PathLike) -> RunReader:
    """Read a whole run directory as it is now: ``read_run(p).history`` is the recorded history, ``.ended`` says
    whether the writer closed it, ``.torn`` describes a torn last record (a writer killed while writing it)."""
    reader = RunReader(path)
    reader.poll()
    return reader


def run_meta(recorder: Any) -> dict[str, Any]:
    """What ``run.json`` says about a recorder's run: its options, versions, and its rank under DDP."""
    import torch

    from .. import __version__

    o = {k: v for k, v in recorder._options.items() if k not in ("logdir", "units")}
    meta: dict[str, Any] = {"kind": "activations", "options": o, "torch": torch.__version__,
                            "hiddenwidgets": __version__}
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        meta.update(rank=dist.get_rank(), world_size=dist.get_world_size())
    return meta


# ----------------------------------------------------------------------------------------------------------------
# several ranks of one job
def rank_dirs(path: str | os.PathLike) -> list[Path]:
    """The run directories of a multi-process job's ranks, ``<path>/rank0``, ``rank1``..., in rank order."""
    path = Path(path)
    found = sorted((p for p in path.glob("rank*") if p.name[4:].isdigit() and (p / MANIFEST).exists()),
                   key=lambda p: int(p.name[4:]))
    return found


def merge_histories(histories: list[History]) -> History:
    """The merged picture of several ranks' histories (one DDP job): per point, histogram counts add on a common
    grid (every rank's grid coarsened by powers of two, so exactly), count fields add, means and variances pool
    exactly (Chan et al.'s parallel formula, as when merging two points of one history), min/max combine; a
    scalar's point is the mean over ranks. Dead-unit fractions and gradient norms are averaged over rank-samples.

    Raises :class:`RunDirError` if the ranks' points do not cover the same steps (sampling decided per rank:
    record with ``every=k`` so every rank samples the same steps).
    """
    if not histories:
        raise RunDirError("merge_histories needs at least one history")
    first = histories[0]
    out = History(capacity=first.capacity, bins=first.bins, layers=[])
    out.step = max(h.step for h in histories)
    out.epoch = first.epoch
    for key in first.series:
        parts = [h.series.get(key) for h in histories]
        if any(p is None for p in parts):
            continue  # a series not every rank has yet (a rank behind): shown once all have it
        ref = parts[0]
        for rank, s in enumerate(parts[1:], 1):
            same = s.count == ref.count and np.array_equal(s.rows[: s.count, :2], ref.rows[: ref.count, :2])
            if not same:
                raise RunDirError(
                    f"series {ref.name!r}: rank {rank}'s points cover other steps than rank 0's (rank 0: "
                    f"{ref.count} points, {ref.samples} samples; rank {rank}: {s.count} points, {s.samples} "
                    "samples), so they cannot be added point by point. Record with every=k (a fixed sampling "
                    "interval) so that every rank samples the same steps; ranks that are still running can "
                    "also be one step apart: read again.")
        merged = LayerSeries(ref.name, out.capacity, out.bins) if isinstance(ref, LayerSeries) \
            else ScalarSeries(ref.name, out.capacity)
        rows = ref.rows[: ref.count].copy()
        hist = None
        if isinstance(ref, LayerSeries):
            grids = [s.grid for s in parts if s.grid is not None]
            grid = common_grid(grids) if grids else None
            hist = np.zeros((ref.count, ref.hist.shape[1] if grid is None else grid.bins))
            if grid is not None:
                hist = grid.rebin(ref.hist[: ref.count], ref.grid) if ref.grid is not None else hist
            merged.grid, merged.shape, merged.source = grid, ref.shape, ref.source
            if grid is not None and merged.hist.shape[1] != grid.bins:
                merged.hist = np.zeros((merged.capacity, grid.bins))
        for s in parts[1:]:
            eb = None
            if hist is not None:
                eb = merged.grid.rebin(s.hist[: s.count], s.grid) if s.grid is not None else np.zeros_like(hist)
            rows, hist = ref.merge(rows, s.rows[: s.count].copy(), hist, eb)
            rows = np.atleast_2d(rows)
            if hist is not None:
                hist = np.atleast_2d(hist)
        merged.rows[: ref.count] = rows
        if hist is not None:
            merged.hist[: ref.count] = hist
        merged.count, merged.stride, merged.open = ref.count, ref.stride, ref.open
        merged.samples = sum(s.samples for s in parts)
        merged.rev = sum(s.rev for s in parts)
        out.series[key] = merged
    out.layers = [name for name in first.layers if f"layer:{name}" in out.series]
    for h in histories:
        for name, info in h.info.items():
            out.info.setdefault(name, dict(info))
    for rank, h in enumerate(histories):
        out.events.extend({**e, "message": f"rank {rank}: {e['message']}"} for e in h.events)
    return out


def common_grid(grids: list[HistogramGrid]) -> HistogramGrid:
    """The finest grid every one of ``grids`` nests in (power-of-two widths, edges on multiples of the width)."""
    bins = grids[0].bins
    width = max(g.width for g in grids)
    lo_v, hi_v = min(g.lo for g in grids), max(g.hi for g in grids)
    while True:
        lo = math.floor(lo_v / width) * width
        if lo + width * bins >= hi_v:
            return HistogramGrid(lo, width, bins)
        width *= 2


def read_ranks(path: str | os.PathLike) -> History:
    """The merged history of the ranks recorded under ``path`` (``rank0``, ``rank1``...); see
    :func:`merge_histories`."""
    dirs = rank_dirs(path)
    if not dirs:
        raise RunDirError(f"{str(path)!r} holds no rank directories (rank0/run.json, rank1/run.json...)")
    return merge_histories([read_run(d).history for d in dirs])
