from __future__ import annotations

from ._cam import CAM


class HiResCAM(CAM):
    """HiResCAM (Draelos & Carin 2020): map = sum_k (d y^c / d A^k) * A^k, element-wise (no spatial averaging)."""

    name = "hires_cam"
    label = "HiResCAM"
    paper = "Draelos & Carin 2020, Use HiResCAM instead of Grad-CAM for faithful explanations of CNNs"

    def weighted(self, acts, grads, **context):
        return grads * acts
