"""Torch-side reductions of one layer's activations: histograms, moments, sparsity, dead and saturated units,
NaN/inf.

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
from torch import nn

__all__ = ["SATURATED_SHARE", "SATURATION_MARGIN", "HistogramGrid", "LayerSample", "LayerSummarizer",
           "decide_units", "detail_view", "output_bounds", "unit_axis", "units_of"]

# Order of the entries of ``LayerSample.counts`` (int64) and ``LayerSample.moments`` (float32).
COUNT_FIELDS = ("total", "sampled", "finite", "zeros", "nonfinite", "outside")
MOMENT_FIELDS = ("mean", "m2", "min", "max", "dead_frac")

# Saturated units (Glorot & Bengio 2010, "Understanding the difficulty of training deep feedforward neural
# networks", AISTATS, follow sigmoid and tanh units stuck at their bounds, where the gradient vanishes): a value is
# *at a bound* when it lies within SATURATION_MARGIN of the output range from the lower or the upper bound
# (tanh: |a| >= 0.98, where tanh' = 0.04; sigmoid: a <= 0.01 or a >= 0.99, where sigmoid' <= 0.0099, 4% of its
# peak); a unit is *saturated* on a sampled batch when at least SATURATED_SHARE of its values there are at a bound.
SATURATION_MARGIN = 0.01
SATURATED_SHARE = 0.9


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

@dataclass
class LayerSample:
    """Summary of one layer on one sampled step; every tensor is small and on the activation's device.

    A layer called several times in the step (weight sharing, a reused module) has its calls merged into one
    sample (:meth:`LayerSummarizer.merge`): counts and histograms add, moments pool, ``calls`` counts them.
    """

    counts: torch.Tensor  # int64[len(COUNT_FIELDS)]
    moments: torch.Tensor  # float32[len(MOMENT_FIELDS)]; mean and m2 over finite values
    hist: torch.Tensor  # float32[bins], counts of the finite values inside the grid
    grid: HistogramGrid
    shape: tuple[int, ...]
    detail: torch.Tensor | None = None  # downsampled current activations (see detail_view)
    detail_note: str = ""
    detail_kind: str = ""  # "maps", "units x examples", "tokens x features", "channels x positions", "values"
    grad_sq: torch.Tensor | None = None  # squared L2 norm of d(loss)/d(output), added to during backward
    active: torch.Tensor | None = None  # per unit: exceeded 0 anywhere in this sample (bool)
    calls: int = 1
    units: str = ""  # which axis the units are, and why
    layer: str = ""  # the monitored layer this sample belongs to (its series may be a validation or call series)
    near: torch.Tensor | None = None  # per unit: how many of its values were at a bound (layers with bounds only)
    near_of: int = 0  # values looked at per unit for ``near``
    saturated: torch.Tensor | None = None  # fraction of units saturated (float32 scalar; set by finish())
    saturation: str = ""  # the bounds and the rule behind ``saturated``, in words

    @property
    def grad_norm(self) -> torch.Tensor | None:
        return None if self.grad_sq is None else self.grad_sq.sqrt()

    def add_gradient(self, grad: torch.Tensor) -> None:
        """Add one call's d(loss)/d(output): the norm over all calls is that of the gradients joined together."""
        sq = torch.linalg.vector_norm(grad.detach(), dtype=torch.float32).square()
        self.grad_sq = sq if self.grad_sq is None else self.grad_sq + sq


