"""Faithfulness metrics for attribution maps: deletion and insertion AUC (Petsiuk et al. 2018, RISE), Captum's
infidelity and sensitivity, and the model-parameter randomisation sanity check (Adebayo et al. 2018).

Pure functions over a model, inputs and maps; the model is evaluated in eval mode and left as it was. Models are
called as :func:`hiddenwidgets.attribute` calls them: ``additional_forward_args`` and ``forward_kwargs`` after the
inputs, logits read from ``output.logits`` or a tuple's first tensor.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._forward import ModelCall
from .base import AttributionError, evaluation_mode, resolve_targets

__all__ = ["deletion_insertion", "infidelity", "sanity_check", "sensitivity"]


def _pixel_order(maps: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """(N, H*W) pixel indices from most to least important. Maps shaped like the input are summed over channels."""
    if maps.ndim == inputs.ndim:
        maps = maps.sum(dim=1)
    if maps.shape[-2:] != inputs.shape[-2:]:
        maps = F.interpolate(maps.unsqueeze(1).float(), size=inputs.shape[-2:], mode="bilinear",
                             align_corners=False).squeeze(1)
    return maps.flatten(1).argsort(dim=1, descending=True)


def _blur(x: torch.Tensor, sigma: float = 5.0) -> torch.Tensor:
    radius = max(1, int(3 * sigma))
    k = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device) / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _call(model: nn.Module, additional_forward_args: Any, forward_kwargs: dict[str, Any] | None) -> ModelCall:
    args = () if additional_forward_args is None else (
        tuple(additional_forward_args) if isinstance(additional_forward_args, (tuple, list))
        else (additional_forward_args,))
    return ModelCall(model, 1, args, forward_kwargs)


def deletion_insertion(model: nn.Module, inputs: torch.Tensor, maps: torch.Tensor, target: Any = "predicted", *,
                       steps: int = 32, blur_sigma: float = 5.0, batch_size: int = 64,
                       additional_forward_args: Any = None, forward_kwargs: dict[str, Any] | None = None
                       ) -> dict[str, torch.Tensor]:
    """Deletion and insertion AUC per input, as defined for RISE (Petsiuk et al. 2018).

    Pixels are taken in order of decreasing attribution, ``H*W / steps`` at a time. *Deletion* sets them to zero,
    starting from the input; *insertion* copies them from the input into a blurred copy of it (Gaussian,
    ``blur_sigma`` pixels). The curve is the softmax probability of the target after each step (``steps + 1``
    points, the fraction of pixels from 0 to 1); its area is taken with the trapezoid rule. Low deletion and high
    insertion AUC mean a faithful map. Returns ``{"deletion": (N,), "insertion": (N,), "deletion_curve": (N,
    steps+1), "insertion_curve": ...}``.
    """
    if inputs.ndim != 4:
        raise AttributionError(f"deletion/insertion need images (N, C, H, W); got shape {tuple(inputs.shape)}")
    n, _, h, w = inputs.shape
    order = _pixel_order(maps, inputs)
    counts = torch.linspace(0, h * w, steps + 1).round().long()
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(h * w, device=order.device).expand(n, -1))  # rank of each pixel
    call = _call(model, additional_forward_args, forward_kwargs)
    with evaluation_mode(model), torch.no_grad():
        logits = call.logits_of((inputs,))
        targets = resolve_targets(target, *logits.shape, logits)
        blurred = _blur(inputs, blur_sigma)
        curves = {}
        for name, start, source in (("deletion", inputs, torch.zeros_like(inputs)), ("insertion", blurred, inputs)):
            probs = torch.empty(n, steps + 1, device=inputs.device)
            for i in range(n):
                # step s replaces the pixels of rank < counts[s]: (steps + 1, 1, H, W) masks, evaluated in batches
                masks = (ranks[i].view(1, 1, h, w) < counts.view(-1, 1, 1, 1).to(ranks.device)).to(inputs.dtype)
                for b in range(0, steps + 1, batch_size):
                    m = masks[b : b + batch_size]
                    batch = start[i : i + 1] * (1 - m) + source[i : i + 1] * m
                    rows = torch.full((len(batch),), i, dtype=torch.long)
                    logits = call.logits_of((batch,), call.rows(rows, n))
                    probs[i, b : b + batch_size] = F.softmax(logits, dim=1)[:, targets[i]]
            curves[name] = probs
    x = counts.to(torch.float32) / (h * w)
    return {"deletion": torch.trapezoid(curves["deletion"], x.to(curves["deletion"].device), dim=1),
            "insertion": torch.trapezoid(curves["insertion"], x.to(curves["insertion"].device), dim=1),
            "deletion_curve": curves["deletion"], "insertion_curve": curves["insertion"]}


def infidelity(model: nn.Module, inputs: torch.Tensor, attributions: torch.Tensor, target: Any = "predicted", *,
               noise: float = 0.1, n_perturb_samples: int = 10, seed: int = 0, additional_forward_args: Any = None,
               forward_kwargs: dict[str, Any] | None = None) -> torch.Tensor:
    """Captum's ``infidelity`` (Yeh et al. 2019) with Gaussian perturbations of standard deviation ``noise``."""
    from captum.metrics import infidelity as captum_infidelity

    gen = torch.Generator(device="cpu").manual_seed(seed)

    def perturb(x: torch.Tensor):
        eps = torch.randn(x.shape, generator=gen).to(x) * noise
        return eps, x - eps

    call = _call(model, additional_forward_args, forward_kwargs)
    with evaluation_mode(model):
        logits = call.logits_of((inputs,)).detach()
        targets = resolve_targets(target, *logits.shape, logits)
        return captum_infidelity(call, perturb, inputs, attributions, additional_forward_args=call.extra or None,
                                 target=targets, n_perturb_samples=n_perturb_samples)


