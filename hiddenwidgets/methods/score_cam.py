from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ._cam import CAM
from .base import AttributionError


class ScoreCAM(CAM):
    """Score-CAM (Wang et al. 2020): each channel, upsampled and scaled to [0, 1], masks the input; its weight is the
    softmax over channels of the increase in the target's score over a zero input: the softmax probability of a
    target class, or what a callable target returns. No gradients.

    ``batch_size`` masked inputs are evaluated at a time; ``progress(done, total)`` is called after each batch
    (return False from it to cancel: a ``RuntimeError`` is raised).
    """

    name = "score_cam"
    label = "Score-CAM"
    paper = "Wang et al. 2020, Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural Networks"
    uses_gradients = False
    gradient_based = False
    float_inputs = True  # multiplies the inputs by masks
    own_options: ClassVar[dict[str, Any]] = {"batch_size": 64, "progress": None}

    def weighted(self, acts, grads, *, call, inputs, targets, layout, batch_size, progress, **context):
        x = inputs[0]
        if len(inputs) != 1 or x.ndim != 4 or len(layout.grid) != 2:
            raise AttributionError(f"Score-CAM masks an image with the layer's upsampled channels: it needs one "
                                   f"(N, C, H, W) input and a layer with a 2-d grid; got inputs "
                                   f"{[tuple(t.shape) for t in inputs]} and a {layout.grid} grid")
        n, k = acts.shape[:2]
        classes = targets.indices is not None

        def score(logits, i):
            return F.softmax(logits, dim=1)[:, targets.indices[i]] if classes else targets.row(i).scores(logits)

        with torch.no_grad():
            masks = F.interpolate(acts.reshape(n, k, *layout.grid), size=x.shape[2:], mode="bilinear",
                                  align_corners=False)
            lo = masks.amin(dim=(2, 3), keepdim=True)
            hi = masks.amax(dim=(2, 3), keepdim=True)
            masks = torch.where(hi > lo, (masks - lo) / (hi - lo).clamp(min=1e-12), torch.zeros_like(masks))
            base_logits = call.logits_of((torch.zeros_like(x),))
            scores = torch.empty(n, k, device=acts.device)
            for i in range(n):
                base = score(base_logits[i : i + 1], i)
                for start in range(0, k, batch_size):
                    m = masks[i, start : start + batch_size].unsqueeze(1)  # (b, 1, H, W)
                    rows = torch.full((m.shape[0],), i, dtype=torch.long)
                    logits = call.logits_of((x[i : i + 1] * m,), call.rows(rows, n))
                    scores[i, start : start + batch_size] = score(logits, i) - base
                    if progress is not None and progress(i * k + start + m.shape[0], n * k) is False:
                        raise RuntimeError("Score-CAM cancelled")
        weights = F.softmax(scores, dim=1)
        return weights[:, :, None] * acts
