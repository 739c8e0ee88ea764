from __future__ import annotations

import torch

from ._cam import CAM, activations_and_gradients
from .grad_cam_plus_plus import plus_plus_weights


class SmoothGradCAMPlusPlus(CAM):
    """Smooth Grad-CAM++ (Omeiza et al. 2019): the first, second and third derivative terms of Grad-CAM++ are each
    averaged over ``n_samples`` inputs with Gaussian noise of standard deviation ``stdev``; the activations are
    the noise-free ones. ``n_samples=1, stdev=0`` reproduces Grad-CAM++ exactly."""

    name = "smooth_grad_cam_plus_plus"
    label = "Smooth Grad-CAM++"
    paper = "Omeiza et al. 2019, Smooth Grad-CAM++: An Enhanced Inference Level Visualization Technique"

    def combine(self, acts, grads, *, model, inputs, targets, layer, n_samples: int = 8, stdev: float = 0.15,
                seed: int = 0, **context):
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        gen = torch.Generator(device="cpu").manual_seed(seed)
        d1 = torch.zeros_like(acts)
        d2 = torch.zeros_like(acts)
        d3 = torch.zeros_like(acts)
        scale = stdev * (inputs.max() - inputs.min()).item()
        for _ in range(n_samples):
            noise = torch.randn(inputs.shape, generator=gen).to(inputs) * scale
            _, g = activations_and_gradients(model, inputs + noise, targets, layer)
            d1 += g
            d2 += g**2
            d3 += g**3
        weights = plus_plus_weights(acts, d1 / n_samples, d2 / n_samples, d3 / n_samples)
        return torch.einsum("nk,nkhw->nhw", weights, acts)
