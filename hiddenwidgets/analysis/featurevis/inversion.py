"""Inverting a layer's code, after Mahendran & Vedaldi (2015), *Understanding Deep Image Representations by
Inverting Them*, CVPR.

Given an example ``x0`` and a layer Φ, find the image ``x`` whose code is closest to ``Φ(x0)`` under natural-image
priors:

    minimise  ||Φ(x) - Φ(x0)||² / ||Φ(x0)||²  +  λ_α R_α(x)  +  λ_TV R_TV^β(x)

with ``R_α(x) = mean |(x - 0.5) / 0.5|^α`` (the α-norm prior, α = 6 in the paper, here on images in [0, 1]
centred on grey and scaled to [-1, 1]) and ``R_TV^β(x) = mean ((∂x)² + (∂y)²)^(β/2)`` (β = 2, the paper's choice
for its smoother images). One reconstruction per layer shows how much of the input each layer keeps; the
reconstructions of all layers are optimised together, one image each, in one batch.

Differences from the paper: the image is parameterised as ``sigmoid(z)`` (pixels stay in (0, 1), so the α-norm
acts inside the box rather than enforcing it) and optimised with Adam instead of momentum SGD; the losses are
means rather than sums, so λ does not depend on the image size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ...pipeline.model_state import evaluation_mode, model_device, model_for_work
from ._common import (
    INPUT,
    FeatureVisualizationError,
    Taps,
    check_float,
    check_layer,
    check_model,
    keyword_checked,
    make_normalize,
    model_dtype,
)
from .objectives import Objective, activation_distance, alpha_norm, total_variation
from .optimize import Progress, evaluate, visualize

__all__ = ["INPUT", "Inversion", "invert"]


@dataclass(frozen=True, eq=False)
class Inversion:
    """The result of :func:`invert`, one row per layer.

    ``images`` (L, C, H, W) float32 in [0, 1]: the reconstructions; ``code_error`` (L,): the relative distance
    ``||Φ(x) - Φ(x0)|| / ||Φ(x0)||`` of each reconstruction's code from the example's; ``pixel_error`` (L,):
    ``||x - x0|| / ||x0||`` in image space. ``example`` is x0.
    """

    layers: list[str]
    example: torch.Tensor
    images: torch.Tensor
    code_error: torch.Tensor
    pixel_error: torch.Tensor
    steps: int
    cancelled: bool

    def records(self) -> list[dict[str, Any]]:
        return [{"layer": name, "code_error": float(c), "pixel_error": float(p)}
                for name, c, p in zip(self.layers, self.code_error, self.pixel_error, strict=True)]


def _codes(model: nn.Module, x: torch.Tensor, layers: list[str], selectors: dict[str, Any], norm: Any,
           forward: Any) -> dict[str, torch.Tensor]:
    codes: dict[str, torch.Tensor] = {}
    named = [n for n in layers if n != INPUT]
    inp = norm(x) if norm else x
    if INPUT in layers:
        codes[INPUT] = inp[0].detach().clone()
    if named:
        taps = Taps(model, {n: selectors.get(n) for n in named},
                    lambda name, t: codes.__setitem__(name, t[0].detach().clone()))
        taps.stop_after = frozenset(named)
        with evaluation_mode(model), taps, torch.no_grad():
            taps.forward(model, inp, forward)
    return codes


@keyword_checked
def invert(model: nn.Module, example: torch.Tensor, layers: str | Sequence[str], *, steps: int = 256,
           lr: float = 0.05, tv_weight: float = 0.05, beta: float = 2.0, alpha_weight: float = 1e-3,
           alpha: float = 6.0, param: str = "pixel", decorrelate: Any = False, transforms: Any = None,
           normalize: Any = None, forward: Callable[[nn.Module, torch.Tensor], Any] | None = None,
           selectors: dict[str, Any] | None = None, seed: int = 0, progress: Progress | None = None) -> Inversion:
    """Reconstruct ``example`` from each layer's code (Mahendran & Vedaldi 2015, *Understanding Deep Image
    Representations by Inverting Them*).

    Parameters
    ----------
    example : one input (C, H, W) (or (1, C, H, W)) in [0, 1], before ``normalize``.
    layers : layer names; ``featurevis.INPUT`` is the model's input itself (its reconstruction is the example).
    tv_weight, beta : λ_TV and β of the total-variation prior.
    alpha_weight, alpha : λ_α and α of the α-norm prior.
    steps, lr, param, decorrelate, transforms, normalize, forward, seed, progress : as in
        :func:`~hiddenwidgets.analysis.featurevis.visualize` (defaults here: pixels, no decorrelation, no
        transforms, as in the paper).
    selectors : layer name -> selector, for layers returning tuples or dicts.
    """
    model = model_for_work(check_model(model))  # a copy of the weights while another thread trains it
    names = [layers] if isinstance(layers, str) else list(layers)
    if not names:
        raise FeatureVisualizationError("layers is empty; name at least one layer (or featurevis.INPUT)")
    if len(set(names)) != len(names):
        raise FeatureVisualizationError("layers lists a layer more than once")
    for n in names:
        if n != INPUT:
            check_layer(model, n)
    if not isinstance(example, torch.Tensor):
        raise FeatureVisualizationError(f"example must be a tensor (C, H, W); got {type(example).__name__}")
    x0 = example.detach()
    if x0.ndim >= 2 and x0.shape[0] == 1 and x0.ndim == 4:
        x0 = x0[0]
    if x0.ndim != 3:
        raise FeatureVisualizationError(f"example must be one image (C, H, W) in [0, 1]; got shape "
                                        f"{tuple(example.shape)}")
    if x0.min() < 0 or x0.max() > 1:
        raise FeatureVisualizationError("example must be in [0, 1] (before normalize); got values in "
                                        f"[{float(x0.min()):.3g}, {float(x0.max()):.3g}]")
    tv_weight = check_float(tv_weight, "tv_weight", minimum=0)
    alpha_weight = check_float(alpha_weight, "alpha_weight", minimum=0)
    selectors = dict(selectors or {})
    norm = make_normalize(normalize)
    device, dtype = model_device(model), model_dtype(model)
    x = x0[None].to(device, dtype)
    codes = _codes(model, x, names, selectors, norm, forward)

    match: Objective | None = None
    for i, n in enumerate(names):
        term = activation_distance(n, codes[n], selector=selectors.get(n), batch=i)
        match = term if match is None else match + term
    assert match is not None
    objective = -match
    if tv_weight:
        objective = objective - tv_weight * total_variation(beta=beta)
    if alpha_weight:
        objective = objective - (alpha_weight / 0.5 ** alpha) * alpha_norm(alpha=alpha)
    result = visualize(model, objective, shape=tuple(x0.shape), batch=len(names), steps=steps, lr=lr, param=param,
                       decorrelate=decorrelate, transforms=transforms, normalize=normalize, forward=forward,
                       seed=seed, progress=progress)
    distances = evaluate(model, match, result.images, normalize=normalize, forward=forward)
    code_error = distances.clamp(min=0).sqrt()
    ref = x0.to("cpu", torch.float64)
    diff = result.images.double() - ref[None]
    pixel_error = diff.reshape(len(names), -1).norm(dim=1) / ref.norm().clamp(min=1e-12)
    return Inversion(layers=names, example=x0.to("cpu", torch.float32), images=result.images, code_error=code_error,
                     pixel_error=pixel_error, steps=result.steps, cancelled=result.cancelled)
