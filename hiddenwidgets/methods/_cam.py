"""The CAM family's shared pipeline: one forward and one backward for a whole batch and every chosen layer, hooks
removed in finally; each layer's output read through its :class:`~._layout.Layout` (conv maps, channels-last
maps, transformer tokens, per-token vectors, or the user's ``reshape_transform``).

A method is a few lines overriding :meth:`CAM.channel_weights` (one weight per channel, e.g. Grad-CAM's mean
gradient) or :meth:`CAM.weighted` (the weighted activations whose channel sum is the map). Activations and
gradients arrive as (N, K, P): K channels at P positions (the layout's grid, flattened).

Options every CAM takes: ``relu`` (default True), ``reshape_transform``, ``aug_smooth`` (pytorch-grad-cam's
test-time augmentation: the map averaged over horizontal flips and input scalings 0.9, 1, 1.1, each flipped back)
and, except Eigen-CAM, ``eigen_smooth`` (the weighted activations' first principal component instead of their
channel sum, sign chosen to correlate positively with the sum).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ._forward import ModelCall
from ._layout import Layout, detect_layout, layer_output
from .base import AttributionError, AttributionMethod, Computed, Request, Targets

AUGMENTATIONS = [(flip, scale) for flip in (False, True) for scale in (0.9, 1.0, 1.1)]


@dataclass
class Captured:
    """One layer's output in one forward pass, the arguments it was called with, and the score's gradient."""

    output: torch.Tensor
    args: tuple
    kwargs: dict
    calls: int = 1
    grad: torch.Tensor | None = None


def capture(call: ModelCall, inputs: tuple[torch.Tensor, ...], targets: Targets, layers: list[nn.Module],
            names: list[str], backward: bool = True, extra: tuple | None = None) -> list[Captured]:
    """Every layer's output for ``inputs`` and, with ``backward``, d(sum of the targets' scores)/d(output), in one
    forward and one backward pass."""
    store: list[Captured | None] = [None] * len(layers)

    def hook_for(i: int):
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            if store[i] is None:
                store[i] = Captured(layer_output(output, names[i]), args, kwargs)
            else:
                store[i].calls += 1
        return hook

    handles = [layer.register_forward_hook(hook_for(i), with_kwargs=True) for i, layer in enumerate(layers)]
    try:
        with torch.set_grad_enabled(backward):
            logits = call(*inputs, *(call.extra if extra is None else extra))
            missing = [names[i] for i, c in enumerate(store) if c is None]
            if missing:
                raise AttributionError(f"layer {missing[0]!r} did not run during the forward pass; choose a layer "
                                       "the model uses")
            if backward:
                scores = targets.scores(logits)
                check_scores(scores, len(inputs[0]))
                if not scores.requires_grad:
                    raise AttributionError("the model's output does not depend differentiably on the layer (no "
                                           "gradient); use a perturbation method (score_cam, occlusion, "
                                           "feature_ablation, lime, kernel_shap) instead")
                grads = torch.autograd.grad(scores.sum(), [c.output for c in store], allow_unused=True)
                for name, c, g in zip(names, store, grads, strict=True):
                    if g is None:
                        raise AttributionError(f"the target score does not depend on layer {name!r}; choose a layer "
                                               "the prediction is computed from")
                    c.grad = g.detach()
    finally:
        for h in handles:
            h.remove()
    for c in store:
        c.output = c.output.detach()
    return store


def check_scores(scores: Any, n: int) -> None:
    if not isinstance(scores, torch.Tensor) or tuple(scores.shape) != (n,):
        got = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise AttributionError(f"the target must give one score per input, shape ({n},); got {got}")


def first_component(weighted: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """(N, K, *positions) -> (N, *positions): the projection on the first principal component of the K-vectors at
    the positions, signed to correlate positively with ``reference`` (N, *positions)."""
    shape = reference.shape
    reference = reference.flatten(1)
    flat = weighted.flatten(2).transpose(1, 2)  # (N, positions, channels)
    centred = flat - flat.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    proj = (centred @ vh[:, 0, :].unsqueeze(-1)).squeeze(-1)  # (N, P)
    corr = ((proj - proj.mean(1, keepdim=True)) * (reference - reference.mean(1, keepdim=True))).sum(1)
    return (proj * torch.where(corr < 0, -1.0, 1.0).to(proj)[:, None]).reshape(shape)


class CAM(AttributionMethod):
    family: ClassVar[str] = "cam"
    needs_layer: ClassVar[bool] = True
    layer_map: ClassVar[bool] = True
    several_layers: ClassVar[bool] = True
    float_inputs: ClassVar[bool] = False  # gradients are taken at the layer: token ids are fine
    uses_gradients: ClassVar[bool] = True
    eigen_smooth: ClassVar[bool] = True  # accepts eigen_smooth=
    own_options: ClassVar[dict[str, Any]] = {}  # the method's own options and their defaults

    @classmethod
    def option_names(cls) -> set[str]:
        common = {"relu", "reshape_transform", "aug_smooth"} | ({"eigen_smooth"} if cls.eigen_smooth else set())
        return common | set(cls.own_options)

    def compute(self, request: Request) -> Computed:
        opts = dict(request.options)
        relu = opts.pop("relu", True)
        aug = opts.pop("aug_smooth", False)
        eigen = opts.pop("eigen_smooth", False)
        transform = opts.pop("reshape_transform", None)
        own = {**self.own_options, **opts}
        if not aug:
            return self._maps(request, request.inputs, relu, eigen, transform, own)
        x = request.inputs[0]
        if len(request.inputs) != 1 or x.ndim != 4 or not x.is_floating_point():
            raise AttributionError(f"aug_smooth flips and scales an image: it needs one float (N, C, H, W) input; got "
                                   f"{[tuple(t.shape) for t in request.inputs]}")
        total = None
        for flip, scale in AUGMENTATIONS:
            xa = x * scale
            out = self._maps(request, (xa.flip(-1) if flip else xa,), relu, eigen, transform, own)
            maps = [m.flip(-1) if flip else m for m in out.maps]
            total = maps if total is None else [t + m for t, m in zip(total, maps, strict=True)]
        out.maps = [t / len(AUGMENTATIONS) for t in total]
        out.notes.append(f"aug_smooth: mean of {len(AUGMENTATIONS)} maps (horizontal flip x input scaled by 0.9, "
                         "1, 1.1), each flipped back")
        return out

    def _maps(self, request: Request, inputs: tuple[torch.Tensor, ...], relu: bool, eigen: bool, transform: Any,
              own: dict[str, Any]) -> Computed:
        caps = capture(request.call, inputs, request.targets, request.layers, request.layer_names,
                       backward=self.uses_gradients)
        out = Computed()
        for layer, name, cap in zip(request.layers, request.layer_names, caps, strict=True):
            layout = detect_layout(layer, name, cap.output, cap.args, cap.kwargs, inputs, transform)
            if layout.kind == "features":
                raise AttributionError(f"{self.label} needs a layer with positions to draw a map over; layer {name!r} "
                                       f"gives {tuple(cap.output.shape)} features (no positions): choose a conv "
                                       "layer, a transformer block, or an embedding layer")
            if cap.calls > 1:  # a shared or reused module: which call is drawn must be said, not only recorded
                note = (f"layer {name!r} ran {cap.calls} times in one forward pass; the map is of its first call "
                        "(choose a layer that runs once to be unambiguous)")
                out.notes.append(note)
                warnings.warn(note, stacklevel=4)
            acts = layout.to_channels(cap.output).flatten(2)
            grads = None if cap.grad is None else layout.to_channels(cap.grad).flatten(2)
            context = dict(call=request.call, inputs=inputs, targets=request.targets, layer=layer, name=name,
                           layout=layout, **own)
            cam = self.combine(acts, grads, eigen=eigen, **context)
            cam = torch.relu(cam) if relu else cam
            out.maps.append(cam.reshape(cam.shape[0], *layout.grid))
            out.layouts.append(layout)
        return out

    def combine(self, acts: torch.Tensor, grads: torch.Tensor | None, eigen: bool = False, **context: Any
                ) -> torch.Tensor:
        """(N, K, P) activations and gradients -> (N, P) map: the channel sum of :meth:`weighted` (or its first
        principal component with ``eigen``)."""
        weighted = self.weighted(acts, grads, **context)
        total = weighted.sum(dim=1)
        return first_component(weighted, total) if eigen else total

    def weighted(self, acts: torch.Tensor, grads: torch.Tensor | None, **context: Any) -> torch.Tensor:
        """(N, K, P) weighted activations. Default: w_k A^k with :meth:`channel_weights`."""
        return self.channel_weights(acts, grads, **context)[:, :, None] * acts

    def channel_weights(self, acts: torch.Tensor, grads: torch.Tensor | None, **context: Any) -> torch.Tensor:
        raise NotImplementedError


def layer_gradients(call: ModelCall, inputs: tuple[torch.Tensor, ...], targets: Targets, layer: nn.Module,
                    name: str, layout: Layout) -> torch.Tensor:
    """d(target scores)/d(layer output) for ``inputs``, read through ``layout``, as (N, K, P)."""
    cap = capture(call, inputs, targets, [layer], [name])[0]
    return layout.to_channels(cap.grad).flatten(2)
