from __future__ import annotations

from ._cam import CAM


class GradCAM(CAM):
    """Grad-CAM (Selvaraju et al. 2017): w_k = mean over positions of d y^c / d A^k; map = ReLU(sum_k w_k A^k)."""

    name = "grad_cam"
    label = "Grad-CAM"
    paper = "Selvaraju et al. 2017, Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization"

    def channel_weights(self, acts, grads, **context):
        return grads.mean(dim=2)
