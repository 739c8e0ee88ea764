"""Torch-side reductions of one layer's activations: histograms, moments, sparsity, dead units, NaN/inf.

Everything here runs where the activation lives (CPU or GPU) and returns small tensors on that device; nothing
calls ``.item()``, ``.cpu()`` or ``.tolist()``, so a training step that is summarised never waits for the device.
The one exception is :meth:`LayerSummarizer.summarize` on a layer's *first* sample, which reads the value range
once to place the histogram grid (one host sync per layer per run).

No widget code lives here: :mod:`hiddenwidgets.transport` turns these tensors into frames.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["HistogramGrid", "LayerSample", "LayerSummarizer", "detail_view", "unit_axis"]

# Order of the entries of ``LayerSample.counts`` (int64) and ``LayerSample.moments`` (float32).
COUNT_FIELDS = ("total", "sampled", "finite", "zeros", "nonfinite", "outside")
MOMENT_FIELDS = ("mean", "m2", "min", "max", "dead_frac")


@dataclass(frozen=True)
class HistogramGrid:
    """Equal-width bins ``lo + width * [0, 1, ..., bins]`` whose width is a power of two.

    Grids of one layer only ever *coarsen* (:meth:`cover`): the new width is the old one times a power of two
    and the new edges are a subset of the old ones, so every earlier histogram is re-binned exactly by summing
    whole bins (:meth:`rebin`). That is what keeps histograms comparable over a whole run.
    """

    lo: float
    width: float
    bins: int

    @property
    def hi(self) -> float:
        return self.lo + self.width * self.bins

    @classmethod
    def around(cls, vmin: float, vmax: float, bins: int = 64, headroom: float = 0.25) -> HistogramGrid:
        """The finest grid holding ``[vmin, vmax]`` plus ``headroom`` of the span on each open side.

        A side that is exactly 0 (ReLU outputs, say) gets no headroom, so those histograms start at 0.
        """
        if bins < 2 or bins % 2:
            raise ValueError(f"bins must be an even number >= 2, got {bins}")
        if not (math.isfinite(vmin) and math.isfinite(vmax)):
            vmin, vmax = 0.0, 1.0
        span = vmax - vmin
        if span <= 0:
            span = max(abs(vmin), 1e-6)
        lo = vmin if vmin == 0 else vmin - headroom * span
        hi = vmax if vmax == 0 else vmax + headroom * span
        if hi <= lo:  # all values equal 0 (a silent ReLU layer, a zero-initialised branch)
            hi = lo + span
        width = 2.0 ** math.ceil(math.log2((hi - lo) / bins))
        while True:
            start = math.floor(lo / width) * width
            if start + width * bins >= hi:
                return cls(start, width, bins)
            width *= 2

    def cover(self, vmin: float, vmax: float) -> HistogramGrid:
        """This grid, coarsened by powers of two until it holds ``[vmin, vmax]`` (itself if it already does)."""
        if not (math.isfinite(vmin) and math.isfinite(vmax)):
            return self
        lo, width = self.lo, self.width
        vmin, vmax = min(vmin, lo), max(vmax, self.hi)
        while not (lo <= vmin and lo + width * self.bins >= vmax):
            width *= 2
            lo = math.floor(min(lo, vmin) / width) * width
        return HistogramGrid(lo, width, self.bins)

    def rebin(self, counts, finer: HistogramGrid):
        """Sum the bins of ``counts`` (last axis, on grid ``finer``) into this coarser grid. Exact."""
        import numpy as np

        counts = np.asarray(counts)
        if finer == self:
            return counts
        ratio = self.width / finer.width
        if ratio < 1 or ratio != 2 ** round(math.log2(ratio)):
            raise ValueError(f"cannot rebin grid {finer} onto {self}: the target must be a power-of-two coarsening")
        centres = finer.lo + finer.width * (np.arange(finer.bins) + 0.5)
        target = np.floor((centres - self.lo) / self.width).astype(np.int64)
        if target.min() < 0 or target.max() >= self.bins:
            raise ValueError(f"grid {finer} does not lie inside {self}")
        merge = np.zeros((finer.bins, self.bins), dtype=counts.dtype)
        merge[np.arange(finer.bins), target] = 1
        return counts @ merge

def unit_axis(module: torch.nn.Module | None, ndim: int) -> int:
    """The axis that indexes units: channels (dim 1) for 4-D/5-D outputs (PyTorch's NC... layout) and for
    3-D outputs of modules containing a 1-D convolution; otherwise the last axis (features)."""
    if ndim >= 4:
        return 1
    if ndim == 3 and module is not None:
        conv1d = (torch.nn.Conv1d, torch.nn.ConvTranspose1d, torch.nn.BatchNorm1d, torch.nn.MaxPool1d,
                  torch.nn.AvgPool1d)
        if any(isinstance(m, conv1d) for m in module.modules()):
            return 1
    return max(ndim - 1, 0)


@dataclass
class LayerSample:
    """Summary of one layer on one sampled step; every tensor is small and on the activation's device."""

    counts: torch.Tensor  # int64[len(COUNT_FIELDS)]
    moments: torch.Tensor  # float32[len(MOMENT_FIELDS)]; mean and m2 over finite values
    hist: torch.Tensor  # float32[bins], counts of the finite values inside the grid
    grid: HistogramGrid
    shape: tuple[int, ...]
    detail: torch.Tensor | None = None  # downsampled current activations (see detail_view)
    detail_note: str = ""
    grad_norm: torch.Tensor | None = None  # L2 norm of d(loss)/d(output), filled in during backward


class LayerSummarizer:
    """Summarises one layer's output tensor. Holds the layer's histogram grid and its dead-unit window.

    Parameters
    ----------
    bins : even number of histogram bins (default 64).
    max_elements : histograms, moments, zeros and NaN/inf counts use at most this many elements, a fixed stride
        through the flattened tensor when it is larger (default 2**18). A NaN/inf anywhere in the tensor is always
        detected (the count is then at least 1); dead units always look at the whole tensor.
    dead_window : a unit is *dead* when it was never > 0 in the last ``dead_window`` sampled batches
        (*The Lazy Neuron Phenomenon*, Li et al. 2023 measure the same activation sparsity after ReLU).
    unit_dim : axis of units; ``None`` picks channels for conv-like modules and the last axis otherwise.
    """

    def __init__(self, module: torch.nn.Module | None = None, *, bins: int = 64, max_elements: int = 2**18,
                 dead_window: int = 32, unit_dim: int | None = None, detail_elements: int = 32768):
        if bins < 2 or bins % 2:
            raise ValueError(f"bins must be an even number >= 2, got {bins}")
        self.module = module
        self.bins = bins
        self.max_elements = int(max_elements)
        self.unit_dim = unit_dim
        self.detail_elements = detail_elements
        self.grid: HistogramGrid | None = None
        self._active: deque[torch.Tensor] = deque(maxlen=dead_window)

    def summarize(self, output: torch.Tensor, *, detail: bool = True) -> LayerSample:
        with torch.no_grad():
            x = output.detach()
            if not x.is_floating_point():
                x = x.float()
            flat = x.reshape(-1)
            total = flat.numel()
            if total == 0:
                return self._empty(x)
            sample = flat
            if total > self.max_elements:
                stride = -(-total // self.max_elements)
                sample = flat[::stride]
            finite = torch.isfinite(sample)
            n = finite.sum()
            nonfinite = sample.numel() - n
            if sample is not flat:
                # NaN/inf anywhere make the float64 sum of the whole tensor non-finite (one cheap pass), so
                # the count is at least 1 even when the stride stepped over them
                wide = torch.float32 if flat.device.type == "mps" else torch.float64  # MPS has no float64
                anywhere = (~torch.isfinite(flat.sum(dtype=wide))).to(nonfinite.dtype)
                nonfinite = torch.maximum(nonfinite, anywhere)
            clean = torch.where(finite, sample, torch.zeros((), dtype=sample.dtype, device=sample.device))
            nf = n.clamp(min=1).to(torch.float32)
            mean = clean.sum(dtype=torch.float32) / nf
            m2 = torch.where(finite, (sample.float() - mean) ** 2, 0.0).sum()
            big = torch.finfo(torch.float32).max
            vmin = torch.where(finite, sample, big).min().float()
            vmax = torch.where(finite, sample, -big).max().float()
            zeros = (sample == 0).sum()
            if self.grid is None:  # the one host sync of this layer: place the grid around the first values
                count, lo, hi = torch.stack([n.float(), vmin, vmax]).tolist()
                self.grid = HistogramGrid.around(lo, hi, self.bins) if count else HistogramGrid.around(0, 1, self.bins)
            grid = self.grid
            outside = (finite & ((sample < grid.lo) | (sample > grid.hi))).sum()
            # histc ignores NaN and values outside [lo, hi]; those are counted in `outside`, never clamped
            # into the edge bins, so a histogram never shows mass where there was none
            hist = torch.histc(torch.where(finite, sample, float("nan")).float(), bins=grid.bins, min=grid.lo,
                               max=grid.hi)
            dead = self._dead_fraction(x)
            # torch.full fills on the device; torch.tensor([...], device=...) would copy from the host and wait
            sizes = [torch.full((), v, dtype=torch.int64, device=n.device) for v in (total, sample.numel())]
            counts = torch.stack([*sizes, n, zeros, nonfinite, outside]).to(torch.int64)
            moments = torch.stack([mean, m2, vmin, vmax, dead]).to(torch.float32)
            sample_out = LayerSample(counts, moments, hist, grid, tuple(x.shape))
            if detail:
                sample_out.detail, sample_out.detail_note = detail_view(x, self.module, self.detail_elements)
            return sample_out

    def _empty(self, x: torch.Tensor) -> LayerSample:
        grid = self.grid or HistogramGrid.around(0, 1, self.bins)
        dev = x.device
        return LayerSample(torch.zeros(len(COUNT_FIELDS), dtype=torch.int64, device=dev),
                           torch.zeros(len(MOMENT_FIELDS), device=dev), torch.zeros(grid.bins, device=dev),
                           grid, tuple(x.shape))

    def _dead_fraction(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 0 or x.numel() == 0:
            return torch.zeros((), device=x.device)
        axis = self.unit_dim if self.unit_dim is not None else unit_axis(self.module, x.ndim)
        others = tuple(d for d in range(x.ndim) if d != axis % x.ndim)
        active = (x.amax(dim=others) if others else x) > 0  # a unit is active if it exceeds 0 anywhere
        if self._active and self._active[-1].shape != active.shape:
            self._active.clear()  # the layer changed width (a different input shape): start a new window
        self._active.append(active)
        ever = torch.stack(tuple(self._active)).any(dim=0)
        return 1.0 - ever.float().mean()


def detail_view(x: torch.Tensor, module: torch.nn.Module | None = None,
                max_elements: int = 32768) -> tuple[torch.Tensor, str]:
    """A small float32 picture of the current activations, at most ``max_elements`` values.

    - conv-like ``(N, C, H, W)``: the first example's feature maps, ``[C', h, w]``, with at most 64 channels and
      each map average-pooled so that ``C'*h*w <= max_elements``;
    - dense ``(N, F)``: a units x samples heatmap ``[F', N']`` of the first 64 examples and first units that fit;
    - anything else ``(N, A, ...)``: the first example as a ``[A', B']`` heatmap (remaining axes flattened),
      strided down to fit.
    Returns a copy (on the input's device; never a view, so later in-place ops on the activation and the
    activation's own memory are not kept) and a human note saying what was kept.
    """
    with torch.no_grad():
        x = x.detach().float()
        shape = "x".join(str(s) for s in x.shape)
        if x.ndim == 4:
            c = min(x.shape[1], 64)
            h, w = x.shape[2], x.shape[3]
            side_budget = max_elements // c
            scale = min(1.0, math.sqrt(side_budget / max(h * w, 1)))
            th, tw = max(1, int(h * scale)), max(1, int(w * scale))
            maps = x[0, :c]
            if (th, tw) != (h, w):
                maps = F.adaptive_avg_pool2d(maps.unsqueeze(0), (th, tw))[0]
            note = f"example 0 of {x.shape[0]}: {c} of {x.shape[1]} channels"
            note += f", {h}x{w} pooled to {th}x{tw}" if (th, tw) != (h, w) else f", {h}x{w}"
            return maps.clone(), note
        if x.ndim <= 1:
            v = x.reshape(-1)[:max_elements]
            return v.reshape(-1, 1).clone(), f"{v.numel()} of {x.numel()} values"
        if x.ndim == 2:
            n = min(x.shape[0], 64)
            f = min(x.shape[1], max(1, max_elements // n))
            return x[:n, :f].t().clone(), f"{f} of {x.shape[1]} units x {n} of {x.shape[0]} examples"
        m = x[0].reshape(x.shape[1], -1)
        rs = -(-m.shape[0] // 128) if m.shape[0] > 128 else 1
        m = m[::rs]
        cs = -(-m.shape[1] * m.shape[0] // max_elements) if m.numel() > max_elements else 1
        m = m[:, ::cs]
        return m.clone(), f"example 0 of shape {shape} as {m.shape[0]}x{m.shape[1]} (strided)"
