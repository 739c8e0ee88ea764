from __future__ import annotations

from typing import Any, ClassVar

import torch

from ._cam import CAM, layer_gradients
from .base import AttributionError
from .grad_cam_plus_plus import plus_plus_weights


class SmoothGradCAMPlusPlus(CAM):
    """Smooth Grad-CAM++ (Omeiza et al. 2019): the first, second and third derivative terms of Grad-CAM++ are each
    averaged over ``n_samples`` inputs with Gaussian noise of standard deviation ``stdev`` (times the input's
    range); the activations are the noise-free ones. ``n_samples=1, stdev=0`` reproduces Grad-CAM++ exactly."""

    name = "smooth_grad_cam_plus_plus"
    label = "Smooth Grad-CAM++"
    paper = "Omeiza et al. 2019, Smooth Grad-CAM++: An Enhanced Inference Level Visualization Technique"
    float_inputs = True  # adds noise to the inputs
    own_options: ClassVar[dict[str, Any]] = {"n_samples": 8, "stdev": 0.15, "seed": 0}

    def weighted(self, acts, grads, *, call, inputs, targets, layer, name, layout, n_samples, stdev, seed,
                 **context):
        if n_samples < 1:
            raise AttributionError(f"n_samples must be >= 1, got {n_samples}")
        gen = torch.Generator(device="cpu").manual_seed(seed)
        d1 = torch.zeros_like(acts)
        d2 = torch.zeros_like(acts)
        d3 = torch.zeros_like(acts)
        x = inputs[0]
        scale = stdev * (x.max() - x.min()).item()
        for _ in range(n_samples):
            noisy = (x + torch.randn(x.shape, generator=gen).to(x) * scale, *inputs[1:])
            g = layer_gradients(call, noisy, targets, layer, name, layout)
            d1 += g
            d2 += g**2
            d3 += g**3
        weights = plus_plus_weights(acts, d1 / n_samples, d2 / n_samples, d3 / n_samples)
        return weights[:, :, None] * acts
