"""From summaries to the browser: binary codec, bounded history, frames, rate limits, the sender thread.

No torch model code lives here. The pieces, in the order data passes through them:

- :class:`Series` / :class:`History` keep everything a view shows, bounded in memory: each series holds at most
  ``capacity`` points; when full, neighbouring points are *merged* pairwise (counts and histograms summed,
  means and variances pooled, min/max kept) and each later point covers twice as many samples. Nothing is
  dropped: a merged point still accounts for every sample that went into it.
- :func:`encode` packs numeric arrays into one binary buffer (float32/int32 only) with a JSON index; the front
  end reads them as typed arrays (``js/lib/codec.js``).
- A *frame* carries the points that changed since the previous frame (``i0`` onward), so the browser's copy of a
  series equals Python's as long as no frame is lost; frames are numbered and a gap makes the browser ask for a
  full resend.
- :class:`Streamer` is the one thread that sends on a widget: it drains what the training loop queued, updates
  the history, and sends at most ``fps`` frames per second, each at most ``max_frame_bytes`` (more waits for the
  next frame), within a kernel-wide :class:`MessageBudget` that keeps all views together far below Jupyter's
  IOPub limit of 1000 messages/s (past which messages are dropped silently).
"""

from __future__ import annotations

import atexit
import contextlib
import math
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .listeners import weak_callback
from .summaries import COUNT_FIELDS, MOMENT_FIELDS, HistogramGrid

__all__ = ["History", "MessageBudget", "Observation", "Series", "Streamer", "encode", "forget_reply_route"]

PROTOCOL = 1
_DTYPES = {np.dtype(np.float32): "float32", np.dtype(np.int32): "int32", np.dtype(np.uint8): "uint8"}


# ----------------------------------------------------------------------------------------------------------------
# codec
def encode(arrays: Mapping[str, np.ndarray]) -> tuple[dict[str, Any], bytes]:
    """Pack arrays into one buffer. Returns ``(index, data)``; ``index[key] = [dtype, offset, shape]``.

    Only float32, int32 and uint8 (images) cross, little-endian; every array starts 4-byte aligned (uint8 arrays
    are padded). Anything else is a programming error.
    """
    index: dict[str, Any] = {}
    parts: list[bytes] = []
    offset = 0
    for key, arr in arrays.items():
        arr = np.asarray(arr)
        if arr.dtype not in _DTYPES:
            raise TypeError(f"array {key!r} has dtype {arr.dtype}; only float32, int32 and uint8 are sent to the "
                            "browser")
        raw = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
        index[key] = [_DTYPES[arr.dtype], offset, list(arr.shape)]
        raw += b"\0" * (-len(raw) % 4)
        parts.append(raw)
        offset += len(raw)
    return index, b"".join(parts)


def decode(index: Mapping[str, Any], data: bytes | memoryview) -> dict[str, np.ndarray]:
    """Inverse of :func:`encode` (used by tests and by ``save_html`` round trips)."""
    out = {}
    for key, (dtype, offset, shape) in index.items():
        count = int(np.prod(shape)) if shape else 1
        little = np.dtype(dtype).newbyteorder("<")
        out[key] = np.frombuffer(data, dtype=little, count=count, offset=offset).reshape(shape)
    return out


# ----------------------------------------------------------------------------------------------------------------
# history
class Series:
    """A time series of mergeable points, at most ``capacity`` of them.

    Each point covers a run of consecutive samples (``stride`` of them once the series has been decimated).
    Subclasses say which columns a point has and how two points merge.
    """

    kind = "series"
    columns: tuple[str, ...] = ("lo", "hi")

    def __init__(self, name: str, capacity: int = 512):
        if capacity < 4 or capacity % 2:
            raise ValueError(f"capacity must be an even number >= 4, got {capacity}")
        self.name = name
        self.capacity = capacity
        self.rows = np.zeros((capacity, len(self.columns)))
        self.count = 0  # points in use
        self.stride = 1  # samples per closed point
        self.open = 0  # samples in the last point
        self.rev = 0  # bumped whenever existing points are rewritten (decimation, rebinning)
        self.dirty = 0  # first point not yet sent
        self.samples = 0

    def col(self, name: str) -> int:
        return self.columns.index(name)

    def _append(self, row: np.ndarray, extra: np.ndarray | None = None) -> None:
        if self.count and self.open < self.stride:
            i = self.count - 1
            self.rows[i], merged_extra = self.merge(self.rows[i : i + 1], row[None], *self._extra_pair(i, extra))
            self._set_extra(i, merged_extra)
            self.open += 1
            self.dirty = min(self.dirty, i)
        else:
            if self.count == self.capacity:
                self._decimate()
            self.rows[self.count] = row
            self._set_extra(self.count, None if extra is None else extra[None])
            self.count += 1
            self.open = 1
            self.dirty = min(self.dirty, self.count - 1)
        self.samples += 1

    def _decimate(self) -> None:
        """Merge points pairwise: half as many points, each covering twice the samples."""
        a, b = self.rows[0 : self.count : 2], self.rows[1 : self.count : 2]
        merged, merged_extra = self.merge(a, b, *self._extra_halves())
        half = self.count // 2
        self.rows[:half] = merged
        self.rows[half:] = 0
        self._set_extra(slice(0, half), merged_extra)
        self.count, self.stride, self.rev, self.dirty = half, self.stride * 2, self.rev + 1, 0

    # extra per-point arrays (histograms) -- none for plain series
    def _extra_pair(self, i: int, extra: np.ndarray | None):
        return None, None

    def _extra_halves(self):
        return None, None

    def _set_extra(self, where, extra) -> None:
        pass

    def merge(self, a: np.ndarray, b: np.ndarray, ea=None, eb=None):
        raise NotImplementedError

    def payload(self, i0: int) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def header(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "rev": self.rev, "count": self.count, "stride": self.stride,
                "samples": self.samples}


