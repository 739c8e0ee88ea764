"""The CAM family's shared pipeline: one forward and one backward for a whole batch, hooks removed in finally.

A method is a few lines overriding :meth:`CAM.channel_weights` (one weight per channel, e.g. Grad-CAM's mean
gradient) or :meth:`CAM.combine` (how weights, activations and gradients make the map).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .base import AttributionError, AttributionMethod


class CAM(AttributionMethod):
    family: ClassVar[str] = "cam"
    needs_layer: ClassVar[bool] = True
    layer_map: ClassVar[bool] = True
    uses_gradients: ClassVar[bool] = True

    def compute(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, layer: nn.Module | None,
                relu: bool = True, **options: Any) -> torch.Tensor:
        acts, grads = activations_and_gradients(model, inputs, targets, layer, backward=self.uses_gradients)
        cam = self.combine(acts, grads, model=model, inputs=inputs, targets=targets, layer=layer, **options)
        return F.relu(cam) if relu else cam

    def combine(self, acts: torch.Tensor, grads: torch.Tensor | None, **context: Any) -> torch.Tensor:
        """(N, K, h, w) activations and gradients -> (N, h, w) map. Default: sum_k w_k A^k."""
        weights = self.channel_weights(acts, grads, **context)  # (N, K)
        return torch.einsum("nk,nkhw->nhw", weights, acts)

    def channel_weights(self, acts: torch.Tensor, grads: torch.Tensor | None, **context: Any) -> torch.Tensor:
        raise NotImplementedError


def activations_and_gradients(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, layer: nn.Module,
                              backward: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The layer's output A (N, K, h, w) and d(score of each example's target)/dA, in one forward + backward."""
    store: dict[str, torch.Tensor] = {}

    def hook(module: nn.Module, args: Any, output: Any) -> None:
        out = output[0] if isinstance(output, (tuple, list)) else output
        if not isinstance(out, torch.Tensor):
            raise AttributionError(f"the layer returned {type(output).__name__}, not a tensor; choose a conv layer")
        store["acts"] = out

    handle = layer.register_forward_hook(hook)
    try:
        with torch.set_grad_enabled(backward):
            logits = model(inputs)
            if backward:
                if not logits.requires_grad:
                    raise AttributionError("the model's output does not depend differentiably on the layer (no "
                                           "gradient); use a perturbation method (score_cam, occlusion, "
                                           "feature_ablation, lime, kernel_shap) instead")
                score = logits.gather(1, targets.view(-1, 1)).sum()
                layer_grad = torch.autograd.grad(score, store["acts"], retain_graph=False, allow_unused=True)[0]
                if layer_grad is None:
                    raise AttributionError("the target score does not depend on the chosen layer; choose a layer "
                                           "the prediction is computed from")
                store["grads"] = layer_grad
    finally:
        handle.remove()
    acts = store.get("acts")
    if acts is None:
        raise AttributionError("the chosen layer did not run during the forward pass; choose a layer of this model")
    if acts.ndim != 4:
        raise AttributionError(f"CAM methods need a layer with (N, C, H, W) outputs (a conv layer); this layer "
                               f"gives shape {tuple(acts.shape)}")
    grads = store.get("grads")
    return acts.detach(), None if grads is None else grads.detach()