class LayerSummarizer:
    """Summarises one layer's output tensor. Holds the layer's histogram grid and its dead-unit window.

    Parameters
    ----------
    bins : even number of histogram bins (default 64).
    max_elements : histograms, moments, zeros and NaN/inf counts use at most this many elements, a fixed stride
        through the tensor (in memory order) when it is larger (default 2**18). A NaN/inf anywhere in the tensor is
        always detected (the count is then at least 1); dead units always look at the whole tensor. Nothing the
        size of the activation is allocated (no copies, no float64 temporaries).
    dead_window : a unit is *dead* when it was never > 0 in the last ``dead_window`` sampled batches
        (*The Lazy Neuron Phenomenon*, Li et al. 2023 measure the same activation sparsity after ReLU).
    units : which axis indexes units (see :func:`decide_units`); ``None`` decides from the layer.
    model : the whole model, to decide the layout of activations and dropouts from their neighbours.
    saturation : whether to count saturated units where the module's type states its output range
        (:func:`output_bounds`; False when the summarised tensor is not the module's plain output, e.g. picked by
        a selector). Per unit it counts the values at a bound (see ``SATURATION_MARGIN``): every value when the
        output has at most ``max_elements`` values, else those of every ``s``-th example (axis 0), ``s`` chosen so
        that about ``max_elements`` values are looked at.
    """

    def __init__(self, module: nn.Module | None = None, *, bins: int = 64, max_elements: int = 2**18,
                 dead_window: int = 32, units: int | str | None = None, detail_elements: int = 32768,
                 model: nn.Module | None = None, unit_dim: int | None = None, saturation: bool = True):
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2 or bins % 2:
            raise ValueError(f"bins must be an even number >= 2, got {bins!r}")
        for name, value in (("max_elements", max_elements), ("dead_window", dead_window),
                            ("detail_elements", detail_elements)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        units = units if units is not None else unit_dim
        if units is not None and (isinstance(units, bool) or not (isinstance(units, int) or units in UNIT_LAYOUTS)):
            raise ValueError(f"units must be 'channels_first', 'channels_last' or an axis index; got {units!r}")
        self.module = module
        self.model = model
        self.bins = bins
        self.max_elements = int(max_elements)
        self.units = units
        self.detail_elements = detail_elements
        self.grid: HistogramGrid | None = None
        self._active: deque[torch.Tensor] = deque(maxlen=dead_window)
        self._axis_for: dict[tuple, tuple[int, str]] = {}
        self.bounds = output_bounds(module) if saturation and module is not None else None
        self.saturation_rule = ""
        if self.bounds is not None:
            lo, hi, what = self.bounds
            self.saturation_rule = (f"{what}: output in [{lo:g}, {hi:g}]; a value is at a bound when it lies within "
                                    f"{SATURATION_MARGIN * (hi - lo):g} ({SATURATION_MARGIN:.0%} of the range) of "
                                    f"{lo:g} or {hi:g}; a unit is saturated when {SATURATED_SHARE:.0%} or more of its "
                                    "values in the sampled batch are at a bound")

    def axis(self, shape: tuple[int, ...], innermost: int | None = None) -> tuple[int, str]:
        """``(unit axis, note)`` for an output of this shape and memory layout (decided once per layout)."""
        key = (shape, innermost)
        got = self._axis_for.get(key)
        if got is None:
            got = self._axis_for[key] = decide_units(self.module, shape, model=self.model, units=self.units,
                                                     innermost=innermost)
        return got

    def summarize(self, output: torch.Tensor, *, detail: bool = True, finish: bool = True) -> LayerSample:
        """Summary of one call's output. ``finish=False`` leaves the dead-unit fraction to :meth:`finish` (after
        merging several calls of one step with :meth:`merge`)."""
        with torch.no_grad():
            x = output.detach()
            if x.is_complex():
                raise TypeError("complex outputs are not summarised (their imaginary part would be lost); watch the "
                                "magnitude or the real part with a selector, e.g. layers={'name': lambda out: "
                                "out.abs()}")
            total = x.numel()
            if total == 0:
                return self._empty(x)
            axis, units = self.axis(tuple(x.shape), _innermost(x))
            sample = _strided_sample(x, self.max_elements)
            if not sample.is_floating_point():
                sample = sample.float()
            finite = torch.isfinite(sample)
            n = finite.sum()
            nonfinite = sample.numel() - n
            if sample.numel() < total and x.is_floating_point():
                # NaN/inf anywhere make the tensor's min or max non-finite: one pass over it, no copy, so the
                # count is at least 1 even when the stride stepped over them
                lo_all, hi_all = torch.aminmax(x)
                anywhere = (~(torch.isfinite(lo_all) & torch.isfinite(hi_all))).to(nonfinite.dtype)
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
            hist = _histogram(sample, grid)
            # values outside [lo, hi] are counted in `outside`, never clamped into the edge bins, so a histogram
            # never shows mass where there was none
            outside = n - hist.sum().to(n.dtype)
            # torch.full fills on the device; torch.tensor([...], device=...) would copy from the host and wait
            sizes = [torch.full((), v, dtype=torch.int64, device=n.device) for v in (total, sample.numel())]
            counts = torch.stack([*sizes, n, zeros, nonfinite, outside]).to(torch.int64)
            dead = torch.zeros((), device=n.device)
            moments = torch.stack([mean, m2, vmin, vmax, dead]).to(torch.float32)
            out = LayerSample(counts, moments, hist, grid, tuple(x.shape), active=_active_units(x, axis),
                              units=units)
            if self.bounds is not None and x.is_floating_point() and x.ndim > 0:
                lo, hi, _ = self.bounds
                out.near, out.near_of = _at_bounds(x, axis, lo, hi, self.max_elements)
                out.saturation = self.saturation_rule
            if detail:
                out.detail, out.detail_note, out.detail_kind = _detail(x, axis, self.detail_elements)
            return self.finish(out) if finish else out

    def merge(self, a: LayerSample, b: LayerSample) -> LayerSample:
        """One sample from two calls of the layer in the same step (``a`` first). Device ops only."""
        with torch.no_grad():
            grid = a.grid if a.grid == b.grid else a.grid.cover(b.grid.lo, b.grid.hi)  # widened in between
            hist = _rebin_torch(a.hist, a.grid, grid) + _rebin_torch(b.hist, b.grid, grid)
            fa, fb = a.counts[2].float(), b.counts[2].float()
            safe = (fa + fb).clamp(min=1)
            delta = b.moments[0] - a.moments[0]
            mean = (fa * a.moments[0] + fb * b.moments[0]) / safe
            m2 = a.moments[1] + b.moments[1] + delta.square() * fa * fb / safe
            moments = torch.stack([mean, m2, torch.minimum(a.moments[2], b.moments[2]),
                                   torch.maximum(a.moments[3], b.moments[3]), a.moments[4]])
            active = a.active
            if a.active is not None and b.active is not None and a.active.shape == b.active.shape:
                active = a.active | b.active
            grad_sq = b.grad_sq if a.grad_sq is None else a.grad_sq if b.grad_sq is None else a.grad_sq + b.grad_sq
            near, near_of = a.near, a.near_of
            if a.near is not None and b.near is not None and a.near.shape == b.near.shape:
                near, near_of = a.near + b.near, a.near_of + b.near_of  # the calls' values together
            return LayerSample(a.counts + b.counts, moments, hist, grid, a.shape, a.detail, a.detail_note,
                               a.detail_kind, grad_sq, active, a.calls + b.calls, a.units, a.layer, near, near_of,
                               saturation=a.saturation)

    def finish(self, sample: LayerSample) -> LayerSample:
        """Record the step's unit activity in the dead-unit window and fill in the dead fraction, and the
        fraction of saturated units where the layer has bounds."""
        if sample.near is not None and sample.near_of > 0:
            with torch.no_grad():
                share = sample.near / sample.near_of
                sample.saturated = (share >= SATURATED_SHARE).float().mean()
        active = sample.active
        if active is None:
            return sample
        with torch.no_grad():
            if self._active and self._active[-1].shape != active.shape:
                self._active.clear()  # the layer changed width (a different input shape): start a new window
            self._active.append(active)
            ever = torch.stack(tuple(self._active)).any(dim=0)
            sample.moments = torch.cat([sample.moments[:4], (1.0 - ever.float().mean()).reshape(1)])
        return sample

    def _empty(self, x: torch.Tensor) -> LayerSample:
        grid = self.grid or HistogramGrid.around(0, 1, self.bins)
        dev = x.device
        return LayerSample(torch.zeros(len(COUNT_FIELDS), dtype=torch.int64, device=dev),
                           torch.zeros(len(MOMENT_FIELDS), device=dev), torch.zeros(grid.bins, device=dev),
                           grid, tuple(x.shape))


def _histogram(sample: torch.Tensor, grid: HistogramGrid) -> torch.Tensor:
    """float32 counts of the finite values of ``sample`` in each bin of ``grid`` (``[lo, hi]``, the last bin
    closed, as ``torch.histc``); NaN, inf and values outside the grid are left out. A bin index per value and
    one count per bin (``bincount`` on the CPU, a scatter-add elsewhere): less than half of ``histc``'s
    time on the CPU, and no host sync."""
    bins = grid.bins
    pos = (sample.float() - grid.lo).mul_(1.0 / grid.width)  # the width is a power of two: an exact scaling
    pos = pos.nan_to_num_(nan=-1.0, posinf=bins + 1.0, neginf=-1.0).clamp_(-1.0, bins + 1.0)
    index = torch.where(pos == bins, bins - 1.0, pos.floor()).to(torch.int64)  # hi is in the last bin
    index = index.remainder_(bins + 2)  # -1 (below lo, NaN) -> bins + 1; above hi -> bins or bins + 1: dropped
    if sample.device.type == "cpu":  # bincount sizes its output from the data: a host sync on a GPU
        return torch.bincount(index, minlength=bins + 2)[:bins].to(torch.float32)
    counts = torch.zeros(bins + 2, dtype=torch.float32, device=sample.device)
    counts.index_add_(0, index, torch.ones((), dtype=torch.float32, device=sample.device).expand(index.shape))
    return counts[:bins]


def _innermost(x: torch.Tensor) -> int | None:
    """The axis with stride 1 (size > 1) when the tensor is not plainly contiguous, else None."""
    if x.is_contiguous():
        return None
    return next((d for d in range(x.ndim) if x.stride(d) == 1 and x.shape[d] > 1), None)


def _strided_sample(x: torch.Tensor, max_elements: int) -> torch.Tensor:
    """At most ``max_elements`` values of ``x`` on a fixed stride, without copying ``x``: a view when ``x`` is
    contiguous or a permutation of contiguous (channels-last), else a gather of only the sampled values."""
    total = x.numel()
    stride = max(1, -(-total // max_elements))
    # A strided sample is gathered into one small contiguous buffer once: the dozen reductions that follow would
    # each walk a strided view, touching about every cache line of the whole tensor again (that, not the
    # arithmetic, was most of a large layer's summary time)
    if x.is_contiguous():
        flat = x.view(-1)
        return flat if stride == 1 else flat[::stride].contiguous()
    dense = _memory_order_view(x)
    if dense is not None:  # statistics do not depend on the order: stride through memory
        return dense if stride == 1 else dense[::stride].contiguous()
    idx = torch.arange(0, total, stride, device=x.device)
    coords = []
    for size in reversed(x.shape):
        coords.append(idx % size)
        idx = idx // size
    return x[tuple(reversed(coords))]


def _memory_order_view(x: torch.Tensor) -> torch.Tensor | None:
    """A 1-D view of ``x``'s elements in memory order, if they are dense and non-overlapping; else None."""
    dims = sorted((s, n) for s, n in zip(x.stride(), x.shape, strict=True) if n != 1)
    expected = 1
    for stride, size in dims:
        if stride != expected:
            return None
        expected *= size
    return x.as_strided((x.numel(),), (1,), x.storage_offset())


def _active_units(x: torch.Tensor, axis: int) -> torch.Tensor | None:
    if x.ndim == 0:
        return None
    others = tuple(d for d in range(x.ndim) if d != axis % x.ndim)
    if x.dtype == torch.bool:
        x = x.to(torch.uint8)
    return (x.amax(dim=others) if others else x) > 0  # a unit is active if it exceeds 0 anywhere


def output_bounds(module: nn.Module) -> tuple[float, float, str] | None:
    """``(lo, hi, what)``: the range a module's output is confined to, where its type states it; else None.

    Sigmoid and Hardsigmoid: [0, 1]; Tanh and Softsign: [-1, 1]; Hardtanh: [min_val, max_val] (ReLU6, a
    Hardtanh, [0, 6]). A plain ``nn.Sequential`` returns its last module's output, so it has that module's range.
    Nothing is guessed for other modules (their range, if any, is not stated by their type).
    """
    if type(module).forward is nn.Sequential.forward and isinstance(module, nn.Sequential) and len(module):
        inner = output_bounds(module[-1])
        return None if inner is None else (inner[0], inner[1], f"its last module, {inner[2]}")
    if isinstance(module, nn.Hardtanh):
        lo, hi = float(module.min_val), float(module.max_val)
        return (lo, hi, type(module).__name__) if math.isfinite(lo) and math.isfinite(hi) and lo < hi else None
    if isinstance(module, (nn.Tanh, nn.Softsign)):
        return -1.0, 1.0, type(module).__name__
    if isinstance(module, (nn.Sigmoid, nn.Hardsigmoid)):
        return 0.0, 1.0, type(module).__name__
    return None


def _at_bounds(x: torch.Tensor, axis: int, lo: float, hi: float, max_elements: int) -> tuple[torch.Tensor, int]:
    """Per unit (``axis``): how many of its values lie within ``SATURATION_MARGIN`` of the range from ``lo`` or
    ``hi`` (float32, on the device), and how many values per unit were looked at. Every ``s``-th example (axis 0)
    when ``x`` has more than ``max_elements`` values: a strided view, no copy of ``x``."""
    axis %= x.ndim
    if axis != 0 and x.shape[0] > 1 and x.numel() > max_elements:
        x = x[:: min(x.shape[0], -(-x.numel() // max_elements))]
    margin = SATURATION_MARGIN * (hi - lo)
    near = (x <= lo + margin) | (x >= hi - margin)  # NaN is at no bound
    others = tuple(d for d in range(x.ndim) if d != axis)
    counts = near.sum(dim=others, dtype=torch.float32) if others else near.to(torch.float32)
    return counts, x.numel() // max(x.shape[axis], 1)


def _rebin_torch(hist: torch.Tensor, finer: HistogramGrid, coarser: HistogramGrid) -> torch.Tensor:
    """Sum the bins of ``hist`` (on ``finer``) into the power-of-two coarsening ``coarser``. Exact."""
    if finer == coarser:
        return hist
    centres = finer.lo + finer.width * (torch.arange(finer.bins, dtype=torch.float64) + 0.5)
    target = torch.floor((centres - coarser.lo) / coarser.width).long().to(hist.device)
    return torch.zeros(coarser.bins, device=hist.device, dtype=hist.dtype).index_add_(0, target, hist)


# Module types whose outputs put units (channels) on axis 1, and those whose outputs put them on the last axis.
def _channels_first_types() -> tuple[type, ...]:
    from torch.nn.modules import batchnorm, conv, instancenorm, pooling

    return (conv._ConvNd, batchnorm._BatchNorm, instancenorm._InstanceNorm, nn.GroupNorm, nn.LocalResponseNorm,
            pooling._MaxPoolNd, pooling._AvgPoolNd, pooling._AdaptiveAvgPoolNd, pooling._AdaptiveMaxPoolNd,
            pooling._LPPoolNd, nn.Upsample, nn.PixelShuffle, nn.PixelUnshuffle, nn.Dropout1d, nn.Dropout2d,
            nn.Dropout3d)


def _features_last_types() -> tuple[type, ...]:
    kinds: list[type] = [nn.Linear, nn.Bilinear, nn.LayerNorm, nn.Embedding, nn.EmbeddingBag, nn.MultiheadAttention,
                         nn.RNNBase, nn.RNNCellBase, nn.TransformerEncoderLayer, nn.TransformerDecoderLayer,
                         nn.TransformerEncoder, nn.TransformerDecoder, nn.Transformer]
    if hasattr(nn, "RMSNorm"):
        kinds.append(nn.RMSNorm)
    return tuple(kinds)


CHANNELS_FIRST = _channels_first_types()
FEATURES_LAST = _features_last_types()
UNIT_LAYOUTS = ("channels_first", "channels_last")


def _layout_of(module: nn.Module) -> tuple[str, int | None] | None:
    """("channels_first" | "channels_last", unit count or None) for modules whose type says it, else None."""
    if getattr(module, "data_format", None) == "channels_first":  # e.g. Hugging Face's ConvNextLayerNorm
        shape = getattr(module, "normalized_shape", None)
        return "channels_first", (shape[-1] if shape else None)
    if isinstance(module, CHANNELS_FIRST):
        count = (getattr(module, "out_channels", None) or getattr(module, "num_features", None)
                 or getattr(module, "num_channels", None))
        return "channels_first", count
    if isinstance(module, FEATURES_LAST):
        for attr in ("out_features", "embedding_dim", "embed_dim", "hidden_size", "d_model"):
            count = getattr(module, attr, None)
            if isinstance(count, int):
                return "channels_last", count
        shape = getattr(module, "normalized_shape", None)
        return "channels_last", (shape[-1] if shape else None)
    if type(module).__name__ == "Conv1D" and isinstance(getattr(module, "nf", None), int):
        return "channels_last", module.nf  # Hugging Face's GPT-2 Conv1D is a linear layer on the last axis
    return None


def _known_layout(module: nn.Module, model: nn.Module | None) -> tuple[str, int | None, str] | None:
    """The layout of ``module``'s output: from its type; for a container, from its last submodule with a known
    type; for an elementwise module (an activation, dropout), from the closest earlier sibling that has one."""
    own = _layout_of(module)
    if own is not None:
        return (*own, type(module).__name__)
    for sub in reversed(list(module.modules())[1:]):
        found = _layout_of(sub)
        if found is not None:
            return (*found, f"its last {type(sub).__name__}")
    if model is None:
        return None
    for parent in model.modules():
        children = list(parent.children())
        if any(child is module for child in children):
            before = children[: next(i for i, c in enumerate(children) if c is module)]
            for sibling in reversed(before):
                for sub in reversed(list(sibling.modules())):
                    found = _layout_of(sub)
                    if found is not None:
                        return (*found, f"the {type(sub).__name__} before it")
            return None
    return None


def units_of(tensor: torch.Tensor, module: nn.Module | None = None, *, model: nn.Module | None = None,
             units: str | int | None = None) -> tuple[int, str]:
    """``(axis, note)`` of a layer's output tensor: :func:`decide_units` with its shape and memory layout."""
    return decide_units(module, tuple(tensor.shape), model=model, units=units, innermost=_innermost(tensor))


def unit_axis(module: nn.Module | None, ndim: int | tuple[int, ...], *, model: nn.Module | None = None,
              units: str | int | None = None) -> int:
    """The axis that indexes units (see :func:`decide_units`)."""
    return decide_units(module, ndim, model=model, units=units)[0]


def decide_units(module: nn.Module | None, shape: int | tuple[int, ...], *, model: nn.Module | None = None,
                 units: str | int | None = None, innermost: int | None = None) -> tuple[int, str]:
    """``(axis, note)``: which axis of a layer's output indexes its units, and why.

    - ``units`` given: ``"channels_first"`` (axis 1), ``"channels_last"`` (last axis) or an axis index.
    - Otherwise from the layer: convolutions, batch/group norms and pooling put channels on axis 1 (PyTorch's
      NC... layout); linear layers, layer norms, embeddings, attention and recurrent layers put units on the last
      axis, so a ``Linear`` or ``LayerNorm`` on a channels-last (N, H, W, C) map (ConvNeXt, Swin) has its units
      last. A container takes the layout of its last submodule of a known type; an activation or dropout that of
      the closest earlier sibling. The size of the chosen axis is checked against the unit count of the layer
      that decided it; when the other candidate axis matches instead, that one is used. A channels-last layer
      whose output was permuted back to (N, C, H, W) (a ConvNeXt block's output) is recognised by its memory
      layout: the units, written contiguously by the linear layer, are then the ``innermost`` axis (stride 1).
    - Without any of that: channels (axis 1) for 4-D/5-D outputs, the last axis otherwise.
    """
    dims = tuple(shape) if isinstance(shape, tuple) else None
    ndim = len(dims) if dims is not None else int(shape)  # type: ignore[arg-type]
    last = max(ndim - 1, 0)
    if units is not None:
        if isinstance(units, bool) or not (isinstance(units, int) or units in UNIT_LAYOUTS):
            raise ValueError(f"units must be 'channels_first', 'channels_last' or an axis index; got {units!r}")
        if isinstance(units, int):
            if not -ndim <= units < max(ndim, 1):
                raise ValueError(f"units={units} is not an axis of a {ndim}-D output (shape {dims})")
            return units % max(ndim, 1), f"axis {units % max(ndim, 1)} (chosen with units=)"
        axis = 1 if units == "channels_first" and ndim >= 3 else last
        return axis, f"{'channels, axis 1' if axis == 1 else 'last axis'} (units={units!r})"
    if ndim <= 2:
        return last, "features, last axis" if ndim == 2 else "values"
    known = _known_layout(module, model) if module is not None else None
    if known is None:
        axis = 1 if ndim >= 4 else last
        what = "channels, axis 1 (4-D output: assumed N, C, H, W)" if axis == 1 else \
            "features, last axis (3-D output: assumed N, tokens, features)"
        return axis, what + "; pass units= to override"
    layout, count, source = known
    axis = 1 if layout == "channels_first" else last
    other = last if axis == 1 else 1
    if layout == "channels_last" and innermost == 1 and ndim >= 3 and (count is None or dims is None
                                                                       or dims[1] == count):
        return 1, f"channels, axis 1 (the units of {source}, permuted back to channels-first)"
    if dims is not None and count is not None and dims[axis] != count and dims[other] == count:
        axis, layout = other, "channels_last" if other == last else "channels_first"
        return axis, f"axis {axis}: the {count} units of {source} (found by size)"
    note = "channels, axis 1" if axis == 1 else "units, last axis"
    if dims is not None and count is not None and dims[axis] == count == dims[other]:
        note += f" (from {source}; axes 1 and {last} both have {count} entries: pass units= if this is wrong)"
    else:
        note += f" (from {source})"
    return axis, note


def detail_view(x: torch.Tensor, module: torch.nn.Module | None = None,
                max_elements: int = 32768, *, units: int | str | None = None) -> tuple[torch.Tensor, str]:
    """A small float32 picture of the current activations, at most ``max_elements`` values, and a note saying
    what was kept. The unit axis is decided as by :func:`decide_units`:

    - feature maps ``(N, C, H, W)``, or ``(N, H, W, C)`` when the units are last (ConvNeXt, Swin): the first
      example's maps, ``[C', h, w]``, at most 64 channels, each average-pooled so that ``C'*h*w <= max_elements``;
    - dense ``(N, F)``: a units x examples heatmap ``[F', N']`` of the first 64 examples and first units that fit;
    - sequences ``(N, T, D)`` with units last: the first example's tokens x features ``[T', D']``; with units on
      axis 1 (1-D convolutions, ``(N, C, L)``): channels x positions;
    - anything else: the first example flattened to a 2-D heatmap, strided down to fit.
    Returns a copy (on the input's device; never a view, so later in-place ops on the activation and the
    activation's own memory are not kept).
    """
    axis, _ = decide_units(module, tuple(x.shape), units=units)
    values, note, _ = _detail(x, axis, max_elements)
    return values, note


def _detail(x: torch.Tensor, axis: int, max_elements: int) -> tuple[torch.Tensor, str, str]:
    """(values, note, kind) for :func:`detail_view`; only the first example is converted to float32."""
    with torch.no_grad():
        x = x.detach()
        shape = "x".join(str(s) for s in x.shape)
        if x.ndim == 4:
            first = x[0] if axis == 1 else x[0].permute(2, 0, 1)  # (C, H, W)
            c = min(first.shape[0], 64)
            h, w = first.shape[1], first.shape[2]
            scale = min(1.0, math.sqrt(max_elements // c / max(h * w, 1)))
            th, tw = max(1, int(h * scale)), max(1, int(w * scale))
            maps = first[:c].float()
            if (th, tw) != (h, w):
                maps = F.adaptive_avg_pool2d(maps.unsqueeze(0), (th, tw))[0]
            layout = "" if axis == 1 else " (channels-last output)"
            note = f"example 0 of {x.shape[0]}: {c} of {first.shape[0]} channels{layout}"
            note += f", {h}x{w} pooled to {th}x{tw}" if (th, tw) != (h, w) else f", {h}x{w}"
            return maps.clone(), note, "maps"
        if x.ndim <= 1:
            v = x.reshape(-1)[:max_elements].float()
            return v.reshape(-1, 1).clone(), f"{v.numel()} of {x.numel()} values", "values"
        if x.ndim == 2:
            n = min(x.shape[0], 64)
            f = min(x.shape[1], max(1, max_elements // n))
            return (x[:n, :f].t().float().clone(), f"{f} of {x.shape[1]} units x {n} of {x.shape[0]} examples",
                    "units x examples")
        if x.ndim == 3:
            m = x[0]  # (T, D) tokens x features, or (C, L) channels x positions
            kind = "channels x positions" if axis == 1 else "tokens x features"
        else:
            m = x[0].reshape(x.shape[1], -1)
            kind = "values"
        rows = m.shape[0]
        rs = -(-rows // 128) if rows > 128 else 1
        m = m[::rs]
        cs = -(-m.shape[1] * m.shape[0] // max_elements) if m.numel() > max_elements else 1
        m = m[:, ::cs].float()
        kept = f"every {rs}th row, " if rs > 1 else ""
        kept += f"every {cs}th column" if cs > 1 else ""
        note = f"example 0 of shape {shape} as {kind} {m.shape[0]}x{m.shape[1]}" + (f" ({kept.rstrip(', ')})"
                                                                                   if kept else "")
        return m.clone(), note, kind