class ScalarSeries(Series):
    """A user-logged number (loss, accuracy...). A merged point keeps mean, min and max of its samples."""

    kind = "scalar"
    columns = ("lo", "hi", "n", "mean", "min", "max")
    sent_fields = ("mean", "min", "max", "n")

    def add(self, step: int, value: float) -> None:
        self._append(np.array([step, step, 1.0, value, value, value]))

    def add_many(self, steps: np.ndarray, values: np.ndarray) -> None:
        """Add samples in order, as many :meth:`add` calls would, with a few array operations per batch: the
        open point is topped up, then whole runs of ``stride`` samples become points (decimating when full)."""
        steps = np.asarray(steps, dtype=np.float64)
        values = np.asarray(values, dtype=np.float64)
        i, n = 0, len(values)
        while i < n:
            if self.count and self.open < self.stride:  # top up the open point
                k = min(self.stride - self.open, n - i)
                last = self.count - 1
                self.rows[last], _ = self.merge(self.rows[last : last + 1], _chunk_rows(steps[i : i + k],
                                                                                         values[i : i + k], k))
                self.open += k
                self.dirty = min(self.dirty, last)
            else:
                if self.count == self.capacity:
                    self._decimate()
                k = min((self.capacity - self.count) * self.stride, n - i)
                rows = _chunk_rows(steps[i : i + k], values[i : i + k], self.stride)
                self.rows[self.count : self.count + len(rows)] = rows
                self.dirty = min(self.dirty, self.count)
                self.count += len(rows)
                self.open = k - (len(rows) - 1) * self.stride
            i += k
        self.samples += n

    def merge(self, a, b, ea=None, eb=None):
        n = a[:, 2] + b[:, 2]
        mean = (a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3]) / n
        out = np.stack([a[:, 0], b[:, 1], n, mean, np.fmin(a[:, 4], b[:, 4]), np.fmax(a[:, 5], b[:, 5])], axis=1)
        return (out[0] if len(out) == 1 else out), None

    def payload(self, i0: int) -> dict[str, np.ndarray]:
        rows = self.rows[i0 : self.count]
        return {"steps": rows[:, 0:2].astype(np.int32), "values": rows[:, [3, 4, 5, 2]].astype(np.float32)}


