from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from hiddenwidgets.pipeline.summaries import (
    COUNT_FIELDS,
    MOMENT_FIELDS,
    HistogramGrid,
    LayerSummarizer,
    detail_view,
    unit_axis,
)

C = {name: i for i, name in enumerate(COUNT_FIELDS)}
M = {name: i for i, name in enumerate(MOMENT_FIELDS)}


def test_grid_is_power_of_two_wide_aligned_and_covers_the_range():
    g = HistogramGrid.around(-1.2, 3.4, bins=64)
    assert math.log2(g.width) == round(math.log2(g.width))
    assert g.lo / g.width == round(g.lo / g.width)
    assert g.lo <= -1.2 and g.hi >= 3.4
    # a ReLU layer (min exactly 0) gets no headroom below zero: its histogram starts at 0
    assert HistogramGrid.around(0.0, 5.0).lo == 0.0


def test_bins_must_be_even():
    with pytest.raises(ValueError, match="even"):
        HistogramGrid.around(0, 1, bins=7)
    with pytest.raises(ValueError, match="even"):
        LayerSummarizer(bins=9)


def test_coarsened_grid_rebins_exactly_like_histogramming_on_the_coarse_grid():
    rng = np.random.default_rng(1)
    values = rng.normal(0.3, 0.4, 5000)
    fine = HistogramGrid.around(values.min(), values.max(), bins=32)
    coarse = fine.cover(-4.0, 7.5)
    assert coarse.width / fine.width == 2 ** round(math.log2(coarse.width / fine.width)) > 1
    assert coarse.lo <= -4.0 and coarse.hi >= 7.5
    fine_counts, _ = np.histogram(values, bins=fine.bins, range=(fine.lo, fine.hi))
    direct, _ = np.histogram(values, bins=coarse.bins, range=(coarse.lo, coarse.hi))
    np.testing.assert_array_equal(coarse.rebin(fine_counts, fine), direct)
    np.testing.assert_array_equal(coarse.rebin(np.stack([fine_counts, 2 * fine_counts]), fine)[1], 2 * direct)
    assert fine.cover(fine.lo, fine.hi) == fine
    with pytest.raises(ValueError, match="power-of-two coarsening"):
        fine.rebin(direct, coarse)


def test_summary_of_a_hand_computed_tensor():
    x = torch.tensor([[0.0, 1.0, -2.0, 4.0], [0.0, 3.0, float("nan"), float("inf")]])
    s = LayerSummarizer(nn.Linear(4, 4), bins=8).summarize(x)
    counts, moments = s.counts.tolist(), s.moments.tolist()
    assert counts[C["total"]] == 8 and counts[C["sampled"]] == 8
    assert counts[C["finite"]] == 6 and counts[C["nonfinite"]] == 2 and counts[C["zeros"]] == 2
    # finite values 0, 1, -2, 4, 0, 3: mean 1, sum of squared deviations 1 + 0 + 9 + 9 + 1 + 4 = 24
    assert moments[M["mean"]] == pytest.approx(1.0)
    assert moments[M["m2"]] == pytest.approx(24.0)
    assert moments[M["min"]] == -2.0 and moments[M["max"]] == 4.0
    assert s.hist.sum().item() == 6  # NaN and inf are counted, never binned
    g = s.grid
    expected, _ = np.histogram([0, 1, -2, 4, 0, 3], bins=g.bins, range=(g.lo, g.hi))
    np.testing.assert_array_equal(s.hist.numpy(), expected)
    # units of a dense layer are its last axis: unit 0 is never > 0 (0, 0), unit 2 neither (-2, nan)
    assert moments[M["dead_frac"]] == pytest.approx(2 / 4)


def test_values_outside_the_grid_are_counted_not_clamped():
    summarizer = LayerSummarizer(bins=8)
    summarizer.summarize(torch.tensor([0.0, 1.0]))
    g = summarizer.grid
    s = summarizer.summarize(torch.tensor([0.5, g.hi + 10, g.lo - 10]))
    assert s.counts[C["outside"]].item() == 2
    assert s.hist.sum().item() == 1


def test_dead_units_are_those_never_active_in_the_window():
    summarizer = LayerSummarizer(nn.Conv2d(1, 3, 1), dead_window=3)
    on = torch.zeros(2, 3, 2, 2)
    on[:, 0] = 1.0  # channel 0 active, channels 1 and 2 silent
    assert summarizer.summarize(on).moments[M["dead_frac"]].item() == pytest.approx(2 / 3)
    wake = on.clone()
    wake[1, 2, 1, 1] = 0.5  # one position of channel 2 fires once
    assert summarizer.summarize(wake).moments[M["dead_frac"]].item() == pytest.approx(1 / 3)
    assert summarizer.summarize(on).moments[M["dead_frac"]].item() == pytest.approx(1 / 3)
    assert summarizer.summarize(on).moments[M["dead_frac"]].item() == pytest.approx(1 / 3)
    # three silent samples later channel 2's one firing has left the window
    assert summarizer.summarize(on).moments[M["dead_frac"]].item() == pytest.approx(2 / 3)


