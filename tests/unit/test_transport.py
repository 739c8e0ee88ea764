from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from hiddenwidgets.pipeline import transport
from hiddenwidgets.pipeline.summaries import COUNT_FIELDS, MOMENT_FIELDS, HistogramGrid
from hiddenwidgets.pipeline.transport import History, LayerSeries, MessageBudget, ScalarSeries, Streamer, decode, encode

from .. import js_fixtures


def test_codec_round_trips_float32_and_int32_in_one_aligned_buffer():
    arrays = {"a": np.array([1.5, np.nan, -np.inf], dtype=np.float32), "b": np.arange(6, dtype=np.int32).reshape(2, 3)}
    index, data = encode(arrays)
    assert all(offset % 4 == 0 for _, offset, _ in index.values())
    out = decode(index, data)
    np.testing.assert_array_equal(out["a"], arrays["a"])
    np.testing.assert_array_equal(out["b"], arrays["b"])
    assert index["b"] == ["int32", 12, [2, 3]]


def test_codec_pads_uint8_arrays_so_the_next_array_stays_aligned():
    arrays = {"img": np.arange(5, dtype=np.uint8), "b": np.array([7, -7], dtype=np.int32)}
    index, data = encode(arrays)
    assert index["b"][1] == 8 and len(data) == 16  # 5 bytes + 3 padding, then 8 bytes
    out = decode(index, data)
    np.testing.assert_array_equal(out["img"], arrays["img"])
    np.testing.assert_array_equal(out["b"], arrays["b"])


def test_codec_refuses_anything_but_float32_int32_and_uint8():
    with pytest.raises(TypeError, match="only float32, int32 and uint8"):
        encode({"x": np.zeros(3)})


def test_scalar_series_stays_bounded_and_loses_nothing():
    rng = np.random.default_rng(0)
    values = rng.normal(size=5000)
    s = ScalarSeries("loss", capacity=64)
    for step, v in enumerate(values, start=1):
        s.add(step, float(v))
    rows = s.rows[: s.count]
    assert s.count <= 64 and s.stride == 128  # 5000 samples: 64 -> 32 points of 2, ... 128 per point
    assert rows[:, 2].sum() == 5000  # every sample is in exactly one point
    assert np.average(rows[:, 3], weights=rows[:, 2]) == pytest.approx(values.mean())
    assert rows[:, 4].min() == values.min() and rows[:, 5].max() == values.max()
    assert rows[0, 0] == 1 and rows[-1, 1] == 5000
    np.testing.assert_array_equal(rows[1:, 0], rows[:-1, 1] + 1)  # contiguous step ranges


def layer_sample(values: np.ndarray, grid: HistogramGrid, dead: float = 0.0):
    finite = values[np.isfinite(values)]
    counts = np.array([values.size, values.size, finite.size, (finite == 0).sum(), values.size - finite.size,
                       ((finite < grid.lo) | (finite > grid.hi)).sum()])
    mean = finite.mean() if finite.size else 0.0
    moments = np.array([mean, ((finite - mean) ** 2).sum(), finite.min(), finite.max(), dead])
    hist, _ = np.histogram(finite, bins=grid.bins, range=(grid.lo, grid.hi))
    return counts, moments, hist.astype(float)


def test_merged_layer_points_pool_moments_exactly():
    rng = np.random.default_rng(2)
    grid = HistogramGrid.around(-3, 3, bins=16)
    s = LayerSeries("fc", capacity=4, bins=16)
    batches = [rng.normal(i * 0.1, 1 + i * 0.05, size=100) for i in range(16)]
    for step, b in enumerate(batches, start=1):
        s.add(step, *layer_sample(b, grid, dead=step / 100), grid=grid, grad_norm=float(step))
    assert s.count == 4 and s.stride == 4
    stats = s.stats()
    for k in range(4):
        block = np.concatenate(batches[4 * k : 4 * k + 4])
        assert stats["mean"][k] == pytest.approx(block.mean())
        assert stats["std"][k] == pytest.approx(block.std())
        assert stats["min"][k] == block.min() and stats["max"][k] == block.max()
        assert stats["grad_norm"][k] == pytest.approx(np.mean(range(4 * k + 1, 4 * k + 5)))
        assert stats["dead_frac"][k] == pytest.approx(np.mean(range(4 * k + 1, 4 * k + 5)) / 100)
        hist, _ = np.histogram(block, bins=16, range=(grid.lo, grid.hi))
        np.testing.assert_array_equal(s.hist[k], hist)


