from __future__ import annotations

import torch

from ._cam import CAM


class EigenCAM(CAM):
    """Eigen-CAM (Muhammad & Yeasin 2020): the activations, centred over positions, projected on their first
    principal component (class-agnostic, no gradients).

    Sign convention: a principal component's sign is arbitrary; it is chosen so that the map correlates
    positively with the channel-summed activations (the map points where the layer is most active).
    """

    name = "eigen_cam"
    label = "Eigen-CAM"
    paper = "Muhammad & Yeasin 2020, Eigen-CAM: Class Activation Map using Principal Components"
    uses_gradients = False
    gradient_based = False

    def combine(self, acts, grads, **context):
        n, k, h, w = acts.shape
        flat = acts.reshape(n, k, h * w).transpose(1, 2)  # (N, positions, channels)
        centred = flat - flat.mean(dim=1, keepdim=True)
        _, _, vh = torch.linalg.svd(centred, full_matrices=False)
        proj = centred @ vh[:, 0, :].unsqueeze(-1)  # (N, positions, 1)
        total = flat.sum(dim=2, keepdim=True)
        corr = ((proj - proj.mean(1, keepdim=True)) * (total - total.mean(1, keepdim=True))).sum(dim=(1, 2))
        sign = torch.where(corr < 0, -1.0, 1.0).to(proj)
        return (proj.squeeze(-1) * sign[:, None]).reshape(n, h, w)
