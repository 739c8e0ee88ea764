"""Data set examples for a layer's units: the inputs that excite each unit most and least, as shown beside feature
visualisations in Olah et al. (2017), *Feature Visualization*, Distill, and in OpenAI Microscope.

One streaming pass over a loader, memory bounded by the units and ``k`` (never by the data set's size): after
every batch the running top-k (and bottom-k) of each unit is merged with the batch's scores by ``torch.topk``,
and only the examples still in some unit's list are kept.

A unit's score on an example: for conv layers (N, C, H, W) the channel's maximum over positions (``pool="max"``,
with the position (y, x) of that maximum) or its mean (``pool="mean"``); bottom-k uses the minimum over positions
(and its position) with ``"max"``. Sequence layers (N, T, D): the same over tokens. (N, D) layers: the unit's
value. For conv units each example comes with a box around the unit's receptive field at that position, measured
as the support of the gradient of the layer's centre position with respect to the input (the effective receptive
field), moved by the layer's stride.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ...pipeline.model_state import evaluation_mode, model_device, model_for_work
from ._common import (
    FeatureVisualizationError,
    Taps,
    batch_inputs,
    check_int,
    check_layer,
    check_model,
    check_progress,
    check_units,
    keyword_checked,
    make_normalize,
    model_dtype,
)

__all__ = ["DatasetExamples", "dataset_examples", "receptive_field"]

POOLS = ("max", "mean")


@dataclass(frozen=True)
class ReceptiveField:
    """Where a layer's unit looks in the input: ``box`` (y0, x0, y1, x1), end exclusive, of the centre position
    (``center``) of a (h, w) map over an (H, W) input; ``stride`` (input pixels per map position)."""

    box: tuple[int, int, int, int]
    center: tuple[int, int]
    stride: tuple[float, float]
    input_size: tuple[int, int]
    map_size: tuple[int, int]

    @property
    def size(self) -> tuple[int, int]:
        return self.box[2] - self.box[0], self.box[3] - self.box[1]

    def box_at(self, y: int, x: int) -> tuple[int, int, int, int]:
        """The box for map position (y, x): the centre's box moved by the stride, shifted to lie inside the
        input (its size kept, up to the input's size)."""
        h, w = self.size
        big_h, big_w = self.input_size
        y0 = self.box[0] + round((y - self.center[0]) * self.stride[0])
        x0 = self.box[1] + round((x - self.center[1]) * self.stride[1])
        y0 = min(max(y0, 0), max(big_h - h, 0))
        x0 = min(max(x0, 0), max(big_w - w, 0))
        return y0, x0, min(y0 + h, big_h), min(x0 + w, big_w)


@keyword_checked
def receptive_field(model: nn.Module, layer: str, shape: tuple[int, int, int], *, selector: Any = None,
                    normalize: Any = None, forward: Callable[[nn.Module, torch.Tensor], Any] | None = None,
                    seed: int = 0) -> ReceptiveField:
    """The effective receptive field of a conv layer's centre position for inputs of ``shape`` (C, H, W): the
    bounding box of the input pixels where the gradient of the layer's centre (all channels summed) is non-zero,
    over two random inputs (own generator, ``seed``); the stride is how far that box moves between neighbouring
    positions. Parameters' ``.grad`` are left alone."""
    model = model_for_work(check_model(model))  # a copy of the weights while another thread trains it
    check_layer(model, layer)
    if len(shape) != 3:
        raise FeatureVisualizationError(f"receptive_field needs an image shape (C, H, W); got {tuple(shape)}")
    norm = make_normalize(normalize)
    g = torch.Generator().manual_seed(check_int(seed, "seed"))
    device, dtype = model_device(model), model_dtype(model)
    inputs = [torch.rand((1, *shape), generator=g, dtype=torch.float64).to(device, dtype) for _ in range(2)]
    captured: dict[str, torch.Tensor] = {}
    taps = Taps(model, {layer: selector}, lambda name, t: captured.__setitem__(name, t))
    taps.stop_after = frozenset([layer])
    big_h, big_w = shape[1], shape[2]

    def support_box(y: int, x: int) -> tuple[int, int, int, int] | None:
        support = torch.zeros(shape[1:], dtype=torch.bool)
        for x0 in inputs:
            x0 = x0.clone().requires_grad_(True)
            taps.forward(model, norm(x0) if norm else x0, forward)
            a = captured.pop(layer)
            (grad,) = torch.autograd.grad(a[0, :, y, x].sum(), x0, allow_unused=True)
            if grad is not None:
                support |= (grad[0].abs().sum(0) > 0).cpu()
        rows = torch.nonzero(support.any(1)).flatten()
        cols = torch.nonzero(support.any(0)).flatten()
        if len(rows) == 0:
            return None
        return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1

    with evaluation_mode(model), taps, torch.enable_grad():
        with torch.no_grad():
            taps.forward(model, norm(inputs[0]) if norm else inputs[0], forward)
        a = captured.pop(layer)
        if a.ndim != 4:
            raise FeatureVisualizationError(f"layer {layer!r} gives {tuple(a.shape)}; a receptive field needs a conv "
                                            "layer (N, C, H, W)")
        h, w = a.shape[2], a.shape[3]
        cy, cx = h // 2, w // 2
        box = support_box(cy, cx)
        # the stride: how far the box moves from the position before the centre (exact for conv stacks)
        before = support_box(max(cy - 1, 0), max(cx - 1, 0)) if h > 1 and w > 1 else None
    if box is None:  # no gradient at all: the whole input
        return ReceptiveField(box=(0, 0, big_h, big_w), center=(cy, cx), stride=(big_h / h, big_w / w),
                          input_size=(big_h, big_w), map_size=(h, w))
    stride = (big_h / h, big_w / w)
    if before is not None:
        def moved(axis: int, size: int) -> float | None:  # from an edge that the input's border did not clip
            if before[axis] > 0:
                return float(box[axis] - before[axis])
            if box[axis + 2] < size:
                return float(box[axis + 2] - before[axis + 2])
            return None

        sy, sx = moved(0, big_h), moved(1, big_w)
        stride = (sy if sy else stride[0], sx if sx else stride[1])
    return ReceptiveField(box=box, center=(cy, cx), stride=stride, input_size=(big_h, big_w), map_size=(h, w))


@dataclass(frozen=True, eq=False)
class DatasetExamples:
    """The result of :func:`dataset_examples`.

    Per unit (row r is unit ``units[r]``), best first: ``top_indices`` (U, k) int64 (the example's position in
    the loader's iteration order), ``top_values`` (U, k) float64, ``top_positions`` (U, k, P) int64 ((y, x) for
    conv layers, (token,) for sequences, P = 0 for vectors), ``top_boxes`` (U, k, 4) (y0, x0, y1, x1) in input
    pixels around the receptive field (conv layers with image inputs; else None); the same for ``bottom_*``
    (lowest first). ``n_examples``: examples seen; ``cancelled``: True if ``progress`` stopped the pass early
    (then the lists are over the first ``n_examples``).
    """

    layer: str
    units: list[int]
    k: int
    pool: str
    top_indices: torch.Tensor
    top_values: torch.Tensor
    top_positions: torch.Tensor
    bottom_indices: torch.Tensor
    bottom_values: torch.Tensor
    bottom_positions: torch.Tensor
    n_examples: int
    cancelled: bool
    receptive_field: ReceptiveField | None = None
    top_boxes: torch.Tensor | None = None
    bottom_boxes: torch.Tensor | None = None
    kept: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)

    def _row(self, unit: int) -> int:
        try:
            return self.units.index(unit)
        except ValueError:
            raise FeatureVisualizationError(f"unit {unit} was not among the units examined ({self.units[:10]}"
                                            f"{'...' if len(self.units) > 10 else ''})") from None

    def _lists(self, which: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        if which == "top":
            return self.top_indices, self.top_boxes
        if which == "bottom":
            return self.bottom_indices, self.bottom_boxes
        raise FeatureVisualizationError(f"which must be 'top' or 'bottom'; got {which!r}")

    def images(self, unit: int, which: str = "top") -> torch.Tensor:
        """The unit's top (or bottom) examples, (k, ...) as the loader gave them (``keep_images=True``)."""
        idx, _ = self._lists(which)
        if not self.kept:
            raise FeatureVisualizationError("the examples were not kept: call dataset_examples(..., keep_images=True)")
        return torch.stack([self.kept[int(i)] for i in idx[self._row(unit)] if int(i) >= 0])

    def crops(self, unit: int, which: str = "top") -> torch.Tensor:
        """The unit's top (or bottom) examples cropped to the receptive-field box around each example's position,
        (k, C, h, w) (every box has the same size)."""
        _, boxes = self._lists(which)
        if boxes is None:
            raise FeatureVisualizationError(f"layer {self.layer!r} has no spatial positions over an image input, so "
                                            "there are no crops; use images()")
        images = self.images(unit, which)
        row = self._row(unit)
        out = [img[..., y0:y1, x0:x1] for img, (y0, x0, y1, x1) in zip(images, boxes[row].tolist(), strict=False)]
        return torch.stack(out)


def _score(a: torch.Tensor, units: torch.Tensor | None, pool: str
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(max-or-mean scores (B, U), their positions (B, U, P), min-or-mean scores, their positions); ``units``
    None for every unit (no copy of the activations)."""
    b = a.shape[0]
    count = (a.shape[1] if a.ndim == 4 else a.shape[-1]) if units is None else len(units)
    if a.ndim == 2:
        s = a if units is None else a[:, units]
        empty = torch.zeros((b, count, 0), dtype=torch.int64, device=a.device)
        return s, empty, s, empty
    if a.ndim == 4:
        flat = (a if units is None else a[:, units]).reshape(b, count, -1)
        width = a.shape[3]
    elif a.ndim == 3:  # (N, T, D): the unit is a feature, positions are tokens
        flat = (a if units is None else a[:, :, units]).transpose(1, 2)
        width = 0
    else:
        raise FeatureVisualizationError(f"the layer gives {tuple(a.shape)}; expected (N, C, H, W), (N, T, D) or (N, D)")
    hi, hi_at = flat.max(dim=2)
    lo, lo_at = flat.min(dim=2)
    if pool == "mean":
        hi = lo = flat.mean(dim=2)

    def pos(at: torch.Tensor) -> torch.Tensor:
        return torch.stack([at // width, at % width], dim=2) if width else at[..., None]

    return hi, pos(hi_at), lo, pos(lo_at)


def _merge(best_v: torch.Tensor, best_i: torch.Tensor, best_p: torch.Tensor, v: torch.Tensor, i: torch.Tensor,
           p: torch.Tensor, k: int, largest: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep the k best of (running list, batch) per unit. ``v`` (U, B), ``i`` (B,), ``p`` (U, B, P)."""
    cat_v = torch.cat([best_v, v], dim=1)
    cat_i = torch.cat([best_i, i[None, :].expand(v.shape[0], -1)], dim=1)
    cat_p = torch.cat([best_p, p], dim=1)
    kk = min(k, cat_v.shape[1])
    top_v, at = cat_v.topk(kk, dim=1, largest=largest, sorted=True)
    return top_v, cat_i.gather(1, at), cat_p.gather(1, at[..., None].expand(-1, -1, cat_p.shape[2]))


class _Keeper:
    """The examples still in some unit's lists, in slots of one buffer that grows by doubling (never by one small
    tensor per example, which would fragment the heap over a long pass); freed slots are reused."""

    def __init__(self) -> None:
        self.buffer: torch.Tensor | None = None
        self.slot: dict[int, int] = {}
        self.free: list[int] = []

    def update(self, needed: set[int], first: int, batch: torch.Tensor) -> None:
        for index in [i for i in self.slot if i not in needed]:
            self.free.append(self.slot.pop(index))
        new = [j for j in range(len(batch)) if first + j in needed]
        if not new:
            return
        if self.buffer is None:
            self.buffer = torch.empty((max(64, len(new)), *batch.shape[1:]), dtype=batch.dtype)
            self.free = list(range(len(self.buffer) - 1, -1, -1))
        while len(self.free) < len(new):
            old = len(self.buffer)
            grown = torch.empty((2 * old, *self.buffer.shape[1:]), dtype=self.buffer.dtype)
            grown[:old] = self.buffer
            self.buffer = grown
            self.free = list(range(2 * old - 1, old - 1, -1)) + self.free
        for j in new:
            s = self.free.pop()
            self.buffer[s] = batch[j]
            self.slot[first + j] = s

    def result(self) -> dict[int, torch.Tensor]:
        if self.buffer is None:
            return {}
        return {i: self.buffer[s].clone() for i, s in sorted(self.slot.items())}


def _total(loader: Any) -> int | None:
    try:
        return len(loader.dataset)
    except (AttributeError, TypeError):
        pass
    if isinstance(loader, torch.Tensor):
        return len(loader)
    return None


def iterate(loader: Any, batch_size: int = 256) -> Iterable[Any]:
    """Batches from a DataLoader (or any iterable of batches), or from a tensor of examples in chunks."""
    if isinstance(loader, torch.Tensor):
        return (loader[s:s + batch_size] for s in range(0, len(loader), batch_size))
    if isinstance(loader, (tuple, list)) and loader and all(isinstance(t, torch.Tensor) for t in loader) \
            and len({len(t) for t in loader}) == 1 and loader[0].ndim >= 2:
        n = len(loader[0])
        return (tuple(t[s:s + batch_size] for t in loader) for s in range(0, n, batch_size))
    try:
        return iter(loader)
    except TypeError:
        raise FeatureVisualizationError(f"data must be a DataLoader (or any iterable of batches) or a tensor of "
                                        f"examples; got {type(loader).__name__}") from None


@keyword_checked
def dataset_examples(model: nn.Module, loader: Any, layer: str, *, units: Any = None, k: int = 9,
                     pool: str = "max", selector: Any = None, inputs: Callable[[Any], torch.Tensor] | None = None,
                     normalize: Any = None, forward: Callable[[nn.Module, torch.Tensor], Any] | None = None,
                     keep_images: bool = True, progress: Callable[[int, int | None], Any] | None = None,
                     stop_early: bool = True) -> DatasetExamples:
    """The top-k and bottom-k examples of each unit of ``layer`` over ``loader``, in one streaming pass
    (Olah et al. 2017's data set examples; OpenAI Microscope).

    Parameters
    ----------
    loader : a DataLoader or any iterable of batches (tensors, or tuples whose first element is the input; or
        ``inputs(batch)``), or a tensor of examples. An example's index is its position in the iteration order
        (the data set index when the loader does not shuffle).
    units : unit indices (channels or features); default every unit.
    k : examples per unit and side.
    pool : "max" (default; position of the maximum, minimum for bottom-k) or "mean" over positions.
    normalize, forward : as in :func:`~hiddenwidgets.analysis.featurevis.visualize` (the kept images are the
        loader's, before ``normalize``).
    keep_images : keep the examples still in some unit's lists (at most units × 2k of them) for
        :meth:`DatasetExamples.images` and :meth:`DatasetExamples.crops`.
    progress : ``progress(examples_done, total_or_None) -> bool | None`` after each batch; False stops the pass
        and returns the lists so far (``cancelled=True``).
    stop_early : end each forward pass once ``layer`` has run.
    """
    model = model_for_work(check_model(model))  # a copy of the weights while another thread trains it
    check_layer(model, layer)
    k = check_int(k, "k", minimum=1)
    if pool not in POOLS:
        raise FeatureVisualizationError(f"pool must be one of {POOLS}; got {pool!r}")
    progress = check_progress(progress)
    norm = make_normalize(normalize)
    total = _total(loader)
    device, dtype = model_device(model), model_dtype(model)
    captured: dict[str, torch.Tensor] = {}
    taps = Taps(model, {layer: selector}, lambda name, t: captured.__setitem__(name, t))
    if stop_early:
        taps.stop_after = frozenset([layer])
    state: dict[str, Any] = {}
    keeper = _Keeper()
    seen = 0
    cancelled = False
    first_shape: tuple[int, ...] | None = None
    with evaluation_mode(model), taps, torch.no_grad():
        for batch in iterate(loader):
            x_cpu = batch_inputs(batch, inputs)
            if len(x_cpu) == 0:
                continue
            x = x_cpu.to(device, dtype) if x_cpu.is_floating_point() else x_cpu.to(device)
            if first_shape is None:
                first_shape = tuple(x.shape[1:])
            elif tuple(x.shape[1:]) != first_shape:
                raise FeatureVisualizationError(f"the examples change shape from {first_shape} to "
                                                f"{tuple(x.shape[1:])}; every example must have the same shape")
            taps.forward(model, norm(x) if norm else x, forward)
            a = captured.pop(layer)
            if not state:
                if a.ndim not in (2, 3, 4):
                    raise FeatureVisualizationError(f"layer {layer!r} gives {tuple(a.shape)}; expected (N, C, H, W), "
                                                    "(N, T, D) or (N, D)")
                count = a.shape[1] if a.ndim == 4 else a.shape[-1]
                unit_list = check_units(units, count, layer)
                u = len(unit_list)
                p = {4: 2, 3: 1, 2: 0}[a.ndim]
                every = unit_list == list(range(count))
                state = {"units": unit_list, "ndim": a.ndim,
                         "index": None if every else torch.tensor(unit_list, device=a.device),
                         "map": tuple(a.shape[2:]) if a.ndim == 4 else None}
                for side in ("top", "bottom"):
                    state[side] = (torch.empty((u, 0), dtype=torch.float64, device=a.device),
                                   torch.empty((u, 0), dtype=torch.int64, device=a.device),
                                   torch.empty((u, 0, p), dtype=torch.int64, device=a.device))
            hi, hi_p, lo, lo_p = _score(a, state["index"], pool)
            idx = torch.arange(seen, seen + len(a), device=a.device)
            state["top"] = _merge(*state["top"], hi.T.double(), idx, hi_p.transpose(0, 1), k, True)
            state["bottom"] = _merge(*state["bottom"], lo.T.double(), idx, lo_p.transpose(0, 1), k, False)
            if keep_images:
                needed = set(state["top"][1].flatten().tolist()) | set(state["bottom"][1].flatten().tolist())
                keeper.update(needed, seen, x_cpu)
            seen += len(a)
            if progress is not None and progress(seen, total) is False:
                cancelled = True
                break
    if not state:
        raise FeatureVisualizationError("the loader yielded no examples")
    rf = None
    top_boxes = bottom_boxes = None
    if state["ndim"] == 4 and first_shape is not None and len(first_shape) == 3:
        rf = receptive_field(model, layer, first_shape, selector=selector, normalize=normalize, forward=forward)

        def boxes(pos: torch.Tensor) -> torch.Tensor:
            flat = [rf.box_at(y, x) for y, x in pos.reshape(-1, 2).tolist()]
            return torch.tensor(flat, dtype=torch.int64).reshape(*pos.shape[:2], 4)

        top_boxes, bottom_boxes = boxes(state["top"][2].cpu()), boxes(state["bottom"][2].cpu())
    top_v, top_i, top_p = (t.cpu() for t in state["top"])
    bot_v, bot_i, bot_p = (t.cpu() for t in state["bottom"])
    return DatasetExamples(layer=layer, units=state["units"], k=top_v.shape[1], pool=pool, top_indices=top_i,
                           top_values=top_v, top_positions=top_p, bottom_indices=bot_i, bottom_values=bot_v,
                           bottom_positions=bot_p, n_examples=seen, cancelled=cancelled, receptive_field=rf,
                           top_boxes=top_boxes, bottom_boxes=bottom_boxes, kept=keeper.result())