def _chunk_rows(steps: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """ScalarSeries rows for consecutive runs of ``size`` samples (the last run may be shorter)."""
    starts = np.arange(0, len(values), size)
    n = np.diff(np.append(starts, len(values))).astype(np.float64)
    ends = np.minimum(starts + size, len(values)) - 1
    return np.stack([steps[starts], steps[ends], n, np.add.reduceat(values, starts) / n,
                     np.fmin.reduceat(values, starts), np.fmax.reduceat(values, starts)], axis=1)


class LayerSeries(Series):
    """Summaries of one layer: moments, sparsity, dead units, NaN/inf, gradient norm and a histogram per point."""

    kind = "layer"
    columns = ("lo", "hi", "samples", *COUNT_FIELDS, *MOMENT_FIELDS, "grad_n", "grad_sum")
    sent_fields = ("mean", "std", "min", "max", "zero_frac", "dead_frac", "nonfinite", "grad_norm", "outside",
                   "samples")

    def __init__(self, name: str, capacity: int = 512, bins: int = 64):
        super().__init__(name, capacity)
        self.hist = np.zeros((capacity, bins))
        self.grid: HistogramGrid | None = None
        self.shape: tuple[int, ...] = ()
        self.source = ""

    def add(self, step: int, counts: np.ndarray, moments: np.ndarray, hist: np.ndarray, grid: HistogramGrid,
            grad_norm: float | None = None) -> None:
        """Add one sampled step. ``hist`` is on ``grid``; the series re-bins to the coarsest grid seen so far."""
        if self.grid is None:
            self.grid = grid
            if grid.bins != self.hist.shape[1]:
                self.hist = np.zeros((self.capacity, grid.bins))
        elif grid != self.grid:
            target = self.grid.cover(grid.lo, grid.hi)
            if target != self.grid:
                self.hist[: self.count] = target.rebin(self.hist[: self.count], self.grid)
                self.grid, self.rev, self.dirty = target, self.rev + 1, 0
            hist = self.grid.rebin(hist, grid)
        grad = (0.0, 0.0) if grad_norm is None or not math.isfinite(grad_norm) else (1.0, grad_norm)
        row = np.concatenate([[step, step, 1.0], counts.astype(np.float64), moments.astype(np.float64), grad])
        self._append(row, hist.astype(np.float64))

    def _extra_pair(self, i, extra):
        return self.hist[i : i + 1], extra[None]

    def _extra_halves(self):
        return self.hist[0 : self.count : 2], self.hist[1 : self.count : 2]

    def _set_extra(self, where, extra) -> None:
        if extra is None:
            return
        if isinstance(where, slice):
            self.hist[where] = extra
            self.hist[where.stop :] = 0
        else:
            self.hist[where] = extra[0]

    def merge(self, a, b, ea=None, eb=None):
        c = {name: i for i, name in enumerate(self.columns)}
        out = a + b  # counts, samples, dead-fraction sums, gradient sums: plain sums
        out[:, c["lo"]], out[:, c["hi"]] = a[:, c["lo"]], b[:, c["hi"]]
        na, nb = a[:, c["finite"]], b[:, c["finite"]]
        n = na + nb
        safe = np.where(n > 0, n, 1)
        delta = b[:, c["mean"]] - a[:, c["mean"]]
        out[:, c["mean"]] = np.where(n > 0, (na * a[:, c["mean"]] + nb * b[:, c["mean"]]) / safe, 0.0)
        out[:, c["m2"]] = a[:, c["m2"]] + b[:, c["m2"]] + delta**2 * na * nb / safe
        out[:, c["min"]] = np.where(na == 0, b[:, c["min"]], np.where(nb == 0, a[:, c["min"]],
                                                                      np.fmin(a[:, c["min"]], b[:, c["min"]])))
        out[:, c["max"]] = np.where(na == 0, b[:, c["max"]], np.where(nb == 0, a[:, c["max"]],
                                                                      np.fmax(a[:, c["max"]], b[:, c["max"]])))
        hist = None if ea is None else ea + eb
        if len(out) == 1:
            return out[0], hist
        return out, hist

    def stats(self, i0: int = 0) -> dict[str, np.ndarray]:
        """The per-point numbers a view shows, derived from the stored sufficient statistics."""
        r = self.rows[i0 : self.count]
        c = {name: i for i, name in enumerate(self.columns)}
        finite = r[:, c["finite"]]
        with np.errstate(invalid="ignore", divide="ignore"):
            std = np.sqrt(np.where(finite > 0, r[:, c["m2"]] / np.maximum(finite, 1), np.nan))
            grad = np.where(r[:, c["grad_n"]] > 0, r[:, c["grad_sum"]] / np.maximum(r[:, c["grad_n"]], 1), np.nan)
        empty = finite == 0
        return {
            "mean": np.where(empty, np.nan, r[:, c["mean"]]),
            "std": std,
            "min": np.where(empty, np.nan, r[:, c["min"]]),
            "max": np.where(empty, np.nan, r[:, c["max"]]),
            "zero_frac": r[:, c["zeros"]] / np.maximum(r[:, c["sampled"]], 1),
            "dead_frac": r[:, c["dead_frac"]] / np.maximum(r[:, c["samples"]], 1),
            "nonfinite": r[:, c["nonfinite"]],
            "grad_norm": grad,
            "outside": r[:, c["outside"]] / np.maximum(finite, 1),
            "samples": r[:, c["samples"]],
        }

    def payload(self, i0: int) -> dict[str, np.ndarray]:
        s = self.stats(i0)
        # fraction of the finite values in each bin; values outside the grid (before it widened) are missing
        # mass, reported as the `outside` fraction
        finite = self.rows[i0 : self.count, self.col("finite"), None]
        return {
            "steps": self.rows[i0 : self.count, 0:2].astype(np.int32),
            "stats": np.stack([s[f] for f in self.sent_fields], axis=1).astype(np.float32),
            "hist": (self.hist[i0 : self.count] / np.maximum(finite, 1)).astype(np.float32),
        }

    def header(self) -> dict[str, Any]:
        head = super().header()
        g = self.grid
        head.update(grid=None if g is None else [g.lo, g.width, g.bins], shape=list(self.shape), source=self.source)
        return head


@dataclass
class Detail:
    """The latest downsampled activations of one layer (feature maps or a units x samples heatmap)."""

    step: int
    values: np.ndarray  # float32 [C, h, w] or [rows, cols]
    note: str
    version: int = 0
    kind: str = ""  # "maps", "units x examples", "tokens x features", "channels x positions", "values"


@dataclass
class History:
    """Everything a monitor view shows, kept in Python: scalar and layer series, latest details, counters."""

    capacity: int = 512
    bins: int = 64
    layers: list[str] = field(default_factory=list)
    series: dict[str, Series] = field(default_factory=dict)
    details: dict[str, Detail] = field(default_factory=dict)
    step: int = 0
    epoch: int | None = None
    events: list[dict[str, Any]] = field(default_factory=list)  # NaN/inf first seen, capture errors...
    events_version: int = 0  # bumped by note_event
    info: dict[str, dict[str, Any]] = field(default_factory=dict)  # per layer: state, message, calls, units...
    info_version: int = 0
    _events_sent: int = 0
    _info_sent: int = 0
    _detail_version: int = 0

    def __post_init__(self) -> None:
        for name in self.layers:
            self.series[f"layer:{name}"] = LayerSeries(name, self.capacity, self.bins)

    def records(self) -> list[dict[str, Any]]:
        """Every point of every series as a flat dict (for ``to_dataframe``): ``series`` (layer or scalar name),
        ``kind``, ``step_first``/``step_last`` (the steps a point covers once history is coarsened) and the
        numbers the view shows for it. Call with the sender's work excluded (the recorder's ``table()`` does)."""
        out: list[dict[str, Any]] = []
        for series in self.series.values():
            rows = series.rows[: series.count]
            if isinstance(series, LayerSeries):
                stats = series.stats()
                for i in range(series.count):
                    out.append({"series": series.name, "kind": "layer", "step_first": int(rows[i, 0]),
                                "step_last": int(rows[i, 1]), **{k: float(v[i]) for k, v in stats.items()}})
            else:
                c = {name: i for i, name in enumerate(series.columns)}
                for i in range(series.count):
                    row = rows[i]
                    out.append({"series": series.name, "kind": "scalar", "step_first": int(row[0]),
                                "step_last": int(row[1]), **{k: float(row[c[k]]) for k in ("mean", "min", "max", "n")
                                                            if k in c}})
        return out

    def layer(self, name: str) -> LayerSeries:
        return self.series[f"layer:{name}"]  # type: ignore[return-value]

    def ensure_layer(self, name: str, after: str | None = None) -> LayerSeries:
        """The series of ``name``, created if new (a layer's validation series, or one call of a shared layer),
        listed right after the last series whose name starts with ``after``."""
        key = f"layer:{name}"
        if key not in self.series:
            self.series[key] = LayerSeries(name, self.capacity, self.bins)
            at = len(self.layers)
            if after is not None:
                related = [i for i, n in enumerate(self.layers) if n == after or n.startswith(after + " ")]
                at = related[-1] + 1 if related else at
            self.layers.insert(at, name)
            self.info_version += 1
        return self.series[key]  # type: ignore[return-value]

    def set_info(self, layer: str, **fields: Any) -> None:
        """Update what the view says about a layer (``state``, ``message``, ``calls``, ``units``, ``source``)."""
        current = self.info.setdefault(layer, {})
        if any(current.get(k) != v for k, v in fields.items()):
            current.update(fields)
            self.info_version += 1

    def scalar(self, name: str) -> ScalarSeries:
        key = f"scalar:{name}"
        if key not in self.series:
            self.series[key] = ScalarSeries(name, self.capacity)
        return self.series[key]  # type: ignore[return-value]

    def add_detail(self, layer: str, step: int, values: np.ndarray, note: str, kind: str = "") -> None:
        self._detail_version += 1
        self.details[layer] = Detail(step, np.asarray(values, dtype=np.float32), note, self._detail_version, kind)

    def note_event(self, kind: str, step: int, message: str, layer: str | None = None) -> None:
        self.events_version += 1
        if len(self.events) < 1000:
            self.events.append({"kind": kind, "step": step, "layer": layer, "message": message})
        else:
            self.events[-1] = {"kind": "truncated", "step": step, "layer": None,
                               "message": "more than 1000 events; the latest replaces this line"}

    def mark_all_dirty(self) -> None:
        for s in self.series.values():
            s.dirty = 0

    @property
    def dirty(self) -> bool:
        return (self._events_sent != self.events_version or self._info_sent != self.info_version
                or any(s.dirty < s.count for s in self.series.values()))

    def build(self, *, full: bool, details: Iterable[str] = (), detail_versions: dict[str, int] | None = None,
              max_bytes: int | None = None) -> tuple[dict[str, Any], bytes]:
        """A frame (or, with ``full``, a snapshot) as ``(header, data)``.

        A frame marks what it carries as sent; series that do not fit in ``max_bytes`` stay dirty for the next
        frame. The first series always goes, so every frame makes progress (a single series is bounded by
        ``capacity`` points: 155 KiB with the defaults). A snapshot changes nothing: what it holds still goes
        out in frames, so a view that receives a later frame before the snapshot is never left behind.
        """
        arrays: dict[str, np.ndarray] = {}
        heads: list[dict[str, Any]] = []
        size = 0
        for key, s in self.series.items():
            i0 = 0 if full else s.dirty
            if i0 >= s.count and not full:
                continue
            payload = s.payload(i0)
            nbytes = sum(a.nbytes for a in payload.values())
            if max_bytes is not None and heads and size + nbytes > max_bytes:
                continue
            size += nbytes
            head = s.header()
            head["i0"] = i0
            head["arrays"] = {}
            for part, arr in payload.items():
                akey = f"{key}/{part}"
                arrays[akey] = arr
                head["arrays"][part] = akey
            heads.append(head)
            if not full:
                s.dirty = s.count
        detail_heads = []
        for layer in details:
            d = self.details.get(layer)
            if d is None or (detail_versions is not None and detail_versions.get(layer) == d.version):
                continue
            if max_bytes is not None and (heads or detail_heads) and size + d.values.nbytes > max_bytes:
                continue
            size += d.values.nbytes
            akey = f"detail:{layer}"
            arrays[akey] = d.values
            detail_heads.append({"layer": layer, "step": d.step, "note": d.note, "array": akey,
                                 "shape": list(d.values.shape), "kind": d.kind})
            if detail_versions is not None:
                detail_versions[layer] = d.version
        if not full:
            self._events_sent = self.events_version
            self._info_sent = self.info_version
        index, data = encode(arrays)
        header = {
            "protocol": PROTOCOL,
            "full": full,
            "step": self.step,
            "epoch": self.epoch,
            "layers": self.layers,
            "stat_fields": list(LayerSeries.sent_fields),
            "scalar_fields": list(ScalarSeries.sent_fields),
            "series": heads,
            "details": detail_heads,
            "events": self.events[-50:],
            "layer_info": self.info,
            "index": index,
        }
        return header, data


# ----------------------------------------------------------------------------------------------------------------
# rate limits
class MessageBudget:
    """A token bucket shared by every stream in the kernel: at most ``rate`` messages/s, bursts of ``burst``.

    Jupyter's server drops *all* IOPub output past 1000 messages/s (averaged over 3 s) without telling anyone;
    the shared default of 120/s leaves that limit an order of magnitude away however many views are live.
    """

    def __init__(self, rate: float = 120.0, burst: int = 30):
        self.rate, self.burst = float(rate), float(burst)
        self._tokens, self._t = float(burst), time.monotonic()
        self._lock = threading.Lock()

    def try_take(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._t) * self.rate)
            self._t = now
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False


