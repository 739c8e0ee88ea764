"""What every attribution method shares: its registry entry, target and input checks, the options it accepts,
what it returns, and leaving the model as it was found (mode, hooks, requires_grad)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from ..pipeline.model_state import evaluation_mode

if TYPE_CHECKING:
    from ._forward import ModelCall

__all__ = ["AttributionError", "AttributionMethod", "AttributionResult", "Request", "Targets", "evaluation_mode",
           "resolve_targets"]


class AttributionError(ValueError):
    """Bad input to an attribution method: the message says what was expected and what to try."""


@dataclass(frozen=True)
class MethodInfo:
    name: str
    label: str
    needs_layer: bool
    paper: str
    family: str  # "captum", "cam"


@dataclass
class Targets:
    """What is attributed, per input: class ``indices`` (N,), or a ``score`` callable mapping the (B, ...) logits to
    (B,) scores, or ``per_example`` callables (pytorch-grad-cam's ``targets=[...]``: one per input, each given
    that input's logits)."""

    indices: torch.Tensor | None = None
    score: Callable[[torch.Tensor], torch.Tensor] | None = None
    per_example: list[Callable[[torch.Tensor], torch.Tensor]] | None = None
    description: str = ""

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """(N,) scores of an (N, ...) batch of logits whose rows are the inputs in order."""
        if self.indices is not None:
            return logits.gather(1, self.indices.to(logits.device).view(-1, 1))[:, 0]
        if self.score is not None:
            return self.score(logits)
        return torch.stack([torch.as_tensor(fn(logits[i])).reshape(()) for i, fn in enumerate(self.per_example)])

    def row(self, i: int) -> Targets:
        """The target of input ``i`` alone (for methods that evaluate one input at a time)."""
        if self.indices is not None:
            return Targets(indices=self.indices[i : i + 1])
        if self.score is not None:
            return self
        fn = self.per_example[i]
        return Targets(score=lambda logits: torch.stack([torch.as_tensor(fn(r)).reshape(()) for r in logits]))


@dataclass
class Request:
    """Everything a method's :meth:`AttributionMethod.compute` needs, prepared by :func:`hiddenwidgets.attribute`."""

    call: ModelCall  # the model, called with the extra arguments, returning logits (or scores)
    inputs: tuple[torch.Tensor, ...]
    targets: Targets
    layers: list[nn.Module]
    layer_names: list[str]
    options: dict[str, Any]


@dataclass
class Computed:
    """A method's raw result: input-shaped attributions, or one map per layer with how each layer was read."""

    attributions: tuple[torch.Tensor, ...] | None = None
    maps: list[torch.Tensor] = field(default_factory=list)  # per layer: (N, *positions)
    layouts: list[Any] = field(default_factory=list)  # per layer: a _layout.Layout
    delta: torch.Tensor | None = None
    notes: list[str] = field(default_factory=list)
    extra: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class AttributionResult:
    """What :func:`hiddenwidgets.attribute` computed and how it read the model (``return_info=True``).

    attributions : the result (a tensor, or a tuple for a tuple of inputs). delta : Captum's convergence delta per
    input, when the method has one and it was asked for. targets : the class index per input (None for a callable
    target). output : how the logits were read from the model's output. layers : per layer name, how its output was
    read (its layout: conv map, channels-last, tokens on a patch grid, ...). reduction : how the layer's values
    became a map. extra : values left out of the map (e.g. ``"class_token"``: the class token's share (N,) of a
    layer attribution). warnings : what Captum or the checks here warned about (also issued as warnings).
    """

    attributions: torch.Tensor | tuple[torch.Tensor, ...]
    method: str
    delta: torch.Tensor | None = None
    targets: torch.Tensor | None = None
    target: str = ""
    output: str = ""
    layers: dict[str, str] = field(default_factory=dict)
    reduction: str = ""
    extra: dict[str, torch.Tensor] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


class AttributionMethod:
    """One attribution method. Subclasses set the class attributes and implement :meth:`compute`.

    ``compute(request)`` returns a :class:`Computed`: attributions shaped like the inputs (input methods), or one
    map (N, *positions) per layer at the layer's resolution (layer maps; :func:`hiddenwidgets.attribute` resizes
    them to the input unless ``raw=True``).
    """

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    needs_layer: ClassVar[bool] = False
    paper: ClassVar[str] = ""
    family: ClassVar[str] = "captum"
    gradient_based: ClassVar[bool] = True
    layer_map: ClassVar[bool] = False  # output is a map over a layer's positions, to be resized
    # needs inputs it can differentiate, interpolate or add noise to (not integer token ids)
    float_inputs: ClassVar[bool] = True
    several_layers: ClassVar[bool] = False  # accepts layer=[a, b, ...] (maps averaged)

    @classmethod
    def info(cls) -> MethodInfo:
        return MethodInfo(cls.name, cls.label, cls.needs_layer, cls.paper, cls.family)

    @classmethod
    def option_names(cls) -> set[str]:
        """The keyword options this method accepts (unknown ones raise TypeError naming these)."""
        raise NotImplementedError

    def compute(self, request: Request) -> Computed:
        raise NotImplementedError


def keyword_names(fn: Callable, skip: set[str]) -> set[str]:
    """The keyword parameter names of ``fn`` (no ``*args``/``**kwargs``), less ``skip``."""
    params = inspect.signature(fn).parameters.values()
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - skip


def check_integer_targets(target: Any) -> torch.Tensor:
    """``target`` as a flat tensor of class indices, refusing anything but integers (a float is never
    truncated)."""
    if isinstance(target, (bool, float)):
        raise AttributionError(f"target must be integer class indices; got {target!r} ({type(target).__name__})")
    try:
        t = torch.as_tensor(target)
    except (TypeError, ValueError, RuntimeError) as err:
        raise AttributionError(f"target must be a class index, one per input, 'predicted' or a callable; got "
                               f"{target!r} ({err})") from None
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise AttributionError(f"target must be integer class indices; got a {t.dtype} tensor "
                               f"{t.flatten()[:4].tolist()}: convert with .long() if these are whole numbers")
    return t.long().reshape(-1)


def resolve_targets(target: Any, n: int, classes: int, logits: torch.Tensor | None = None,
                    device: torch.device | None = None) -> torch.Tensor:
    """Per-example class indices for ``n`` inputs of a ``classes``-way model, from an int, a sequence/tensor of
    ints, or "predicted" (which needs the ``logits``)."""
    if isinstance(target, str):
        if target != "predicted" or logits is None:
            raise AttributionError(f"target must be a class index, one per input, or 'predicted'; got {target!r}")
        return logits.argmax(dim=-1)
    t = check_integer_targets(target).to(device if logits is None else logits.device)
    if t.numel() == 1:
        t = t.expand(n)
    if t.numel() != n:
        raise AttributionError(f"got {t.numel()} targets for {n} inputs; pass one class index, or one per input")
    bad = t[(t < 0) | (t >= classes)]
    if bad.numel():
        raise AttributionError(f"target {bad[0].item()} is out of range: the model outputs {classes} classes "
                               f"(valid targets 0..{classes - 1})")
    return t
