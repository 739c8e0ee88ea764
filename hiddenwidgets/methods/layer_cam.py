from __future__ import annotations

import torch

from ._cam import CAM


class LayerCAM(CAM):
    """LayerCAM (Jiang et al. 2021): map = sum_k ReLU(d y^c / d A^k) * A^k, element-wise."""

    name = "layer_cam"
    label = "LayerCAM"
    paper = "Jiang et al. 2021, LayerCAM: Exploring Hierarchical Class Activation Maps for Localization"

    def weighted(self, acts, grads, **context):
        return torch.relu(grads) * acts
