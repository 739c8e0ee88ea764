from __future__ import annotations

import torch

from ._cam import CAM


def plus_plus_weights(acts: torch.Tensor, d1: torch.Tensor, d2: torch.Tensor, d3: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ channel weights from the first, second and third derivative terms (exponential score):
    alpha_ij = D2 / (2 D2 + sum_ab A_ab D3), w_k = sum_ij alpha_ij ReLU(D1_ij). Tensors are (N, K, *positions)."""
    positions = tuple(range(2, acts.ndim))
    denom = 2 * d2 + acts.sum(dim=positions, keepdim=True) * d3
    alpha = torch.where(denom != 0, d2 / torch.where(denom != 0, denom, torch.ones_like(denom)), 0.0)
    return (alpha * torch.relu(d1)).sum(dim=positions)


class GradCAMPlusPlus(CAM):
    """Grad-CAM++ (Chattopadhay et al. 2018), with the exponential score so that higher derivatives are powers of
    the first: D2 = g^2, D3 = g^3."""

    name = "grad_cam_plus_plus"
    label = "Grad-CAM++"
    paper = "Chattopadhay et al. 2018, Grad-CAM++: Improved Visual Explanations for Deep Convolutional Networks"

    def channel_weights(self, acts, grads, **context):
        return plus_plus_weights(acts, grads, grads**2, grads**3)