SHARED_BUDGET = MessageBudget()


# ----------------------------------------------------------------------------------------------------------------
# kernel routing
def forget_reply_route(comm: Any) -> None:
    """Let the browser's messages for ``comm`` reach the kernel subshell the browser chose.

    ipykernel 7.4 records, each time a comm publishes, the subshell of the request being handled, and routes the
    comm's incoming messages there. Publishing while the main shell runs a cell (the comm_open itself, or a
    trait change made from a cell) pins the route to the main shell, and clicks then wait for the cell to end.
    Forgetting the route after every publish restores JupyterLab's per-comm-target subshell, whose thread
    handles clicks while a training cell runs. A no-op on kernels without that attribute.
    """
    lock = getattr(comm, "_reply_subshell_lock", None)
    if lock is None or not hasattr(comm, "_reply_subshell_id"):
        return
    with lock:
        if hasattr(comm, "_reply_subshell_id"):
            del comm._reply_subshell_id


# ----------------------------------------------------------------------------------------------------------------
# the sender thread
@dataclass
class Observation:
    """What one training step hands to the sender: scalars and layer samples, tensors still on their device."""

    step: int
    epoch: int | None
    scalars: dict[str, Any]
    samples: dict[str, Any]  # layer name -> summaries.LayerSample


@dataclass
class _FlushRequest:
    done: threading.Event = field(default_factory=threading.Event)
    snapshot: tuple[dict, bytes] | None = None


