"""Attribution methods: every Captum primary and layer method that applies to a classifier, and the CAM family
implemented here. One small class per method (CAMs: one file each), in one registry.

>>> hw.attribute(model, images, method="grad_cam_plus_plus", target=3, layer="features.4")
>>> hw.available_methods()
"""

from __future__ import annotations

import difflib
import weakref
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..pipeline.model_state import model_for_work, trained_elsewhere
from .base import AttributionError, AttributionMethod, evaluation_mode, resolve_targets
from .captum_methods import CAPTUM_METHODS
from .eigen_cam import EigenCAM
from .grad_cam import GradCAM
from .grad_cam_plus_plus import GradCAMPlusPlus
from .hires_cam import HiResCAM
from .layer_cam import LayerCAM
from .metrics import deletion_insertion, infidelity, sanity_check, sensitivity
from .score_cam import ScoreCAM
from .smooth_grad_cam_plus_plus import SmoothGradCAMPlusPlus
from .xgrad_cam import XGradCAM

__all__ = [
    "METHODS",
    "AttributionError",
    "attribute",
    "available_methods",
    "class_count",
    "conv_layers",
    "deletion_insertion",
    "infidelity",
    "probe",
    "sanity_check",
    "sensitivity",
]

CAM_METHODS = [GradCAM, GradCAMPlusPlus, SmoothGradCAMPlusPlus, EigenCAM, ScoreCAM, LayerCAM, XGradCAM, HiResCAM]
METHODS: dict[str, type[AttributionMethod]] = {m.name: m for m in [*CAPTUM_METHODS, *CAM_METHODS]}


def available_methods() -> list[dict[str, Any]]:
    """Every method: ``name``, ``label``, ``needs_layer``, ``paper``, ``family`` ("captum" or "cam")."""
    return [vars(m.info()) for m in METHODS.values()]


def conv_layers(model: nn.Module) -> list[str]:
    """Names of the modules with 4-D (conv-like) outputs a CAM can use, by type."""
    kinds = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.Sequential)
    return [name for name, m in model.named_modules()
            if name and isinstance(m, kinds) and any(isinstance(s, nn.Conv2d) for s in m.modules())]


def _layer(model: nn.Module, layer: str | nn.Module | None, method: type[AttributionMethod]) -> nn.Module | None:
    if not method.needs_layer:
        return None
    if layer is None:
        raise AttributionError(f"{method.label} needs a layer: pass layer=NAME, e.g. one of the conv-like layers "
                               f"{conv_layers(model)[-6:]}")
    if isinstance(layer, nn.Module):
        return layer
    modules = dict(model.named_modules())
    if layer not in modules:
        close = difflib.get_close_matches(layer, list(modules), n=4, cutoff=0.4)
        raise AttributionError(f"no layer named {layer!r}; closest: {close}; conv-like layers: "
                               f"{conv_layers(model)[-6:]}")
    return modules[layer]


def probe(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """The model's outputs for ``inputs`` (no grad), or an AttributionError saying what input it expects."""
    try:
        with torch.no_grad():
            return model(inputs)
    except RuntimeError as err:
        first = next((m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Conv1d, nn.Linear))), None)
        if isinstance(first, (nn.Conv1d, nn.Conv2d)):
            want = f"(N, {first.in_channels}, ...) for its first layer {type(first).__name__}"
        elif isinstance(first, nn.Linear):
            want = f"(N, {first.in_features}) features for its first layer Linear"
        else:
            want = "what its first layer takes"
        raise AttributionError(f"the model cannot take inputs of shape {tuple(inputs.shape)}: it expects {want} "
                               f"({err})") from err


# model -> {input shape without batch: number of classes}: the shape check and the class count need one forward
# per model and input shape, not one per call (a Saliency call is one forward and one backward: a probe would
# cost as much as the method)
_CHECKED: weakref.WeakKeyDictionary[nn.Module, dict[tuple, int]] = weakref.WeakKeyDictionary()


def class_count(model: nn.Module, inputs: torch.Tensor, need_logits: bool) -> tuple[int, torch.Tensor | None]:
    """(number of classes, logits if ``need_logits``), running the model only when the shape is new or the
    logits are needed."""
    key = (tuple(inputs.shape[1:]), inputs.dtype)
    known = _CHECKED.setdefault(model, {})
    if key in known and not need_logits:
        return known[key], None
    logits = probe(model, inputs)
    if logits.ndim != 2:
        raise AttributionError(f"attribution needs a classifier with (N, classes) outputs; got {tuple(logits.shape)}")
    known[key] = logits.shape[1]
    return logits.shape[1], logits


def attribute(model: nn.Module, inputs: torch.Tensor, method: str = "integrated_gradients",
              target: Any = "predicted", layer: str | nn.Module | None = None, raw: bool = False,
              **options: Any) -> torch.Tensor:
    """Attribute ``model``'s score for ``target`` to ``inputs`` with ``method`` (see :func:`available_methods`).

    Returns a tensor shaped like ``inputs`` for input methods; for CAMs and Captum's layer methods, an (N, H, W) map
    bilinearly upsampled to the input's size (``raw=True``: the layer's own (N, h, w) resolution). ``target`` is a
    class index, one per input, or ``"predicted"``. Options go to the method (Captum's keyword arguments for Captum
    methods). The model is evaluated in eval mode and every module's own mode, the parameters' ``requires_grad``
    and its hooks are as before afterwards.
    """
    if method not in METHODS:
        close = difflib.get_close_matches(method, list(METHODS), n=3, cutoff=0.5)
        raise AttributionError(f"unknown method {method!r}" + (f"; did you mean {close}?" if close else "")
                               + f" Available: {', '.join(METHODS)}")
    cls = METHODS[method]
    if not isinstance(inputs, torch.Tensor):
        raise AttributionError(f"inputs must be a tensor of shape (N, ...), got {type(inputs).__name__}")
    if isinstance(layer, nn.Module) and trained_elsewhere(model):
        layer = next(n for n, m in model.named_modules() if m is layer)  # the copy's module of the same name
    model = model_for_work(model)  # a copy of the weights while another thread trains the model
    module = _layer(model, layer, cls)
    with evaluation_mode(model):
        classes, logits = class_count(model, inputs, need_logits=isinstance(target, str))
        targets = resolve_targets(target, len(inputs), classes, logits, device=inputs.device)
        try:
            result = cls().compute(model, inputs, targets, module, **options)
        except RuntimeError as err:
            if cls.gradient_based and "does not require grad" in str(err):
                raise AttributionError(f"{cls.label} needs gradients, but the model's output does not depend "
                                       "differentiably on its input; use a perturbation method instead: occlusion, "
                                       "feature_ablation, shapley_value_sampling, lime, kernel_shap or score_cam"
                                       ) from err
            raise
    if cls.layer_map and not raw and inputs.ndim == 4 and result.ndim == 3:
        result = F.interpolate(result.unsqueeze(1), size=inputs.shape[2:], mode="bilinear",
                               align_corners=False).squeeze(1)
    return result.detach()
