"""Multifaceted feature visualisation, after Nguyen, Yosinski & Clune (2016), *Multifaceted Feature Visualization:
Uncovering the Different Types of Features Learned By Each Neuron in Deep Neural Networks*, ICML Visualization
workshop.

A unit often responds to several different things (a "facet" each). Given the unit's top examples:

1. Each example is described by a layer's channel means (``feature_layer``, by default the unit's own layer),
   projected on its first ``pca_dims`` principal components (the paper: PCA, then t-SNE to 2-D; t-SNE is left
   out here, so clusters are found in the PCA space).
2. k-means (k-means++ start, ``n_init`` restarts, this call's own generator) splits them into ``n_facets``
   clusters.
3. Each cluster's mean image starts one optimisation of the unit's objective plus a centre-bias term (the
   channel's activation under a Gaussian window at the centre of the map), all facets in one batch.

The result holds one image per facet beside its cluster's members.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ...pipeline.model_state import evaluation_mode, model_device, model_for_work
from ._common import (
    FeatureVisualizationError,
    Taps,
    check_float,
    check_int,
    check_layer,
    check_model,
    keyword_checked,
    make_normalize,
    model_dtype,
)
from .objectives import Objective, center_bias, channel, neuron
from .optimize import Progress, evaluate, visualize

__all__ = ["Facets", "facets", "kmeans"]


@dataclass(frozen=True, eq=False)
class Facets:
    """The result of :func:`facets`.

    ``images`` (F, C, H, W) float32 in [0, 1]: one optimised image per facet; ``values`` (F,): the unit's
    objective (without the centre bias) on each; ``means`` (F, C, H, W): each cluster's mean image (the start);
    ``labels`` (N,) int64: each example's facet; ``members``: per facet, example indices sorted by the unit's
    activation, highest first; ``activations`` (N,): the unit's objective on each example.
    """

    layer: str
    unit: int
    feature_layer: str
    images: torch.Tensor
    values: torch.Tensor
    means: torch.Tensor
    labels: torch.Tensor
    members: list[torch.Tensor]
    activations: torch.Tensor
    objective: str
    steps: int
    cancelled: bool

    def member_images(self, examples: torch.Tensor, facet: int, limit: int | None = None) -> torch.Tensor:
        """The examples of one facet (highest activation first), from the ``examples`` passed to :func:`facets`."""
        idx = self.members[check_int(facet, "facet", maximum=len(self.members) - 1)]
        return examples[idx[:limit] if limit is not None else idx]


def kmeans(x: torch.Tensor, k: int, *, generator: torch.Generator, n_init: int = 4, iterations: int = 100
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means (Lloyd's algorithm from k-means++ starts, Arthur & Vassilvitskii 2007) on the rows of ``x``
    (float64): (labels (N,), centres (k, D)) of the restart with the lowest within-cluster sum of squares."""
    n = len(x)
    best: tuple[float, torch.Tensor, torch.Tensor] | None = None
    for _ in range(n_init):
        first = int(torch.randint(n, (1,), generator=generator))
        centres = [x[first]]
        d2 = (x - x[first]).pow(2).sum(1)
        for _ in range(1, k):
            total = float(d2.sum())
            if total <= 0:
                nxt = int(torch.randint(n, (1,), generator=generator))
            else:
                nxt = int(torch.multinomial(d2 / total, 1, generator=generator))
            centres.append(x[nxt])
            d2 = torch.minimum(d2, (x - x[nxt]).pow(2).sum(1))
        c = torch.stack(centres)
        labels = torch.cdist(x, c).argmin(1)
        for _ in range(iterations):
            for j in range(k):
                if not (labels == j).any():  # an empty cluster takes the point farthest from its centre
                    far = int((x - c[labels]).pow(2).sum(1).argmax())
                    labels[far] = j
            c = torch.stack([x[labels == j].mean(0) for j in range(k)])
            new = torch.cdist(x, c).argmin(1)
            if torch.equal(new, labels):
                break
            labels = new
        inertia = float((x - c[labels]).pow(2).sum())
        if best is None or inertia < best[0]:
            best = (inertia, labels.clone(), c)
    assert best is not None
    return best[1], best[2]


def _layer_ndim(model: nn.Module, layer: str, selector: Any, x: torch.Tensor, norm: Any, forward: Any) -> int:
    seen: dict[str, torch.Tensor] = {}
    taps = Taps(model, {layer: selector}, lambda name, t: seen.__setitem__(name, t))
    taps.stop_after = frozenset([layer])
    with evaluation_mode(model), taps, torch.no_grad():
        taps.forward(model, norm(x) if norm else x, forward)
    return seen[layer].ndim


def _features(model: nn.Module, layer: str, x: torch.Tensor, norm: Any, forward: Any, batch_size: int = 256
              ) -> torch.Tensor:
    """Each example's channel (or feature) means in ``layer``, (N, D) float64."""
    rows: list[torch.Tensor] = []

    def keep(name: str, t: torch.Tensor) -> None:
        if t.ndim == 4:
            t = t.mean(dim=(2, 3))
        elif t.ndim == 3:
            t = t.mean(dim=1)
        rows.append(t.reshape(len(t), -1).to("cpu", torch.float64))

    taps = Taps(model, {layer: None}, keep)
    taps.stop_after = frozenset([layer])
    with evaluation_mode(model), taps, torch.no_grad():
        for s in range(0, len(x), batch_size):
            chunk = x[s:s + batch_size]
            taps.forward(model, norm(chunk) if norm else chunk, forward)
    return torch.cat(rows)


