from __future__ import annotations

from ._cam import CAM


class XGradCAM(CAM):
    """XGrad-CAM (Fu et al. 2020): w_k = sum_ij (A^k_ij / sum_ab A^k_ab) d y^c / d A^k_ij."""

    name = "xgrad_cam"
    label = "XGrad-CAM"
    paper = "Fu et al. 2020, Axiom-based Grad-CAM: Towards Accurate Visualization and Explanation of CNNs"

    def channel_weights(self, acts, grads, **context):
        total = acts.sum(dim=2, keepdim=True)
        share = acts / total.where(total != 0, total.new_ones(()))
        return (share * grads).sum(dim=2)
