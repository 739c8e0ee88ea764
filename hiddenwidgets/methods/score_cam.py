from __future__ import annotations

import torch
import torch.nn.functional as F

from ._cam import CAM


class ScoreCAM(CAM):
    """Score-CAM (Wang et al. 2020): each channel, upsampled and scaled to [0, 1], masks the input; its weight is the
    softmax over channels of the increase in the target's probability over a zero input. No gradients.

    ``batch_size`` masked inputs are evaluated at a time; ``progress(done, total)`` is called after each batch
    (return False from it to cancel: a ``RuntimeError`` is raised).
    """

    name = "score_cam"
    label = "Score-CAM"
    paper = "Wang et al. 2020, Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural Networks"
    uses_gradients = False
    gradient_based = False

    def combine(self, acts, grads, *, model, inputs, targets, batch_size: int = 64, progress=None, **context):
        n, k = acts.shape[:2]
        size = inputs.shape[2:]
        with torch.no_grad():
            masks = F.interpolate(acts, size=size, mode="bilinear", align_corners=False)
            lo = masks.amin(dim=(2, 3), keepdim=True)
            hi = masks.amax(dim=(2, 3), keepdim=True)
            masks = torch.where(hi > lo, (masks - lo) / (hi - lo).clamp(min=1e-12), torch.zeros_like(masks))
            base = F.softmax(model(torch.zeros_like(inputs)), dim=1).gather(1, targets.view(-1, 1))  # (N, 1)
            scores = torch.empty(n, k, device=acts.device)
            for i in range(n):
                for start in range(0, k, batch_size):
                    m = masks[i, start : start + batch_size].unsqueeze(1)  # (b, 1, H, W)
                    probs = F.softmax(model(inputs[i : i + 1] * m), dim=1)[:, targets[i]]
                    scores[i, start : start + batch_size] = probs - base[i]
                    if progress is not None and progress(i * k + start + m.shape[0], n * k) is False:
                        raise RuntimeError("Score-CAM cancelled")
        weights = F.softmax(scores, dim=1)
        return torch.einsum("nk,nkhw->nhw", weights, acts)