@keyword_checked
def facets(model: nn.Module, layer: str, unit: int, examples: torch.Tensor, *, n_facets: int = 4,
           feature_layer: str | None = None, objective: Objective | None = None, center_weight: float = 1.0,
           pca_dims: int = 50, steps: int = 128, lr: float = 0.05, param: str | None = None,
           decorrelate: Any = None, color_data: torch.Tensor | None = None, transforms: Any = "default",
           normalize: Any = None, forward: Callable[[nn.Module, torch.Tensor], Any] | None = None,
           selector: Any = None, seed: int = 0, n_init: int = 4, progress: Progress | None = None
           ) -> Facets:
    """One visualisation per facet of a unit (Nguyen et al. 2016, *Multifaceted Feature Visualization*).

    Parameters
    ----------
    layer, unit : the unit (a channel of a conv layer; a feature of a sequence or vector layer).
    examples : its top examples (N, C, H, W) in [0, 1], e.g. ``dataset_examples(..., k=64).images(unit)``.
    n_facets : clusters (facets); at most N.
    feature_layer : whose channel means describe an example for clustering (default ``layer``).
    objective : what each facet image maximises (default ``channel(layer, unit)`` for conv and sequence
        layers, ``neuron(layer, unit)`` for vectors), plus ``center_weight * center_bias(layer, unit)`` on conv
        layers.
    pca_dims, n_init : principal components kept before k-means; k-means restarts.
    steps, lr, param, decorrelate, color_data, transforms, normalize, forward, seed, progress : as in
        :func:`~hiddenwidgets.analysis.featurevis.visualize` (all facets are optimised in one batch).
    """
    model = model_for_work(check_model(model))  # a copy of the weights while another thread trains it
    check_layer(model, layer)
    feature_layer = layer if feature_layer is None else feature_layer
    check_layer(model, feature_layer)
    if not isinstance(examples, torch.Tensor) or examples.ndim != 4:
        shape = tuple(examples.shape) if isinstance(examples, torch.Tensor) else type(examples).__name__
        raise FeatureVisualizationError(f"examples must be images (N, C, H, W) in [0, 1]; got {shape}")
    n_facets = check_int(n_facets, "n_facets", minimum=1)
    if len(examples) < n_facets:
        raise FeatureVisualizationError(f"{len(examples)} examples cannot make {n_facets} facets; pass at least "
                                        f"{n_facets} examples (the paper clusters thousands of top examples)")
    center_weight = check_float(center_weight, "center_weight")
    pca_dims = check_int(pca_dims, "pca_dims", minimum=1)
    seed = check_int(seed, "seed")
    norm = make_normalize(normalize)
    device, dtype = model_device(model), model_dtype(model)
    x = examples.detach().to(device, dtype)

    ndim = _layer_ndim(model, layer, selector, x[:1], norm, forward)
    if objective is None:
        unit_objective = (channel(layer, unit, selector=selector) if ndim in (3, 4)
                          else neuron(layer, unit, selector=selector))
    elif isinstance(objective, Objective):
        unit_objective = objective
    else:
        raise FeatureVisualizationError(f"objective must be an Objective or None; got {type(objective).__name__}")
    full = unit_objective
    if ndim == 4 and center_weight != 0:
        full = unit_objective + center_weight * center_bias(layer, unit, selector=selector)

    activations = evaluate(model, unit_objective, examples, normalize=normalize, forward=forward)
    feats = _features(model, feature_layer, x, norm, forward)
    feats = feats - feats.mean(0)
    if feats.shape[1] > pca_dims:
        _, _, v = torch.linalg.svd(feats, full_matrices=False)
        feats = feats @ v[:pca_dims].T
    generator = torch.Generator().manual_seed(seed)
    labels, _ = kmeans(feats, n_facets, generator=generator, n_init=check_int(n_init, "n_init", minimum=1))
    # facets ordered by size, largest first
    sizes = torch.bincount(labels, minlength=n_facets)
    order = torch.argsort(-sizes, stable=True)
    relabel = torch.empty_like(order)
    relabel[order] = torch.arange(n_facets)
    labels = relabel[labels]
    members = []
    for f in range(n_facets):
        idx = torch.nonzero(labels == f).flatten()
        members.append(idx[torch.argsort(-activations[idx], stable=True)])
    ex = examples.detach().to("cpu", torch.float64)
    means = torch.stack([ex[m].mean(0) for m in members]).to(torch.float32)
    result = visualize(model, full, shape=tuple(examples.shape[1:]), batch=n_facets, init=means, steps=steps, lr=lr,
                       param=param, decorrelate=decorrelate, color_data=color_data, transforms=transforms,
                       normalize=normalize, forward=forward, seed=seed, progress=progress)
    values = evaluate(model, unit_objective, result.images, normalize=normalize, forward=forward)
    return Facets(layer=layer, unit=int(unit), feature_layer=feature_layer, images=result.images, values=values,
                  means=means, labels=labels, members=members, activations=activations, objective=repr(full),
                  steps=result.steps, cancelled=result.cancelled)