class Streamer:
    """The single thread that owns a history and sends a widget's frames.

    The training loop only appends :class:`Observation` objects (``put``, a deque append); this thread converts
    their tensors to numbers (the only place that waits for the device), merges them into the history and sends
    frames at most ``fps`` times a second: ``send(header, data)`` sends a frame (custom messages only: this thread
    never writes widget traits). ``publish(header, data)`` stores a full snapshot in the widget's synced state;
    :meth:`flush` calls it in the caller's thread. ``on_range(layer, min, max)`` is told when a layer's values
    left its histogram grid.

    ``cpu_share``: the most CPU time this thread may take, as a fraction of wall time (a monitor passes half its
    overhead budget; None: no bound). The frame period stretches so that a frame's work, measured in this thread's
    CPU time, fits: at most ``fps`` frames a second, at least one every ``MAX_PERIOD`` seconds. A frame's cost
    grows with the steps it merges, so a fast training loop gets fewer, larger frames rather than a sender that
    competes with it for the interpreter and the cores (on a 0.9 ms MLP step, 15 frames a second took 25 µs of
    every step: benchmarks/overhead.py).
    """

    IDLE_EXIT = 10.0  # seconds without work after which the thread ends; the next put() starts a new one
    MAX_PERIOD = 1.0  # a live view is redrawn at least once a second, whatever a frame costs

    def __init__(self, history: History, send: Callable[[dict, bytes], None],
                 publish: Callable[[dict, bytes], None], *, fps: float = 15.0, max_frame_bytes: int = 256 * 1024,
                 budget: MessageBudget | None = None, on_error: Callable[[BaseException], None] | None = None,
                 on_range: Callable[[str, float, float], None] | None = None, cpu_share: float | None = None):
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps <= 60:
            raise ValueError(f"fps must be a number in (0, 60], got {fps!r}")
        if cpu_share is not None and not 0 < cpu_share <= 1:
            raise ValueError(f"cpu_share must be a fraction in (0, 1] or None, got {cpu_share!r}")
        self.cpu_share = cpu_share
        self.frame_cpu = 0.0  # this thread's CPU time per frame (moving average), which sets the frame period
        self.history = history
        # held weakly: a thread that sends for a view must never keep that view (or its model) alive
        self._send, self._publish = weak_callback(send), weak_callback(publish)
        self._on_error, self._on_range = weak_callback(on_error), weak_callback(on_range)
        self.fps = fps
        self.max_frame_bytes = max_frame_bytes
        self.budget = budget or SHARED_BUDGET
        self.inbox: deque[Observation] = deque()
        self.selected: tuple[str, ...] = ()
        self.paused = False
        # second consumers of every frame (a run directory): ``sink(kind, header, data)`` with kind "frame" for
        # each frame built (also while the view is paused) and "flush" once a flush has drained everything
        self.sinks: list[Callable[[str, dict, bytes], None]] = []
        self.frames_sent = 0
        self.bytes_sent = 0
        self.snapshots = 0
        self.cpu_seconds = 0.0  # this thread's CPU time (its cost to training, counted in the monitor's budget)
        self.steps_drained = 0
        self._resync = False
        self._hurry = False
        self._detail_sent: dict[str, int] = {}
        self._requests: deque[_FlushRequest] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._work_lock = threading.Lock()  # the thread's work and an inline flush never overlap
        self._published_at = (-1, -1, -1)

    # -- called from other threads -------------------------------------------------------------------------
    def read(self, fn: Callable[[History], Any]) -> Any:
        """``fn(history)`` while the sender thread is not using it: for tables and exports, and for a run reader
        that changes the history in place (then :meth:`wake` or :meth:`resync`)."""
        with self._work_lock:
            return fn(self.history)

    def start(self) -> None:
        self._stop.clear()
        self._ensure_thread()

    def _ensure_thread(self) -> None:
        if self._stop.is_set():
            return
        with self._start_lock:
            if (self._thread is None or not self._thread.is_alive()) and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="hiddenwidgets-streamer", daemon=True)
                self._thread.start()
                _RUNNING.add(self)

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def put(self, obs: Observation) -> None:
        self.inbox.append(obs)
        if self._thread is None:  # the thread ended while idle: start another
            self._ensure_thread()

    def wait_backlog(self, below: int, timeout: float = 60.0) -> None:
        """Block the caller until fewer than ``below`` observations wait in the inbox (back-pressure)."""
        self._hurry = True  # drain now, not at the next frame
        self._wake.set()
        deadline = time.monotonic() + timeout
        while len(self.inbox) >= below and time.monotonic() < deadline and self.running:
            time.sleep(0.005)

    def wake(self) -> None:
        """Build the next frame now rather than at the next tick: the history changed other than through
        :meth:`put` (a run reader applied records to it inside :meth:`read`), or a view asked for something."""
        self._hurry = True
        self._wake.set()
        self._ensure_thread()

    def resync(self) -> None:
        """Send everything again, now (a view saw a gap, or a new view appeared)."""
        self._resync = True
        self.wake()

    def select(self, layers: Iterable[str]) -> None:
        """Send these layers' details (feature maps) from now on; the first frame goes now, not at the next tick
        (a click in the view must not wait for a frame period stretched by a fast training loop)."""
        self.selected = tuple(layers)
        self._detail_sent = {}
        self.wake()

    def flush(self, timeout: float = 60.0) -> bool:
        """Wait until everything queued is in the history and sent; then publish the whole history as the
        widget's state *from the calling thread* (front ends that ignore messages from other threads, such as
        Colab, still get the final state). Returns False if the sender thread did not answer in time."""
        if not self.running:
            with self._work_lock:
                snapshot = self._flush_now()
        else:
            request = _FlushRequest()
            self._requests.append(request)
            self._wake.set()
            while not request.done.wait(min(timeout, 0.5)):
                timeout -= 0.5
                if timeout <= 0:
                    return False
                if not self.running and not request.done.is_set():  # the thread ended: flush here
                    with self._work_lock:
                        if not request.done.is_set():
                            request.snapshot = self._flush_now()
                            request.done.set()
            snapshot = request.snapshot
        publish = self._publish()
        if snapshot is not None and publish is not None:
            publish(*snapshot)
        return True

    def stop(self, timeout: float = 60.0) -> None:
        self.flush(timeout)
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._thread = None

    # -- the thread ------------------------------------------------------------------------------------------
    def _period(self) -> float:
        """Seconds between frames: 1/fps, stretched so that frames take at most ``cpu_share`` of this thread's
        wall time (see the class docstring)."""
        period = 1.0 / self.fps
        if self.cpu_share is not None:
            period = max(period, min(self.MAX_PERIOD, self.frame_cpu / self.cpu_share))
        return period

    def _run(self) -> None:
        next_frame = time.monotonic()
        idle_since = time.monotonic()
        while not self._stop.is_set():
            self._wake.wait(max(0.0, next_frame - time.monotonic()) if not self._requests else 0)
            self._wake.clear()
            if self._send() is None:  # the view (and whatever owns this stream) is gone
                return
            with self._work_lock:
                cpu0 = time.thread_time()
                try:
                    if self._requests:
                        snapshot = self._flush_now()
                        while self._requests:
                            request = self._requests.popleft()
                            request.snapshot = snapshot
                            request.done.set()
                        next_frame = time.monotonic() + self._period()
                        idle_since = time.monotonic()
                        continue
                    if time.monotonic() < next_frame and not self._hurry:
                        continue
                    self._hurry = False
                    period = self._period()
                    next_frame = time.monotonic() + period
                    busy = bool(self.inbox) or self._resync or self.history.dirty or self._details_pending()
                    self._drain(budget=0.5 * period)
                    if not self.paused or self.sinks:
                        self._frame(force=False)
                    if busy:  # an idle tick costs next to nothing and says nothing about a frame's cost
                        spent = time.thread_time() - cpu0
                        self.frame_cpu = spent if self.frame_cpu == 0 else 0.8 * self.frame_cpu + 0.2 * spent
                except Exception as err:  # never let the thread die silently; the widget shows it
                    on_error = self._on_error()
                    if on_error is not None:
                        on_error(err)
                    next_frame = time.monotonic() + 1.0
                    busy = True
                finally:
                    self.cpu_seconds += time.thread_time() - cpu0
            if busy:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > self.IDLE_EXIT and self._exit_if_idle():
                return

    def _exit_if_idle(self) -> bool:
        with self._start_lock:
            if self.inbox or self._requests or self._resync:
                return False
            self._thread = None
        if self.inbox or self._requests:  # something arrived while this thread was deciding: hand it on
            self._ensure_thread()
        return True

    def _flush_now(self) -> tuple[dict, bytes] | None:
        """Drain, send, and build a snapshot of the whole history (None if nothing changed since the last)."""
        while self.inbox:
            self._drain()
        if not self.paused or self.sinks:
            for _ in range(1000):  # each frame sends at least one series: this ends long before the bound
                if not (self._resync or self.history.dirty or self._details_pending()):
                    break
                self._frame(force=True)
        for sink in self.sinks:
            sink("flush", {}, b"")
        marker = (self.history.step, self.history.events_version,
                  sum(s.samples + s.rev for s in self.history.series.values()))
        if marker == self._published_at:
            return None
        header, data = self.history.build(full=True, details=list(self.history.details))
        header["seq"] = self.frames_sent - 1
        self.snapshots += 1
        self._published_at = marker
        return header, data

    def _frame(self, *, force: bool) -> None:
        full = self._resync
        if not (full or self.history.dirty or self._details_pending()):
            return
        if self.paused:  # built for the sinks only: no message, no token of the kernel's message budget
            pass
        elif not self.budget.try_take():
            if not force:
                return
            while not self.budget.try_take():
                time.sleep(0.01)
        if full:
            self.history.mark_all_dirty()
            self._detail_sent = {}
            self._resync = False
        header, data = self.history.build(full=False, details=self.selected, detail_versions=self._detail_sent,
                                          max_bytes=self.max_frame_bytes)
        header["seq"] = self.frames_sent
        header["resync"] = full
        for sink in self.sinks:
            sink("frame", header, data)
        send = self._send()
        if send is None or self.paused:
            return
        send(header, data)
        self.frames_sent += 1
        self.bytes_sent += len(data)

    def _details_pending(self) -> bool:
        return any(layer in self.history.details and self._detail_sent.get(layer) != self.history.details[layer].version
                   for layer in self.selected)

    def _drain(self, budget: float | None = None) -> None:
        """Move queued observations into the history: those queued now, for at most ``budget`` seconds, so that
        a loop that queues faster than this thread converts never keeps it from sending frames.

        Scalars that are tensors (a loss on the GPU) are read in one batch per drain: the tensors of a batch are
        stacked and copied to the host once, not one ``.item()`` (one device wait) per step."""
        h = self.history
        t0 = time.monotonic()
        taken: list[Observation] = []
        for i in range(len(self.inbox)):
            if budget is not None and i % 64 == 63 and time.monotonic() - t0 > budget:
                break
            taken.append(self.inbox.popleft())
        if not taken:
            return
        # scalars: one array per name, added to its series in one batch (in step order)
        columns: dict[str, tuple[list[int], list[float]]] = {}
        for obs, numbers in zip(taken, _read_scalars(taken), strict=True):
            for name, v in numbers.items():
                column = columns.get(name)
                if column is None:
                    column = columns[name] = ([], [])
                column[0].append(obs.step)
                column[1].append(v)
        for name, (steps, values) in columns.items():
            array = np.asarray(values, dtype=np.float64)
            h.scalar(name).add_many(np.asarray(steps, dtype=np.float64), array)
            bad = ~np.isfinite(array)
            if bad.any() and not any(e.get("scalar") == name for e in h.events):
                at = int(np.argmax(bad))
                h.note_event("nonfinite", steps[at], f"{name} = {values[at]} at step {steps[at]}")
                h.events[-1]["scalar"] = name
        for obs in taken:
            h.step = max(h.step, obs.step)
            if obs.epoch is not None:
                h.epoch = obs.epoch
            for name, sample in obs.samples.items():
                self._add_sample(obs.step, name, sample)
        self.steps_drained += len(taken)

    def _add_sample(self, step: int, name: str, sample: Any) -> None:
        h = self.history
        series = h.ensure_layer(name, after=getattr(sample, "layer", None) or None)
        counts = sample.counts.cpu().numpy()
        moments = sample.moments.cpu().numpy()
        hist = sample.hist.cpu().numpy()
        grad = None if sample.grad_norm is None else float(sample.grad_norm)
        series.shape = sample.shape
        series.add(step, counts, moments, hist, sample.grid, grad)
        on_range = self._on_range()
        if counts[COUNT_FIELDS.index("outside")] and on_range is not None:
            # values fell outside the histogram grid: have the summarizer coarsen it for the next samples
            on_range(name, float(moments[MOMENT_FIELDS.index("min")]), float(moments[MOMENT_FIELDS.index("max")]))
        nonfinite = int(counts[COUNT_FIELDS.index("nonfinite")])
        if nonfinite and not any(e.get("layer") == name and e["kind"] == "nonfinite" for e in h.events):
            h.note_event("nonfinite", step, f"{nonfinite} NaN/inf values in {name} at step {step}", layer=name)
        saturated = getattr(sample, "saturated", None)
        if saturated is not None and name == (getattr(sample, "layer", "") or name):  # training series only
            # the latest sampled step's share of saturated units, for the view's warning (summaries.py)
            share = float(saturated)
            if math.isfinite(share):
                h.set_info(name, saturated=[step, share], saturation=sample.saturation)
        if sample.detail is not None:
            h.add_detail(name, step, sample.detail.cpu().numpy(), sample.detail_note,
                         getattr(sample, "detail_kind", ""))


