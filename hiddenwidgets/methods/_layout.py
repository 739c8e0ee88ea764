"""How a layer's output is laid out: which dimension holds the channels (features) and which the positions a map
is drawn over. Decided from the layer and the output's shape, stated in :attr:`Layout.description`, and refused
with an :class:`AttributionError` when it cannot be decided.

Recognised, in this order:

- ``reshape_transform`` given: the user's function maps the output to (N, C, *positions) (pytorch-grad-cam's habit).
- (N, C, H, W): a conv-type layer (Conv2d, BatchNorm2d, 2-d pooling), or a 4-d output whose dims 2-3 fit the
  input image's aspect and dims 1-2 do not; PyTorch's default when both readings fit.
- (N, H, W, C) channels-last: a Linear or channels-last LayerNorm acting on the last dim, or a 4-d output whose
  dims 1-2 fit the image and dims 2-3 do not (Swin / ConvNeXt stages in timm).
- (N, L, D) tokens with an image input: on the (h, w) grid the layer was given (Hugging Face Swin layers take
  ``input_dimensions``), or on the input's patch grid: L = h·w (no class token) or 1 + h·w (ViT's class token
  first, left out of the map), with (h, w) = (ceil(H/s), ceil(W/s)) for one stride s.
- (N, T, D) per-position vectors of a (N, T) input (token ids) or a (N, T, F) sequence: the positions are the T
  tokens.
- (N, C, L) of a 1-d conv-type layer.
- (N, D) features: no positions (per-unit attributions only with ``raw=True``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .base import AttributionError

__all__ = ["Layout", "detect_layout", "layer_output"]

CONV2D = (nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d, nn.InstanceNorm2d, nn.MaxPool2d, nn.AvgPool2d,
          nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Dropout2d, nn.LPPool2d)
CONV1D = (nn.Conv1d, nn.ConvTranspose1d, nn.InstanceNorm1d, nn.MaxPool1d, nn.AvgPool1d, nn.AdaptiveAvgPool1d,
          nn.AdaptiveMaxPool1d, nn.Dropout1d, nn.LPPool1d)

HINT = ("pass reshape_transform=f mapping it to (N, C, h, w), e.g. for two prefix tokens before a 14 x 14 grid: "
        "reshape_transform=lambda t: t[:, 2:].reshape(t.shape[0], 14, 14, -1).permute(0, 3, 1, 2)")


@dataclass
class Layout:
    """How to read a layer's output: ``kind``, the positions' ``grid`` shape, ``prefix`` tokens before the grid
    (left out of maps), and a sentence saying what was decided and why."""

    kind: str  # "conv", "channels_last", "tokens", "sequence", "conv1d", "features", "transform"
    description: str
    grid: tuple[int, ...]
    prefix: int = 0
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None

    def to_channels(self, t: torch.Tensor) -> torch.Tensor:
        """A tensor shaped like the layer's output -> (N, K, *grid): channels (features) first, then positions."""
        n = t.shape[0]
        if self.kind == "transform":
            return self.transform(t)
        if self.kind in ("conv", "conv1d"):
            return t
        if self.kind == "channels_last":
            return t.permute(0, 3, 1, 2)
        if self.kind == "tokens":
            return t[:, self.prefix :].reshape(n, *self.grid, t.shape[-1]).permute(0, 3, 1, 2)
        if self.kind == "sequence":
            return t.transpose(1, 2)
        if self.kind == "features":
            return t.unsqueeze(-1)
        raise AssertionError(self.kind)

    def prefix_part(self, t: torch.Tensor) -> torch.Tensor | None:
        """The (N,) sum over the prefix tokens' values (what a map leaves out), or None without prefix tokens."""
        return t[:, : self.prefix].flatten(1).sum(1) if self.kind == "tokens" and self.prefix else None


def layer_output(output: Any, name: str) -> torch.Tensor:
    """The tensor a layer's output stands for: itself, or the first element of a tuple (Hugging Face blocks return
    (hidden_states, attention_weights))."""
    if isinstance(output, nn.utils.rnn.PackedSequence) or (
            isinstance(output, tuple) and output and isinstance(output[0], nn.utils.rnn.PackedSequence)):
        raise AttributionError(f"layer {name!r} returns a PackedSequence: its rows are packed time steps of all the "
                               "inputs, not one per input; choose a layer before the packing (e.g. the embedding)")
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise AttributionError(f"layer {name!r} returns {type(output).__name__}, not a tensor (nor a tuple starting "
                           "with one); choose one of its sublayers")


