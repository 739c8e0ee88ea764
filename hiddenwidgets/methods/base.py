"""What every attribution method shares: its registry entry, target and input checks, and leaving the model as
it was found (mode, hooks, requires_grad)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ..pipeline.model_state import evaluation_mode

__all__ = ["AttributionError", "AttributionMethod", "evaluation_mode", "resolve_targets"]


class AttributionError(ValueError):
    """Bad input to an attribution method: the message says what was expected and what to try."""


@dataclass(frozen=True)
class MethodInfo:
    name: str
    label: str
    needs_layer: bool
    paper: str
    family: str  # "captum", "cam"


class AttributionMethod:
    """One attribution method. Subclasses set the class attributes and implement :meth:`compute`.

    ``compute(model, inputs, targets, layer, **options)`` returns a tensor shaped like ``inputs`` (input methods)
    or ``(N, h, w)`` at the layer's resolution (layer maps; :func:`hiddenwidgets.attribute` upsamples them unless
    ``raw=True``).
    """

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    needs_layer: ClassVar[bool] = False
    paper: ClassVar[str] = ""
    family: ClassVar[str] = "captum"
    gradient_based: ClassVar[bool] = True
    layer_map: ClassVar[bool] = False  # output is a spatial map of a layer, to be upsampled

    @classmethod
    def info(cls) -> MethodInfo:
        return MethodInfo(cls.name, cls.label, cls.needs_layer, cls.paper, cls.family)

    def compute(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, layer: nn.Module | None,
                **options: Any) -> torch.Tensor:
        raise NotImplementedError


def resolve_targets(target: Any, n: int, classes: int, logits: torch.Tensor | None = None,
                    device: torch.device | None = None) -> torch.Tensor:
    """Per-example class indices for ``n`` inputs of a ``classes``-way model, from an int, a sequence/tensor of
    ints, or "predicted" (which needs the ``logits``)."""
    if isinstance(target, str):
        if target != "predicted" or logits is None:
            raise AttributionError(f"target must be a class index, one per input, or 'predicted'; got {target!r}")
        return logits.argmax(dim=-1)
    t = torch.as_tensor(target, device=device if logits is None else logits.device).long().reshape(-1)
    if t.numel() == 1:
        t = t.expand(n)
    if t.numel() != n:
        raise AttributionError(f"got {t.numel()} targets for {n} inputs; pass one class index, or one per input")
    bad = t[(t < 0) | (t >= classes)]
    if bad.numel():
        raise AttributionError(f"target {bad[0].item()} is out of range: the model outputs {classes} classes "
                               f"(valid targets 0..{classes - 1})")
    return t