def test_unit_axis_follows_the_layout():
    assert unit_axis(nn.Sequential(nn.Conv2d(1, 2, 1), nn.ReLU()), 4) == 1
    assert unit_axis(nn.Conv1d(1, 2, 1), 3) == 1
    assert unit_axis(nn.TransformerEncoderLayer(8, 2), 3) == 2
    assert unit_axis(nn.Linear(2, 2), 2) == 1


def test_large_tensors_are_strided_but_nan_counts_cover_everything():
    x = torch.ones(3_000_001)
    x[1] = float("nan")  # not on the stride
    s = LayerSummarizer(bins=8, max_elements=1_000_000).summarize(x)
    assert s.counts[C["sampled"]].item() <= 1_000_000
    assert s.counts[C["total"]].item() == 3_000_001
    assert s.counts[C["nonfinite"]].item() == 1


class SyncRecorder(TorchFunctionMode):
    """Records tensor -> host conversions (each one waits for the device on a GPU)."""

    HOST = frozenset({"item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__"})

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in self.HOST or (name == "to" and any(str(a) == "cpu" for a in args[1:])):
            self.calls.append(name)
        return func(*args, **(kwargs or {}))


def test_summaries_after_the_first_never_read_values_back_to_the_host():
    summarizer = LayerSummarizer(nn.Conv2d(3, 8, 3))
    x = torch.randn(4, 8, 16, 16)
    with SyncRecorder() as first:
        summarizer.summarize(x)
    assert first.calls == ["tolist"]  # the one read that places this layer's histogram grid
    with SyncRecorder() as rec:
        for _ in range(3):
            summarizer.summarize(torch.relu(x) * 3)
    assert rec.calls == []


def test_detail_views_are_bounded_and_say_what_they_kept():
    conv, note = detail_view(torch.randn(2, 128, 100, 100), max_elements=32768)
    assert conv.shape[0] == 64 and conv.numel() <= 32768
    assert "64 of 128 channels" in note and "pooled" in note
    dense, note = detail_view(torch.randn(500, 3000), max_elements=32768)
    assert dense.shape == (512, 64) and dense.numel() <= 32768
    assert note == "512 of 3000 units x 64 of 500 examples"
    seq, _ = detail_view(torch.randn(2, 300, 1000), max_elements=32768)
    assert seq.numel() <= 32768 and seq.shape[0] <= 128
    assert detail_view(torch.randn(7))[0].shape == (7, 1)


def test_integer_and_empty_outputs_are_summarised():
    s = LayerSummarizer(bins=4).summarize(torch.tensor([1, 2, 3]))
    assert s.moments[M["mean"]].item() == pytest.approx(2.0)
    empty = LayerSummarizer(bins=4).summarize(torch.zeros(0, 5))
    assert empty.counts.sum().item() == 0


def test_summaries_stay_on_the_activations_device():
    # "meta" tensors have a device but no data: every reduction must run there and nothing may be read back
    summarizer = LayerSummarizer(nn.Conv2d(3, 8, 3), bins=8)
    summarizer.grid = HistogramGrid.around(-1, 1, bins=8)  # placed by an earlier sample
    s = summarizer.summarize(torch.empty(4, 8, 10, 10, device="meta"))
    assert {t.device.type for t in (s.counts, s.moments, s.hist, s.detail)} == {"meta"}
    assert s.detail.numel() <= 32768


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_model_is_summarised_on_the_gpu_and_only_small_frames_move():
    import hiddenwidgets as hw

    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU()).cuda()
    monitor = hw.ActivationMonitor(model, ["1"], every=1)
    summarizer = monitor.recorder._summarizers["1"]
    seen = []
    original = summarizer.summarize

    def recording(tensor, **kw):
        seen.append(original(tensor, **kw))
        return seen[-1]

    summarizer.summarize = recording
    for _ in range(3):
        model(torch.randn(16, 1, 28, 28, device="cuda")).sum().backward()
        monitor.step()
    monitor.close()
    assert len(seen) == 3 and all(s.hist.is_cuda and s.counts.is_cuda and s.detail.is_cuda for s in seen)
    assert monitor.history.layer("1").samples == 3


def test_histogram_counts_values_like_numpy_at_the_edges_and_leaves_out_nonfinite_and_outside_values():
    from hiddenwidgets.pipeline.summaries import _histogram

    grid = HistogramGrid.around(-3, 3, bins=16)
    rng = np.random.default_rng(4)
    edges = grid.lo + grid.width * np.arange(grid.bins + 1)
    values = np.concatenate([rng.normal(size=5000), edges, edges + grid.width / 2,  # every edge and centre
                             [grid.lo - 1e-3, grid.hi + 1e-3, grid.hi + grid.width * 1.5, np.nan, np.inf, -np.inf]])
    expected, _ = np.histogram(values[np.isfinite(values)], bins=grid.bins, range=(grid.lo, grid.hi))
    x = torch.tensor(values, dtype=torch.float32)
    np.testing.assert_array_equal(_histogram(x, grid).numpy(), expected)
    assert _histogram(torch.empty(10, device="meta"), grid).device.type == "meta"  # no data read back