def sensitivity(model: nn.Module, inputs: torch.Tensor, method: str, target: Any = "predicted", *,
                layer: str | None = None, perturb_radius: float = 0.02, n_perturb_samples: int = 5,
                **options: Any) -> torch.Tensor:
    """Captum's ``sensitivity_max`` (Yeh et al. 2019): the largest change of the explanation under input
    perturbations of radius ``perturb_radius``."""
    from captum.metrics import sensitivity_max

    from . import attribute

    if options.get("additional_forward_args") is not None or options.get("forward_kwargs") is not None:
        raise AttributionError("sensitivity: Captum's sensitivity_max re-batches the inputs without the model's "
                               "other arguments; it supports models called on their inputs alone")
    call = _call(model, None, None)
    with evaluation_mode(model):
        logits = call.logits_of((inputs,)).detach()
        targets = resolve_targets(target, *logits.shape, logits)

        def explain(x: torch.Tensor | tuple, target: torch.Tensor) -> tuple[torch.Tensor]:
            x = x[0] if isinstance(x, tuple) else x  # Captum passes inputs as a tuple and wants one back
            return (attribute(model, x, method, target, layer=layer, **options),)

        return sensitivity_max(explain, inputs, target=targets, perturb_radius=perturb_radius,
                               n_perturb_samples=n_perturb_samples)


def _spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    ra = a.flatten(1).argsort(1).argsort(1).float()
    rb = b.flatten(1).argsort(1).argsort(1).float()
    ra = ra - ra.mean(1, keepdim=True)
    rb = rb - rb.mean(1, keepdim=True)
    return (ra * rb).sum(1) / (ra.norm(dim=1) * rb.norm(dim=1)).clamp(min=1e-12)


def sanity_check(model: nn.Module, inputs: torch.Tensor, explain: Callable[[nn.Module], torch.Tensor], *,
                 layers: list[str] | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """Model-parameter randomisation test (Adebayo et al. 2018, *Sanity Checks for Saliency Maps*).

    Re-initialises the layers with parameters from the top (output) down, cumulatively, on a copy of the model,
    and compares each map ``explain(copy)`` with the original ``explain(model)`` by Spearman rank correlation of
    absolute values (per input, averaged). A method whose maps stay similar while the model is destroyed does
    not explain the model. Returns one row per randomised layer: ``{"layer", "spearman"}``. ``model`` itself is
    never modified.
    """
    named = [(name, m) for name, m in model.named_modules() if name and any(True for _ in m.parameters(False))]
    if layers is not None:
        named = [(n, m) for n, m in named if n in layers]
    if not named:
        raise AttributionError("the model has no layers with parameters to randomise")
    reference = explain(model).abs()
    copy_model = copy.deepcopy(model)
    modules = dict(copy_model.named_modules())
    torch.manual_seed(seed)
    rows = []
    for name, _ in reversed(named):
        layer = modules[name]
        if hasattr(layer, "reset_parameters"):
            layer.reset_parameters()
        else:
            for p in layer.parameters(False):
                nn.init.normal_(p, std=0.02)
        rows.append({"layer": name, "spearman": float(_spearman(reference, explain(copy_model).abs()).mean())})
    return rows