def _read_scalars(observations: list[Observation]) -> list[dict[str, float]]:
    """Every observation's scalars as floats; tensors are read together, one host copy per device and dtype."""
    groups: dict[tuple, list[tuple[int, str, Any]]] = {}
    out: list[dict[str, float]] = []
    for i, obs in enumerate(observations):
        numbers: dict[str, float] = {}
        for name, value in obs.scalars.items():
            if hasattr(value, "reshape"):
                groups.setdefault((value.device, value.dtype, value.dim() == 0), []).append((i, name, value))
                numbers[name] = math.nan  # placeholder, keeps the order of the scalars
            else:
                numbers[name] = float(value)
        out.append(numbers)
    for (_, _, plain), items in groups.items():
        import torch  # only here: the transport itself needs no torch

        # step() has checked that each tensor holds one number; this is where the host waits for the device.
        # One stack and one host copy per batch; the float64 conversion happens on the host (exact).
        # (no autograd: a loss that requires grad would have the stack build a graph node over every step's loss)
        with torch.no_grad():
            tensors = [v for _, _, v in items] if plain else [v.reshape(()) for _, _, v in items]
            read = torch.stack(tensors).cpu().double().tolist()
        for (i, name, _), v in zip(items, read, strict=True):
            out[i][name] = v
    return out


# Streamers whose sender thread was started, stopped when the interpreter exits: a script that never closed its
# monitor otherwise left the daemon thread inside a torch operation while the interpreter tore down, and the process
# aborted ("terminate called without an active exception", 1 run in 8 under load, tests/unit/test_memory.py's
# subprocess). Stopping also sends what was still queued (to the view, and to a run directory).
_RUNNING: weakref.WeakSet[Streamer] = weakref.WeakSet()


@atexit.register
def _stop_streamers_at_exit() -> None:
    for streamer in list(_RUNNING):
        with contextlib.suppress(Exception):
            streamer.stop(timeout=5.0)
