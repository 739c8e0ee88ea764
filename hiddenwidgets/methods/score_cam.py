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

    Masked inputs are evaluated ``batch_size`` at a time, across channels *and* images (the n × k masked inputs
    of n images and k channels form one sequence). By default the batch is chosen from the sizes of one input and
    of its activation at the layer: about ``BATCH_ELEMENTS`` of those values per forward pass (a batch whose
    activations stay in the CPU's caches; larger ones ran up to 2x slower), fewer when a GPU has less free memory.
    ``progress(done, total)`` is called after each batch (return False from it to cancel: a ``RuntimeError`` is
    raised).
    """

    name = "score_cam"
    label = "Score-CAM"
    paper = "Wang et al. 2020, Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural Networks"
    uses_gradients = False
    gradient_based = False
    float_inputs = True  # multiplies the inputs by masks
    own_options: ClassVar[dict[str, Any]] = {"batch_size": None, "progress": None}
    BATCH_ELEMENTS = 3 * 2**20  # input and layer values per forward pass (see batch_for)
    CPU_BATCH = 32  # at most this many masked inputs per pass on a CPU (see batch_for)

    def weighted(self, acts, grads, *, call, inputs, targets, layout, batch_size, progress, **context):
        x = inputs[0]
        if len(inputs) != 1 or x.ndim != 4 or len(layout.grid) != 2:
            raise AttributionError(f"Score-CAM masks an image with the layer's upsampled channels: it needs one "
                                   f"(N, C, H, W) input and a layer with a 2-d grid; got inputs "
                                   f"{[tuple(t.shape) for t in inputs]} and a {layout.grid} grid")
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                       or batch_size < 1):
            raise AttributionError(f"batch_size must be a positive integer (masked inputs per forward pass) or None "
                                   f"(chosen from the input size); got {batch_size!r}")
        n, k = acts.shape[:2]
        total = n * k
        batch = batch_size or self.batch_for(x, acts, total)
        classes = targets.indices is not None

        with torch.no_grad():
            masks = F.interpolate(acts.reshape(n, k, *layout.grid), size=x.shape[2:], mode="bilinear",
                                  align_corners=False)
            lo = masks.amin(dim=(2, 3), keepdim=True)
            hi = masks.amax(dim=(2, 3), keepdim=True)
            masks = torch.where(hi > lo, (masks - lo) / (hi - lo).clamp(min=1e-12), torch.zeros_like(masks))
            masks = masks.reshape(total, 1, *x.shape[2:])
            base_logits = call.logits_of((torch.zeros_like(x),))
            if classes:
                wanted = targets.indices.to(acts.device)
                base = F.softmax(base_logits, dim=1).gather(1, wanted[:, None])[:, 0]
            else:
                base = torch.stack([targets.row(i).scores(base_logits[i : i + 1])[0] for i in range(n)])
            image_of = torch.arange(n, device=x.device).repeat_interleave(k)  # masked input j is of image j // k
            scores = torch.empty(total, device=acts.device)
            for start in range(0, total, batch):
                stop = min(start + batch, total)
                images = image_of[start:stop]
                logits = call.logits_of((x[images].mul_(masks[start:stop]),), call.rows(images.cpu(), n))
                if classes:
                    got = F.softmax(logits, dim=1).gather(1, wanted[images][:, None])[:, 0]
                else:  # a callable target scores the rows of one image at a time
                    got = torch.cat([targets.row(i).scores(logits[a - start : b - start])
                                     for i, a, b in _runs(start, stop, k)])
                scores[start:stop] = got - base.to(got.device)[images.to(got.device)]
                if progress is not None and progress(stop, total) is False:
                    raise RuntimeError("Score-CAM cancelled")
        weights = F.softmax(scores.reshape(n, k), dim=1)
        return weights[:, :, None] * acts

    @classmethod
    def batch_for(cls, x: torch.Tensor, acts: torch.Tensor, total: int) -> int:
        """Masked inputs per forward pass: ``BATCH_ELEMENTS`` over the values of one input and its activation at
        the layer (a stand-in for the network's activations, which are not known in advance), at most
        ``CPU_BATCH`` on a CPU, and on a GPU at most what fits in 1/16 of its free memory. On one CPU thread, the
        CNN of benchmarks/attribution.py took 0.27 / 0.21 / 0.20 / 0.19 s for 4 images at batches 64 / 8 / 16 / 32
        of 1x28x28 inputs, and 0.64 / 0.67 / 1.05 / 1.54 s at 8 / 16 / 32 / 64 of 3x224x224 (the default picks 32
        and 8)."""
        per_input = max(1, x[0].numel() + acts[0].numel())
        batch = cls.BATCH_ELEMENTS // per_input
        if x.device.type != "cuda":
            batch = min(batch, cls.CPU_BATCH)
        else:
            free, _ = torch.cuda.mem_get_info(x.device)
            batch = min(max(batch, 64), free // 16 // (per_input * x.element_size()))
        return int(max(1, min(batch, total)))


def _runs(start: int, stop: int, k: int):
    """``(image, first, end)`` for the masked inputs ``start..stop`` (k per image), split where the image changes."""
    a = start
    while a < stop:
        i = a // k
        b = min(stop, (i + 1) * k)
        yield i, a, b
        a = b
