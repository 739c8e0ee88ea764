"""Network dissection, after Bau, Zhou, Khosla, Oliva & Torralba (2017), *Network Dissection: Quantifying
Interpretability of Deep Visual Representations*, CVPR.

For each unit ``u`` of a conv layer and each concept ``c``:

1. **Threshold.** ``T_u`` is the top-``(1 - quantile)`` level of the unit's activations over every position of
   every example (the paper: quantile 0.995): the ``m``-th largest value, ``m = ceil((1 - quantile) · N · h · w)``
   (computed exactly on the decimal ``quantile``),
   found exactly by a streaming top-``m`` over the data set (memory: units × m values).
2. **Masks.** Each activation map is upsampled (bilinear) to the concept masks' size and thresholded:
   ``M_u(x) = S_u(x) >= T_u``.
3. **IoU.** ``IoU_{u,c} = Σ_x |M_u(x) ∩ L_c(x)| / Σ_x |M_u(x) ∪ L_c(x)|``, sums over the whole data set. Pixel
   concepts have a mask ``L_c(x)`` per example; image-level concepts (labels, e.g. from a
   :class:`~hiddenwidgets.pipeline.concepts.ConceptStore`) cover the whole image of the examples that have them,
   as the paper treats scene and texture labels.

A unit is labelled with the concept of highest IoU, with that IoU as its score (the paper calls a unit a detector
of the concept when the IoU exceeds 0.04). Two passes over the data (threshold, then IoU); each pass streams.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...pipeline.model_state import evaluation_mode, model_device, model_for_work
from ._common import (
    Cancelled,
    FeatureVisualizationError,
    Taps,
    as_index_list,
    batch_inputs,
    check_float,
    check_int,
    check_layer,
    check_model,
    check_progress,
    check_units,
    keyword_checked,
    make_normalize,
    model_dtype,
)

__all__ = ["Dissection", "dissect"]

MAX_BUFFER = 50_000_000  # activation values kept for the exact thresholds (units × m), 200 MB of float32


@dataclass(frozen=True, eq=False)
class Dissection:
    """The result of :func:`dissect`.

    ``iou`` (U, K) float64: unit ``units[r]`` against concept ``concepts[k]``; ``thresholds`` (U,): each unit's
    ``T_u``; ``quantile``; ``n_examples``. :meth:`best` labels each unit with its highest-IoU concept.
    """

    layer: str
    units: list[int]
    concepts: list[str]
    iou: torch.Tensor
    thresholds: torch.Tensor
    quantile: float
    n_examples: int

    def best(self) -> list[dict[str, Any]]:
        """One row per unit: ``unit``, ``concept`` (highest IoU), ``iou``, ``threshold``, sorted by IoU."""
        scores, at = self.iou.max(dim=1)
        rows = [{"unit": u, "concept": self.concepts[int(k)], "iou": float(s), "threshold": float(t)}
                for u, s, k, t in zip(self.units, scores, at, self.thresholds, strict=True)]
        return sorted(rows, key=lambda r: -r["iou"])

    def label(self, unit: int) -> tuple[str, float]:
        """(concept, IoU) of one unit."""
        if unit not in self.units:
            raise FeatureVisualizationError(f"unit {unit} was not dissected (units: {self.units[:10]}...)")
        r = self.units.index(unit)
        k = int(self.iou[r].argmax())
        return self.concepts[k], float(self.iou[r, k])

    def records(self) -> list[dict[str, Any]]:
        """Every (unit, concept) pair: ``unit``, ``concept``, ``iou``."""
        return [{"unit": u, "concept": c, "iou": float(self.iou[r, k])}
                for r, u in enumerate(self.units) for k, c in enumerate(self.concepts)]


def _image_labels(image_concepts: Any, n: int) -> tuple[list[str], torch.Tensor]:
    """Names and an (N, K) bool matrix from a ConceptStore or a mapping name -> example indices."""
    mapping = image_concepts
    if not isinstance(image_concepts, Mapping) and hasattr(image_concepts, "concepts"):  # a ConceptStore
        mapping = image_concepts.concepts
        mapping = mapping() if callable(mapping) else mapping
    if not isinstance(mapping, Mapping):
        raise FeatureVisualizationError("image_concepts must be a ConceptStore or a mapping concept name -> example "
                                        f"indices; got {type(image_concepts).__name__}")
    names = list(mapping)
    labels = torch.zeros((n, len(names)), dtype=torch.bool)
    for k, name in enumerate(names):
        idx = as_index_list(mapping[name], f"image_concepts[{name!r}]")
        bad = [i for i in idx if not 0 <= i < n]
        if bad:
            raise FeatureVisualizationError(f"image concept {name!r} lists example {bad[0]}, but the data has {n} "
                                            f"examples (indices 0..{n - 1})")
        labels[idx, k] = True
    return names, labels


def _count(data: Any) -> int | None:
    if hasattr(data, "batches") and hasattr(data, "masks"):
        return len(data)
    if isinstance(data, torch.Tensor):
        return len(data)
    if isinstance(data, (tuple, list)) and data and all(isinstance(t, torch.Tensor) for t in data):
        return len(data[0])
    try:
        return len(data.dataset)
    except (AttributeError, TypeError):
        return None


def _passes(data: Any, batch_size: int) -> Callable[[], Iterable[Any]]:
    """A function giving a fresh iteration over the data each time (it is read twice)."""
    if hasattr(data, "batches") and hasattr(data, "masks"):  # hiddenwidgets.datasets.Shapes
        return lambda: data.batches(batch_size)
    if isinstance(data, (tuple, list)) and data and all(isinstance(t, torch.Tensor) for t in data):
        n = len(data[0])
        if any(len(t) != n for t in data):
            raise FeatureVisualizationError(f"the tensors in data have different lengths {[len(t) for t in data]}")
        return lambda: (tuple(t[s:s + batch_size] for t in data) for s in range(0, n, batch_size))
    if isinstance(data, torch.Tensor):
        return lambda: (data[s:s + batch_size] for s in range(0, len(data), batch_size))
    try:
        if iter(data) is data:
            raise FeatureVisualizationError("data is an iterator, which can be read only once; dissection reads the "
                                            "data twice (thresholds, then IoU): pass a DataLoader, a list of "
                                            "batches or tensors")
    except TypeError:
        raise FeatureVisualizationError(f"data must be a DataLoader (or any re-iterable of batches), a tuple "
                                        f"(images, masks) of tensors, or hiddenwidgets.datasets.shapes(); got "
                                        f"{type(data).__name__}") from None
    return lambda: iter(data)


@keyword_checked
def dissect(model: nn.Module, data: Any, layer: str, *, concepts: Sequence[str] | None = None,
            image_concepts: Any = None, quantile: float = 0.995, units: Any = None, selector: Any = None,
            inputs: Callable[[Any], torch.Tensor] | None = None,
            masks: Callable[[Any], torch.Tensor] | None = None, normalize: Any = None,
            forward: Callable[[nn.Module, torch.Tensor], Any] | None = None, batch_size: int = 64,
            progress: Callable[[int, int], Any] | None = None, stop_early: bool = True) -> Dissection:
    """Label each unit of a conv layer with the concept its thresholded activation maps overlap most (Bau et al.
    2017, *Network Dissection*).

    Parameters
    ----------
    data : ``hiddenwidgets.datasets.shapes(...)`` (its masks and concept names are used), a tuple
        ``(images, masks)`` of tensors, or a DataLoader / re-iterable of ``(images, masks, ...)`` batches, with
        masks (B, K, H, W) bool, one channel per name in ``concepts``. Without pixel masks: batches of images
        (or ``(images, labels)``) and ``image_concepts``.
    concepts : the names of the mask channels (taken from a ``Shapes`` data set).
    image_concepts : image-level concepts: a :class:`~hiddenwidgets.pipeline.concepts.ConceptStore` or a mapping
        name -> example indices (positions in the data's order); each covers the whole image of its examples.
    quantile : the activation quantile of the threshold (0.995 in the paper).
    units : unit indices, default all. ``inputs(batch)``, ``masks(batch)``: how to find them in a batch
        (default: first and second element).
    normalize, forward : as in :func:`~hiddenwidgets.analysis.featurevis.visualize`.
    progress : ``progress(done, total) -> bool | None`` after each batch of both passes (``total`` is twice the
        number of examples); returning False raises :class:`Cancelled`.
    """
    model = model_for_work(check_model(model))  # a copy of the weights while another thread trains it
    check_layer(model, layer)
    quantile = check_float(quantile, "quantile")
    if not 0 < quantile < 1:
        raise FeatureVisualizationError(f"quantile must be in (0, 1), e.g. 0.995 (the paper's); got {quantile}")
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    progress = check_progress(progress)
    norm = make_normalize(normalize)
    if hasattr(data, "batches") and hasattr(data, "masks") and concepts is None:
        concepts = list(data.concepts)
    pixel_names = list(concepts) if concepts is not None else []
    if len(set(pixel_names)) != len(pixel_names):
        raise FeatureVisualizationError("concepts lists a name more than once")
    if not pixel_names and image_concepts is None:
        raise FeatureVisualizationError("no concepts: pass concepts= (the names of the mask channels) with masks in "
                                        "the data, and/or image_concepts= (a ConceptStore or name -> indices)")
    fresh = _passes(data, batch_size)
    device, dtype = model_device(model), model_dtype(model)
    captured: dict[str, torch.Tensor] = {}
    taps = Taps(model, {layer: selector}, lambda name, t: captured.__setitem__(name, t))
    if stop_early:
        taps.stop_after = frozenset([layer])

    def batches() -> Iterable[tuple[torch.Tensor, torch.Tensor | None]]:
        for batch in fresh():
            x = batch_inputs(batch, inputs)
            m = None
            if pixel_names:
                if masks is not None:
                    m = masks(batch)
                elif isinstance(batch, (tuple, list)) and len(batch) > 1:
                    m = batch[1]
                if not isinstance(m, torch.Tensor):
                    raise FeatureVisualizationError("concepts= names mask channels, but the batches hold no mask "
                                                    "tensor; yield (images, masks) batches or pass masks=")
                if m.ndim != 4 or m.shape[0] != len(x) or m.shape[1] != len(pixel_names):
                    raise FeatureVisualizationError(f"masks must be (batch, {len(pixel_names)} concepts, H, W) to "
                                                    f"match {len(x)} images and concepts={pixel_names[:6]}...; got "
                                                    f"{tuple(m.shape)}")
            yield x, m

    def activations(x: torch.Tensor) -> torch.Tensor:
        x = x.to(device, dtype) if x.is_floating_point() else x.to(device)
        taps.forward(model, norm(x) if norm else x, forward)
        a = captured.pop(layer)
        if a.ndim != 4:
            raise FeatureVisualizationError(f"layer {layer!r} gives {tuple(a.shape)}; dissection needs a conv layer "
                                            "(N, C, H, W) whose maps can be compared with masks. For vector layers "
                                            "use probes or TCAV")
        return a

    n_total = _count(data)
    if n_total is None:
        n_total = sum(len(x) for x, _ in batches())
    state: dict[str, Any] = {}
    done = 0

    def tick(k: int) -> None:
        nonlocal done
        done += k
        if progress is not None and progress(done, 2 * n_total) is False:
            raise Cancelled(f"dissection of {layer!r} cancelled after {done} of {2 * n_total} example passes")

    with evaluation_mode(model), taps, torch.no_grad():
        # pass 1: each unit's m largest activations, m = ceil((1 - q) N h w)
        seen = 0
        for x, _ in batches():
            a = activations(x)
            if not state:
                unit_list = check_units(units, a.shape[1], layer)
                m = max(1, math.ceil((1 - Fraction(repr(quantile))) * n_total * a.shape[2] * a.shape[3]))
                if m * len(unit_list) > MAX_BUFFER:
                    raise FeatureVisualizationError(
                        f"the exact thresholds need the top {m} activations of each of {len(unit_list)} units "
                        f"({m * len(unit_list):,} values, more than {MAX_BUFFER:,}); dissect fewer units at a time "
                        "(units=...), or fewer examples")
                state = {"units": unit_list, "index": torch.tensor(unit_list, device=a.device), "m": m,
                         "top": torch.empty((len(unit_list), 0), dtype=a.dtype, device=a.device)}
            vals = a[:, state["index"]].transpose(0, 1).reshape(len(state["units"]), -1)
            both = torch.cat([state["top"], vals], dim=1)
            state["top"] = both.topk(min(state["m"], both.shape[1]), dim=1, sorted=False).values
            seen += len(a)
            tick(len(a))
        if not state:
            raise FeatureVisualizationError("the data yielded no examples")
        if seen != n_total:
            raise FeatureVisualizationError(f"the data has {n_total} examples by its length but yielded {seen}")
        if state["top"].shape[1] < state["m"]:
            raise FeatureVisualizationError("fewer activation values than the threshold needs")
        thresholds = state["top"].min(dim=1).values  # the m-th largest
        img_names: list[str] = []
        img_labels = None
        if image_concepts is not None:
            img_names, img_labels = _image_labels(image_concepts, n_total)
        overlap = set(img_names) & set(pixel_names)
        if overlap:
            raise FeatureVisualizationError(f"concept(s) {sorted(overlap)} are both pixel and image-level concepts; "
                                            "rename one")
        u, kp, ki = len(state["units"]), len(pixel_names), len(img_names)
        inter = torch.zeros((u, kp + ki), dtype=torch.float64)
        unit_area = torch.zeros(u, dtype=torch.float64)
        concept_area = torch.zeros(kp + ki, dtype=torch.float64)
        t = thresholds[None, :, None, None]
        # pass 2: intersections and areas
        start = 0
        for x, lm in batches():
            a = activations(x)[:, state["index"]]
            size = tuple(lm.shape[2:]) if lm is not None else tuple(x.shape[2:])
            pixels = size[0] * size[1]
            sub = max(1, 16_000_000 // max(1, u * pixels))
            for s in range(0, len(a), sub):
                up = F.interpolate(a[s:s + sub], size=size, mode="bilinear", align_corners=False)
                mu = (up >= t).reshape(len(up), u, -1).to(torch.float32)
                per_image = mu.sum(dim=2)  # (b, U)
                unit_area += per_image.sum(0).double().cpu()
                if kp:
                    lab = lm[s:s + sub].to(mu.device).reshape(len(up), kp, -1).to(torch.float32)
                    inter[:, :kp] += torch.einsum("bup,bkp->uk", mu, lab).double().cpu()
                    concept_area[:kp] += lab.sum(dim=(0, 2)).double().cpu()
                if ki:
                    li = img_labels[start + s:start + s + len(up)].to(mu.device, torch.float32)  # type: ignore[index]
                    inter[:, kp:] += (per_image.T @ li).double().cpu()
                    concept_area[kp:] += li.sum(0).double().cpu() * pixels
            start += len(a)
            tick(len(a))
    union = unit_area[:, None] + concept_area[None, :] - inter
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter))
    return Dissection(layer=layer, units=state["units"], concepts=pixel_names + img_names, iou=iou,
                      thresholds=thresholds.to("cpu", torch.float64), quantile=quantile, n_examples=n_total)