def _image(inputs: Sequence[torch.Tensor]) -> tuple[int, int] | None:
    x = inputs[0]
    return (x.shape[2], x.shape[3]) if x.ndim == 4 else None


def _fits(h: int, w: int, image: tuple[int, int]) -> bool:
    """(h, w) could be positions on the image: no larger (padding aside), and about the same stride along both
    axes."""
    big_h, big_w = image
    if not (1 <= h <= big_h + 2 and 1 <= w <= big_w + 2):
        return False
    sh, sw = big_h / h, big_w / w
    return max(sh, sw) / min(sh, sw) <= 1.5


def patch_grids(image: tuple[int, int], count: int) -> set[tuple[int, int, int]]:
    """Every (h, w, stride) with (h, w) = (ceil(H/s), ceil(W/s)) and h·w = ``count``."""
    big_h, big_w = image
    found = set()
    for s in range(1, max(big_h, big_w) + 1):
        h, w = math.ceil(big_h / s), math.ceil(big_w / s)
        if h * w == count:
            found.add((h, w, s))
        if h * w < count:
            break
    return found


def _given_grid(layer: nn.Module, args: Sequence[Any], kwargs: dict[str, Any], count: int
                ) -> tuple[tuple[int, int], str] | None:
    """A (h, w) the layer was called with whose product is the token count (Hugging Face Swin passes
    ``input_dimensions``), or half of it for a layer that downsamples."""
    for value in [*args[1:], *kwargs.values()]:
        if isinstance(value, (tuple, list)) and len(value) == 2 and all(
                isinstance(v, int) or (isinstance(v, torch.Tensor) and v.numel() == 1) for v in value):
            h, w = (int(v) for v in value)
            if h * w == count:
                return (h, w), f"the ({h}, {w}) grid the layer was called with"
            if getattr(layer, "downsample", None) is not None and ((h + 1) // 2) * ((w + 1) // 2) == count:
                half = ((h + 1) // 2, (w + 1) // 2)
                return half, f"half the ({h}, {w}) grid the layer was called with (it downsamples)"
    return None


def _channels_last_module(layer: nn.Module, last: int) -> bool:
    if isinstance(layer, nn.Linear):
        return layer.out_features == last
    if isinstance(layer, nn.LayerNorm):
        return tuple(layer.normalized_shape) == (last,) and getattr(layer, "data_format", "channels_last") \
            == "channels_last"
    return False


def detect_layout(layer: nn.Module, name: str, out: torch.Tensor, args: Sequence[Any], kwargs: dict[str, Any],
                  inputs: Sequence[torch.Tensor],
                  reshape_transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Layout:
    """The :class:`Layout` of ``layer``'s output ``out`` (called with ``args``/``kwargs``) for the model's
    ``inputs``, or an :class:`AttributionError` naming the shape and what to pass instead."""
    shape = tuple(out.shape)
    n = shape[0]
    if reshape_transform is not None:
        try:
            r = reshape_transform(out.detach())
        except Exception as err:  # the user's function: say which call failed
            raise AttributionError(f"reshape_transform failed on layer {name!r}'s output {shape}: "
                                   f"{type(err).__name__}: {err}") from err
        if not isinstance(r, torch.Tensor) or r.ndim < 3 or r.shape[0] != n:
            got = tuple(r.shape) if isinstance(r, torch.Tensor) else type(r).__name__
            raise AttributionError(f"reshape_transform must map layer {name!r}'s output {shape} to (N, C, h, w) "
                                   f"with N = {n}; it returned {got}")
        return Layout("transform", f"{shape} -> {tuple(r.shape)} by reshape_transform (channels at dim 1)",
                      tuple(r.shape[2:]), transform=reshape_transform)
    image = _image(inputs)
    kind = type(layer).__name__
    if out.ndim == 4:
        _, d1, d2, d3 = shape
        if isinstance(layer, CONV2D) or (isinstance(layer, nn.LayerNorm) and getattr(layer, "data_format", "")
                                         == "channels_first" and tuple(layer.normalized_shape) == (d1,)):
            return Layout("conv", f"(N, C, H, W) = {shape}: {d1} channels on a {d2} x {d3} grid ({kind} output)",
                          (d2, d3))
        if _channels_last_module(layer, d3):
            return Layout("channels_last", f"(N, H, W, C) = {shape}: channels-last, {d3} channels on a {d1} x {d2} "
                          f"grid ({kind} acting on the last dim)", (d1, d2))
        if image is not None:
            conv, last = _fits(d2, d3, image), _fits(d1, d2, image)
            if last and not conv:
                return Layout("channels_last", f"(N, H, W, C) = {shape}: channels-last, {d3} channels on a "
                              f"{d1} x {d2} grid (dims 1-2 fit the {image[0]} x {image[1]} input, dims 2-3 do not)",
                              (d1, d2))
            if not conv and not last:
                raise AttributionError(f"cannot read layer {name!r}'s output {shape} as a map of the "
                                       f"{image[0]} x {image[1]} input: neither dims 2-3 (N, C, H, W) nor dims 1-2 "
                                       f"(N, H, W, C) fit it; {HINT}")
            why = "dims 2-3 fit the input" if not last else (
                "both (N, C, H, W) and (N, H, W, C) fit the input: read as PyTorch's (N, C, H, W); if it is "
                "channels-last, pass reshape_transform=lambda t: t.permute(0, 3, 1, 2)")
            return Layout("conv", f"(N, C, H, W) = {shape}: {d1} channels on a {d2} x {d3} grid ({why})", (d2, d3))
        return Layout("conv", f"(N, C, H, W) = {shape}: {d1} channels on a {d2} x {d3} grid (PyTorch's convention)",
                      (d2, d3))
    if out.ndim == 3:
        _, length, dim = shape
        if isinstance(layer, CONV1D):
            return Layout("conv1d", f"(N, C, L) = {shape}: {length} channels at {dim} positions ({kind} output)",
                          (dim,))
        if image is not None:
            given = _given_grid(layer, args, kwargs, length)
            if given is not None:
                (h, w), why = given
                return Layout("tokens", f"(N, L, D) = {shape}: {length} tokens on {why}, {dim} features each",
                              (h, w))
            plain = {(h, w, s, 0) for h, w, s in patch_grids(image, length)}
            cls = {(h, w, s, 1) for h, w, s in patch_grids(image, length - 1)} if length > 1 else set()
            grids = {(h, w, p) for h, w, _, p in plain | cls}
            if len(grids) == 1:
                h, w, p, s = next((h, w, p, s) for h, w, s, p in sorted(plain | cls))
                lead = "a class token, then " if p else ""
                left = "; the class token is left out of the map" if p else ""
                return Layout("tokens", f"(N, L, D) = {shape}: {lead}a {h} x {w} grid of patch tokens of the "
                              f"{image[0]} x {image[1]} input (stride {s}), {dim} features each{left}", (h, w), p)
            why = ("it is neither h·w nor 1 + h·w for a patch grid (ceil(H/s), ceil(W/s)) of the "
                   f"{image[0]} x {image[1]} input") if not grids else (
                f"it fits several token grids {sorted(grids)}")
            raise AttributionError(f"cannot read layer {name!r}'s output {shape} as tokens on the image: L = "
                                   f"{length}, and {why}; {HINT}")
        x = inputs[0]
        if x.ndim in (2, 3) and x.shape[1] == length:
            if x.ndim == 3 and any(isinstance(m, CONV1D) for m in layer.modules()):
                raise AttributionError(f"layer {name!r}'s output {shape} could be (N, T, D) per-position vectors or "
                                       f"(N, C, L) conv channels; {HINT}")
            return Layout("sequence", f"(N, T, D) = {shape}: one {dim}-vector per input position (T = {length} "
                          f"positions of the {tuple(x.shape)} input)", (length,))
        raise AttributionError(f"cannot read layer {name!r}'s output {shape} as a map of the {tuple(x.shape)} "
                               f"input: its dim 1 ({length}) is not the input's {x.shape[1] if x.ndim > 1 else '-'} "
                               f"positions; {HINT}")
    if out.ndim == 2:
        return Layout("features", f"(N, D) = {shape}: {shape[1]} features, no positions", ())
    raise AttributionError(f"cannot read layer {name!r}'s output {shape} as a map; {HINT}")