def test_layer_series_rebins_history_when_the_grid_coarsens():
    s = LayerSeries("conv", capacity=8, bins=8)
    g1 = HistogramGrid.around(0, 1, bins=8)
    a = np.linspace(0, 0.99, 50)
    s.add(1, *layer_sample(a, g1), grid=g1)
    g2 = g1.cover(-2, 6)
    b = np.linspace(-2, 6, 50)
    s.add(2, *layer_sample(b, g2), grid=g2)
    assert s.grid == g2 and s.rev == 1
    want, _ = np.histogram(a, bins=8, range=(g2.lo, g2.hi))
    np.testing.assert_array_equal(s.hist[0], want)
    # a sample still on the old, finer grid (in flight when the grid changed) is rebinned on arrival
    s.add(3, *layer_sample(a, g1), grid=g1)
    np.testing.assert_array_equal(s.hist[2], want)


class Mirror:
    """The browser's rule (js/lib/store.js) restated as a test oracle: points from i0 replace the tail."""

    def __init__(self):
        self.series = {}

    def apply(self, header, data):
        arrays = decode(header["index"], data)
        for head in header["series"]:
            key = f"{head['kind']}:{head['name']}"
            old = self.series.get(key, {"rev": head["rev"], "parts": {}})
            assert head["i0"] <= len(next(iter(old["parts"].values()), [])) or head["i0"] == 0
            parts = {}
            for part, akey in head["arrays"].items():
                prev = old["parts"].get(part)
                keep = prev[: head["i0"]] if prev is not None and head["rev"] == old["rev"] else arrays[akey][:0]
                parts[part] = np.concatenate([keep, arrays[akey]])
            self.series[key] = {"rev": head["rev"], "parts": parts}


def test_delta_frames_rebuild_the_history_exactly():
    rng = np.random.default_rng(3)
    h = History(capacity=8, bins=8, layers=["a"])
    grid = HistogramGrid.around(-1, 1, bins=8)
    mirror = Mirror()
    sizes = []
    for step in range(1, 60):
        h.scalar("loss").add(step, float(rng.normal()))
        h.layer("a").add(step, *layer_sample(rng.normal(size=20), grid), grid=grid)
        if step % 5 == 0:
            header, data = h.build(full=False)
            sizes.append(sum(len(head["arrays"]) for head in header["series"]))
            mirror.apply(header, data)
    header, data = h.build(full=False)
    mirror.apply(header, data)
    for key, s in h.series.items():
        for part, arr in s.payload(0).items():
            np.testing.assert_array_equal(mirror.series[key]["parts"][part], arr, err_msg=f"{key}/{part}")
    # nothing changed: the next frame carries no series
    assert h.build(full=False)[0]["series"] == []


def test_frames_stay_under_the_byte_budget_and_defer_the_rest():
    h = History(capacity=64, bins=64, layers=[f"l{i}" for i in range(6)])
    grid = HistogramGrid.around(-1, 1, bins=64)
    for step in range(1, 65):
        for name in h.layers:
            h.layer(name).add(step, *layer_sample(np.linspace(-1, 1, 10), grid), grid=grid)
    one_layer = sum(a.nbytes for a in h.layer("l0").payload(0).values())
    header, data = h.build(full=False, max_bytes=2 * one_layer)
    assert len(data) <= 2 * one_layer and len(header["series"]) == 2
    header, data = h.build(full=False, max_bytes=2 * one_layer)
    assert [s["name"] for s in header["series"]] == ["l2", "l3"]


def test_js_fixture_is_up_to_date():
    assert js_fixtures.FIXTURE.read_text() == js_fixtures.render(), "run: python tests/js_fixtures.py"


