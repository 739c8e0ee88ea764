"""Random transforms applied to the image before each forward pass, so that the optimised image has to activate
the unit under small shifts, zooms and rotations (transformation robustness, Olah et al. 2017, *Feature
Visualization*, Distill; Mordvintsev et al.'s DeepDream jitter).

Every transform takes (N, C, H, W) images and a ``torch.Generator`` (the optimisation's own, never the global
RNG) and draws one random value per step for the whole batch. :func:`apply_transforms` runs a list of them and
crops the result back to the original size around its centre, so the model always sees the size it takes.

:func:`default_transforms` scales with the image: below 64 px it uses only padding and integer jitter (exact pixel
shifts, no resampling, so small images are not blurred — Lucent's issue #10); from 64 px it adds small random
zooms and rotations, and from 128 px Lucid's ranges (zoom 0.9–1.1, rotation ±10°).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ._common import FeatureVisualizationError, check_float, check_int, keyword_checked

__all__ = ["Transform", "apply_transforms", "default_transforms", "jitter", "pad", "random_rotate", "random_scale"]


class Transform:
    """A named random transform ``(images, generator) -> images``; ``str(t)`` says what it does."""

    def __init__(self, name: str, fn: Callable[[torch.Tensor, torch.Generator], torch.Tensor], **params: Any):
        self.name = name
        self.fn = fn
        self.params = params

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.fn(x, generator)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{self.name}({args})"


def _choice(values: Sequence[float], generator: torch.Generator) -> float:
    i = int(torch.randint(len(values), (1,), generator=generator))
    return float(values[i])


@keyword_checked
def pad(width: int, *, mode: str = "constant", value: float = 0.5) -> Transform:
    """Pad every side by ``width`` pixels: ``mode="constant"`` with ``value`` (grey), or ``"reflect"``,
    ``"replicate"``. The pad keeps the image's edges from being special once it is shifted or rotated."""
    width = check_int(width, "width")
    if mode not in ("constant", "reflect", "replicate"):
        raise FeatureVisualizationError(f"mode must be 'constant', 'reflect' or 'replicate'; got {mode!r}")
    value = check_float(value, "value")

    def fn(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if width == 0:
            return x
        m = mode if mode == "constant" or width < min(x.shape[-2:]) else "replicate"
        return F.pad(x, (width,) * 4, mode=m, value=value) if m == "constant" else F.pad(x, (width,) * 4, mode=m)

    return Transform("pad", fn, width=width, mode=mode, value=value)


@keyword_checked
def jitter(pixels: int) -> Transform:
    """Shift the image by a random whole number of pixels in [-pixels, pixels] along each axis, filling by
    reflection: the size is kept, and pixels are copied, not resampled."""
    pixels = check_int(pixels, "pixels")

    def fn(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if pixels == 0:
            return x
        h, w = x.shape[-2:]
        dy, dx = (int(v) for v in torch.randint(0, 2 * pixels + 1, (2,), generator=generator))
        m = "reflect" if pixels < min(h, w) else "replicate"
        padded = F.pad(x, (pixels,) * 4, mode=m)
        return padded[..., dy:dy + h, dx:dx + w]

    return Transform("jitter", fn, pixels=pixels)


def _affine(x: torch.Tensor, theta: list[list[float]]) -> torch.Tensor:
    t = torch.tensor(theta, dtype=x.dtype, device=x.device).expand(x.shape[0], 2, 3)
    grid = F.affine_grid(t, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


@keyword_checked
def random_scale(scales: Sequence[float]) -> Transform:
    """Zoom about the centre by a factor drawn from ``scales`` (> 1 enlarges), size kept, bilinear."""
    values = [check_float(s, "scale", positive=True) for s in scales]
    if not values:
        raise FeatureVisualizationError("scales is empty; pass factors such as (0.95, 1.0, 1.05)")

    def fn(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        s = _choice(values, generator)
        return x if s == 1 else _affine(x, [[1 / s, 0, 0], [0, 1 / s, 0]])

    return Transform("random_scale", fn, scales=tuple(values))


@keyword_checked
def random_rotate(degrees: Sequence[float] | float) -> Transform:
    """Rotate about the centre by an angle drawn from ``degrees`` (a list of angles, or a number d for the whole
    degrees in [-d, d]), size kept, bilinear."""
    if isinstance(degrees, (int, float)):
        d = check_int(round(degrees), "degrees")
        values = [float(a) for a in range(-d, d + 1)]
    else:
        values = [check_float(a, "angle") for a in degrees]
    if not values:
        raise FeatureVisualizationError("degrees is empty; pass angles such as range(-10, 11)")

    def fn(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        a = math.radians(_choice(values, generator))
        if a == 0:
            return x
        h, w = x.shape[-2:]
        c, s = math.cos(a), math.sin(a)
        return _affine(x, [[c, -s * h / w, 0], [s * w / h, c, 0]])

    return Transform("random_rotate", fn, degrees=tuple(values))


def default_transforms(size: int) -> list[Transform]:
    """The transforms :func:`~hiddenwidgets.analysis.featurevis.visualize` uses for images whose smaller side is
    ``size`` pixels: ``pad(round(size / 14))`` and ``jitter(round(size / 16))`` (at least 1 each); from 64 px
    also ``random_scale`` over 0.95–1.05 and ``random_rotate(5)``; from 128 px zooms 0.9–1.1 and ±10°."""
    size = check_int(size, "size", minimum=2)
    out = [pad(max(1, round(size / 14))), jitter(max(1, round(size / 16)))]
    if size >= 128:
        out += [random_scale([1 + (i - 5) / 50 for i in range(11)]), random_rotate(10)]
    elif size >= 64:
        out += [random_scale([0.95, 0.975, 1.0, 1.025, 1.05]), random_rotate(5)]
    return out


def center_crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    if (h, w) == (height, width):
        return x
    if h < height or w < width:
        raise FeatureVisualizationError(f"the transforms made the images {h}×{w}, smaller than the {height}×{width} "
                                        "the model takes; use transforms that keep or grow the size")
    top, left = (h - height) // 2, (w - width) // 2
    return x[..., top:top + height, left:left + width]


def apply_transforms(transforms: Sequence[Callable[[torch.Tensor, torch.Generator], torch.Tensor]],
                     x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Apply ``transforms`` in order, then crop back to ``x``'s size around the centre."""
    h, w = x.shape[-2:]
    out = x
    for t in transforms:
        out = t(out, generator)
    return center_crop(out, h, w)