def test_message_budget_never_exceeds_rate_plus_burst(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(transport.time, "monotonic", lambda: now[0])
    budget = MessageBudget(rate=100, burst=10)
    taken = 0
    for _ in range(3000):  # 3 s of attempts every millisecond
        now[0] += 0.001
        taken += budget.try_take()
    assert taken <= 10 + 100 * 3
    assert taken >= 100 * 3 - 1


def test_streamer_sends_at_most_fps_frames_per_second_however_fast_steps_come():
    h = History(capacity=512, bins=8, layers=[])
    sent = []
    streamer = Streamer(h, lambda head, data: sent.append(time.monotonic()), lambda head, data: None, fps=10,
                        budget=MessageBudget(rate=1000, burst=1000))
    streamer.start()
    t0 = time.monotonic()
    step = 0
    while time.monotonic() - t0 < 1.0:
        step += 1
        streamer.put(transport.Observation(step, None, {"loss": 1.0 / step}, {}))
        if step % 50 == 0:
            time.sleep(0.001)  # ~50k steps/s: far faster than any training loop
    streamer.stop()
    live = [t for t in sent if t - t0 <= 1.0]
    # at most fps frames per second (10, plus the first and a final one); a loaded machine can only send fewer,
    # so the lower bound is that frames were sent at all, not a count that depends on the scheduler
    assert len(sent) >= 1 and len(live) <= 12
    assert h.scalar("loss").samples == step  # every step reached the history


def test_a_cpu_share_stretches_the_frame_period_to_what_a_frame_costs():
    """A frame that costs 10 ms of the sender's CPU, with a 5 % share: one frame per 0.2 s, not fps=60 of them
    (60 × 10 ms would take 60 % of a core); without a share the same frames come as fast as they can."""

    def burn(head, data):  # a frame whose sending costs 10 ms of this thread's CPU time
        end = time.thread_time() + 0.01
        while time.thread_time() < end:
            pass

    counts = {}
    for share in (0.05, None):
        h = History(capacity=512, bins=8, layers=[])
        streamer = Streamer(h, burn, lambda head, data: None, fps=60, budget=MessageBudget(rate=1000, burst=1000),
                            cpu_share=share)
        streamer.start()
        t0 = time.monotonic()
        step = 0
        while time.monotonic() - t0 < 1.5:
            step += 1
            streamer.put(transport.Observation(step, None, {"loss": 1.0 / step}, {}))
            time.sleep(0.002)
        sender_cpu, frames = streamer.cpu_seconds, streamer.frames_sent
        streamer.stop()
        assert h.scalar("loss").samples == step  # fewer frames, never fewer steps
        counts[share] = frames
        if share is not None:
            # ~8 frames in 1.5 s (the first before the cost is known); at most the share of the wall time, with
            # two frames' slack
            assert 3 <= frames <= 10, frames
            assert sender_cpu <= 0.05 * 1.5 + 0.02, sender_cpu
            assert streamer.frame_cpu >= 0.008
    assert counts[None] >= 2 * counts[0.05], counts  # ~50 unbounded (fps 60, 10 ms each); 2x at a loaded machine


def test_a_view_asking_for_frames_is_answered_at_once_not_at_the_next_frame():
    """resync (a new view or a gap), select (a click on a layer) and wake (a run reader's news) are rare and a user
    is waiting: they do not wait for a frame period stretched to 1 s by costly frames."""
    h = History(capacity=512, bins=8, layers=[])
    sent = []
    streamer = Streamer(h, lambda head, data: sent.append(head), lambda head, data: None, fps=1, cpu_share=0.01,
                        budget=MessageBudget(rate=1000, burst=1000))
    streamer.MAX_PERIOD = 60.0  # frames "cost" 1 s at a 1 % share: one a minute, far beyond any scheduling delay
    streamer.frame_cpu = 1.0
    streamer.start()
    streamer.put(transport.Observation(1, None, {"loss": 1.0}, {}))
    time.sleep(0.2)
    for ask in (streamer.resync, lambda: streamer.select(["x"]), streamer.wake):
        before = len(sent)
        streamer.put(transport.Observation(len(sent) + 2, None, {"loss": 1.0}, {}))
        t0 = time.monotonic()
        ask()
        while len(sent) == before and time.monotonic() - t0 < 30.0:
            time.sleep(0.005)
        assert len(sent) > before, ask  # within 30 s, where the next frame was due in a minute
    streamer.stop()


def test_a_full_inbox_is_drained_at_once_not_at_the_next_frame():
    h = History(capacity=512, bins=8, layers=[])
    streamer = Streamer(h, lambda head, data: None, lambda head, data: None, fps=1, cpu_share=0.01)
    streamer.MAX_PERIOD = 60.0  # frames "cost" 1 s at a 1 % share: one a minute
    streamer.frame_cpu = 1.0
    streamer.start()
    time.sleep(0.1)  # the thread's first tick is behind it: the next frame is a minute away
    for step in range(1, 1001):
        streamer.put(transport.Observation(step, None, {"loss": 1.0}, {}))
    streamer.wait_backlog(1, timeout=30.0)  # what a monitor does past MAX_BACKLOG
    assert len(streamer.inbox) == 0  # drained within 30 s, not at the next frame
    streamer.stop()
    assert h.scalar("loss").samples == 1000


def test_flush_publishes_a_snapshot_of_everything():
    h = History(capacity=16, bins=8, layers=[])
    published = []
    streamer = Streamer(h, lambda head, data: None, lambda head, data: published.append((head, data)))
    streamer.start()
    for step in range(1, 40):
        streamer.put(transport.Observation(step, 0, {"acc": step / 40}, {}))
    assert streamer.flush(10)
    head, data = published[-1]
    rows = decode(head["index"], data)
    assert head["step"] == 39 and rows["scalar:acc/steps"][-1, 1] == 39
    assert streamer.flush(10) and len(published) == 1  # nothing new: no second snapshot
    streamer.stop()


def test_a_failing_sender_is_reported_and_the_thread_keeps_going():
    h = History(capacity=16, bins=8, layers=[])
    errors = []
    calls = []

    def send(head, data):
        calls.append(1)
        if len(calls) == 1:
            raise OSError("socket closed")

    streamer = Streamer(h, send, lambda *a: None, fps=50, on_error=errors.append)
    streamer.start()
    streamer.put(transport.Observation(1, None, {"x": 1.0}, {}))
    time.sleep(0.2)
    streamer.put(transport.Observation(2, None, {"x": 2.0}, {}))
    deadline = time.monotonic() + 5
    while len(calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    streamer.stop()
    assert isinstance(errors[0], OSError) and len(calls) >= 2


def test_forget_reply_route_restores_the_frontends_subshell_with_real_ipykernel():
    comm_mod = pytest.importorskip("ipykernel.comm.comm")
    comm = comm_mod.BaseComm(target_name="jupyter.widget", primary=False, comm_id="x")
    comm._reply_subshell_id = None  # what a publish during a main-shell cell records
    assert comm._reply_subshell_for({}, "subshell-1") is None  # clicks would wait for the cell
    transport.forget_reply_route(comm)
    assert comm._reply_subshell_for({}, "subshell-1") == "subshell-1"
    transport.forget_reply_route(comm)  # idempotent
    transport.forget_reply_route(SimpleNamespace())  # other kernels: no-op
    transport.forget_reply_route(None)


def test_counts_and_moments_layout_matches_the_series_columns():
    assert LayerSeries.columns[3 : 3 + len(COUNT_FIELDS)] == COUNT_FIELDS
    assert LayerSeries.columns[3 + len(COUNT_FIELDS) : 3 + len(COUNT_FIELDS) + len(MOMENT_FIELDS)] == MOMENT_FIELDS
    assert threading.current_thread() is threading.main_thread()


def test_scalars_added_in_batches_equal_scalars_added_one_by_one():
    # the sender thread adds each drain's scalars in one batch; the points must be those of one add() per step
    rng = np.random.default_rng(3)
    for capacity, sizes in ((4, [1, 2, 3, 50, 1, 7]), (8, [300, 5, 900]), (64, [1000, 1, 1, 2500])):
        values = rng.normal(size=sum(sizes))
        values[rng.random(len(values)) < 0.01] = np.nan  # NaN stays in the mean, min/max skip it, as with add()
        one, batched = ScalarSeries("loss", capacity), ScalarSeries("loss", capacity)
        for step, v in enumerate(values, start=1):
            one.add(step, float(v))
        start = 0
        for size in sizes:
            batched.add_many(np.arange(start + 1, start + size + 1), values[start : start + size])
            start += size
        assert (batched.count, batched.stride, batched.open, batched.samples) == (
            one.count, one.stride, one.open, one.samples)
        np.testing.assert_allclose(batched.rows, one.rows, rtol=1e-12, equal_nan=True)
