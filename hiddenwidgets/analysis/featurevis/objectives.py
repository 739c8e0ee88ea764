"""Objectives for feature visualisation, after Olah, Mordvintsev & Schubert (2017), *Feature Visualization*,
Distill: what an optimised image should make the network do. An objective is *maximised*.

Each constructor returns an :class:`Objective`; objectives compose with ``+``, ``-``, unary ``-`` and
multiplication or division by a number, so ``channel("conv2", 3) - 1e-3 * total_variation()`` or
``-channel("conv2", 3)`` (an image that switches the channel *off*) are objectives too.

Layers are names from ``model.named_modules()``; a layer returning a tuple, dict or dataclass is read through
``selector`` as in :func:`hiddenwidgets.select_tensor` (an index or key; by default its first tensor).
Shapes a layer may give: (N, C, H, W) conv maps (a *unit* is a channel, a *position* is (y, x)); (N, T, D)
sequences (a unit is one of the D features, a position is a token index); (N, D) vectors. Which axis holds the
units is decided as everywhere in hiddenwidgets (:func:`hiddenwidgets.pipeline.summaries.decide_units`): a
channels-last map (N, H, W, C) (ConvNeXt, Swin) is read as (N, C, H, W), a 1-D convolution's (N, C, L) as a
sequence of L positions with C units.

Every objective has a value per image: ``batch=i`` makes a term count for image ``i`` of the batch only (so
``sum(channel(layer, c, batch=c) for c in range(8))`` visualises 8 channels in one batch of 8 images).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..interventions import logits_of, unit_direction
from ._common import IMAGE, INPUT, OUTPUT, FeatureVisualizationError, check_float, check_int, keyword_checked

__all__ = [
    "Objective",
    "activation_distance",
    "alpha_norm",
    "blur",
    "center_bias",
    "channel",
    "channels",
    "class_logit",
    "direction",
    "diversity",
    "l1",
    "l2",
    "layer",
    "neuron",
    "total_variation",
]


# ------------------------------------------------------------------------------------------------------------------
class Term:
    """One term of an objective: a value per image from one tensor (a layer's output, the image, or the logits)."""

    name = "term"

    def __init__(self, key: str, selector: Any = None, batch: int | None = None):
        self.key = key
        self.selector = selector
        self.batch = None if batch is None else check_int(batch, "batch")

    def check(self, shape: tuple[int, ...]) -> None:
        """Raise :class:`FeatureVisualizationError` if the term cannot read a tensor of ``shape``."""
        if self.batch is not None and self.batch >= shape[0]:
            raise FeatureVisualizationError(f"{self.label()} is for image {self.batch} of the batch, but the batch has "
                                            f"{shape[0]} image(s): pass batch={self.batch + 1} or more")

    @property
    def images_needed(self) -> int:
        """The smallest batch this term applies to."""
        return 1 if self.batch is None else self.batch + 1

    def compute(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def values(self, t: torch.Tensor) -> torch.Tensor:
        v = self.compute(t)
        if self.batch is None:
            return v
        keep = torch.zeros_like(v)
        keep[self.batch] = 1
        return v * keep

    def args(self) -> list[str]:
        return []

    def label(self) -> str:
        parts = ([repr(self.key)] if self.key not in (IMAGE, OUTPUT) else []) + self.args()
        if self.selector is not None:
            parts.append(f"selector={self.selector!r}")
        if self.batch is not None:
            parts.append(f"batch={self.batch}")
        return f"{self.name}({', '.join(parts)})"

    def _layer(self) -> str:
        return "the input" if self.key == INPUT else f"layer {self.key!r}"


def _units_of(shape: tuple[int, ...]) -> int:
    return shape[1] if len(shape) == 4 else shape[-1]


def _check_unit(term: Term, unit: int, shape: tuple[int, ...]) -> None:
    count = _units_of(shape)
    if not 0 <= unit < count:
        kind = "channels" if len(shape) == 4 else "features"
        raise FeatureVisualizationError(f"unit {unit} is out of range: {term._layer()} gives {tuple(shape)}, i.e. "
                                        f"{count} {kind} (indices 0..{count - 1})")


class _Channel(Term):
    name = "channel"

    def __init__(self, key: str, unit: int, selector: Any, batch: int | None):
        super().__init__(key, selector, batch)
        self.unit = check_int(unit, "unit")

    def args(self) -> list[str]:
        return [str(self.unit)]

    def check(self, shape: tuple[int, ...]) -> None:
        super().check(shape)
        if len(shape) not in (3, 4):
            raise FeatureVisualizationError(
                f"{self.label()}: {self._layer()} gives {tuple(shape)}, which has no spatial (or token) positions to "
                f"average over; use neuron({self.key!r}, {self.unit}) for one unit or direction({self.key!r}, v) for "
                "a direction")
        _check_unit(self, self.unit, shape)

    def compute(self, t: torch.Tensor) -> torch.Tensor:
        if t.ndim == 4:
            return t[:, self.unit].mean(dim=(1, 2))
        return t[:, :, self.unit].mean(dim=1)  # (N, T, D): the feature's mean over tokens


class _Channels(Term):
    """Image i of the batch maximises channel ``units[i]``: one term, one indexing op, however many units."""

    name = "channels"

    def __init__(self, key: str, units: Sequence[int], selector: Any):
        super().__init__(key, selector, None)
        if isinstance(units, torch.Tensor):
            units = units.tolist()
        self.units = [check_int(u, "unit") for u in units]
        if not self.units:
            raise FeatureVisualizationError("units is empty; pass the channels to visualise, one image each")
        self._index: torch.Tensor | None = None

    @property
    def images_needed(self) -> int:
        return len(self.units)

    def args(self) -> list[str]:
        shown = ", ".join(map(str, self.units[:6])) + (", ..." if len(self.units) > 6 else "")
        return [f"[{shown}]"]

    def check(self, shape: tuple[int, ...]) -> None:
        super().check(shape)
        if shape[0] != len(self.units):
            raise FeatureVisualizationError(f"{self.label()} gives one unit per image: pass batch={len(self.units)} "
                                            f"(the batch has {shape[0]})")
        _Channel(self.key, 0, self.selector, None).check(shape)
        for u in self.units:
            _check_unit(self, u, shape)

    def compute(self, t: torch.Tensor) -> torch.Tensor:
        if self._index is None or self._index.device != t.device:
            self._index = torch.tensor(self.units, device=t.device)
        rows = torch.arange(t.shape[0], device=t.device)
        if t.ndim == 4:
            return t[rows, self._index].mean(dim=(1, 2))
        return t[rows, :, self._index].mean(dim=1)


class _Neuron(Term):
    name = "neuron"

    def __init__(self, key: str, unit: int, position: Any, selector: Any, batch: int | None):
        super().__init__(key, selector, batch)
        self.unit = check_int(unit, "unit")
        if position is not None:
            pos = (position,) if isinstance(position, numbers.Integral) else tuple(position)
            position = tuple(check_int(p, "position") for p in pos)
        self.position = position

    def args(self) -> list[str]:
        return [str(self.unit)] + ([f"position={self.position}"] if self.position is not None else [])

    def _where(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(shape) == 4:
            return self.position if self.position is not None else (shape[2] // 2, shape[3] // 2)
        if len(shape) == 3:
            return self.position if self.position is not None else (shape[1] // 2,)
        return ()

    def check(self, shape: tuple[int, ...]) -> None:
        super().check(shape)
        if len(shape) not in (2, 3, 4):
            raise FeatureVisualizationError(f"{self.label()}: {self._layer()} gives {tuple(shape)}; expected (N, C, H, "
                                            "W), (N, T, D) or (N, D)")
        _check_unit(self, self.unit, shape)
        where = self._where(shape)
        if len(shape) == 2 and self.position is not None:
            raise FeatureVisualizationError(f"{self.label()}: {self._layer()} gives {tuple(shape)}, which has no "
                                            "positions; drop position=")
        spatial = shape[2:] if len(shape) == 4 else shape[1:2] if len(shape) == 3 else ()
        if len(where) != len(spatial) or any(not 0 <= p < s for p, s in zip(where, spatial, strict=False)):
            raise FeatureVisualizationError(f"{self.label()}: position {where} is outside {self._layer()}'s positions "
                                            f"{tuple(spatial)} (from {tuple(shape)})")

    def compute(self, t: torch.Tensor) -> torch.Tensor:
        where = self._where(tuple(t.shape))
        if t.ndim == 4:
            return t[:, self.unit, where[0], where[1]]
        if t.ndim == 3:
            return t[:, where[0], self.unit]
        return t[:, self.unit]


class _Layer(Term):
    name = "layer"

    def compute(self, t: torch.Tensor) -> torch.Tensor:
        return t.reshape(t.shape[0], -1).pow(2).mean(dim=1)


class _Direction(Term):
    name = "direction"

    def __init__(self, key: str, vector: Any, position: Any, selector: Any, batch: int | None):
        super().__init__(key, selector, batch)
        self.vector = unit_direction(vector, FeatureVisualizationError, "vector")
        if position is not None:
            pos = (position,) if isinstance(position, numbers.Integral) else tuple(position)
            position = tuple(check_int(p, "position") for p in pos)
        self.position = position
        self._cast: torch.Tensor | None = None

    def args(self) -> list[str]:
        return [f"<vector of {self.vector.numel()}>"] + ([f"position={self.position}"] if self.position else [])

    def _mode(self, shape: tuple[int, ...]) -> str:
        n = self.vector.numel()
        per_example = math.prod(shape[1:])
        if len(shape) >= 3 and n == _units_of(shape):
            return "position"
        if n == per_example:
            return "flatten"
        return ""

    def check(self, shape: tuple[int, ...]) -> None:
        super().check(shape)
        mode = self._mode(shape)
        if not mode:
            extra = f" or {_units_of(shape)} (one per channel/feature, at every position)" if len(shape) >= 3 else ""
            raise FeatureVisualizationError(f"{self.label()}: the vector has {self.vector.numel()} entries but "
                                            f"{self._layer()} gives {tuple(shape)}; expected {math.prod(shape[1:])} "
                                            f"(the flattened output){extra}")
        if self.position is not None and mode != "position":
            raise FeatureVisualizationError(f"{self.label()}: position= needs a vector with one entry per channel "
                                            "(conv) or feature (sequence)")

    def compute(self, t: torch.Tensor) -> torch.Tensor:
        if self._cast is None or self._cast.device != t.device or self._cast.dtype != t.dtype:
            self._cast = self.vector.to(t.device, t.dtype)
        v = self._cast
        if self._mode(tuple(t.shape)) == "flatten":
            return t.reshape(t.shape[0], -1) @ v
        if t.ndim == 4:
            if self.position is not None:
                return t[:, :, self.position[0], self.position[1]] @ v
            return torch.einsum("nchw,c->n", t, v) / (t.shape[2] * t.shape[3])
        if self.position is not None:
            return t[:, self.position[0]] @ v
        return (t @ v).mean(dim=1)


class _Logit(Term):
    name = "class_logit"

    def __init__(self, target: int, batch: int | None):
        super().__init__(OUTPUT, None, batch)
        self.target = check_int(target, "target")

    def args(self) -> list[str]:
        return [str(self.target)]

    def check(self, shape: tuple[int, ...]) -> None:
        super().check(shape)
        if len(shape) != 2:
            raise FeatureVisualizationError(f"class_logit needs a model returning logits (examples, classes); it "
                                            f"returned {tuple(shape)}")
        if not 0 <= self.target < shape[1]:
            raise FeatureVisualizationError(f"class {self.target} is out of range: the model outputs {shape[1]} "
                                            f"classes (0..{shape[1] - 1})")

    def compute(self, t: torch.Tensor) -> torch.Tensor:
        return t[:, self.target]


class _Diversity(Term):
    name = "diversity"

    def check(self, shape: tuple[int, ...]) -> None:
        super().check(shape)
        if shape[0] < 2:
            raise FeatureVisualizationError("diversity compares the images of a batch with each other; pass batch=2 "
                                            "or more")

    def compute(self, t: torch.Tensor) -> torch.Tensor:
        n = t.shape[0]
        if t.ndim == 4:  # Gram matrix of channels over positions
            a = t.reshape(n, t.shape[1], -1)
            g = (a @ a.transpose(1, 2)).reshape(n, -1)
        elif t.ndim == 3:  # (N, T, D): Gram of features over tokens
            g = (t.transpose(1, 2) @ t).reshape(n, -1)
        else:
            g = t.reshape(n, -1)
        g = F.normalize(g, dim=1)
        sim = g @ g.T
        return -(sim.sum(dim=1) - sim.diagonal()) / n


class _ImageTerm(Term):
    def __init__(self, batch: int | None):
        super().__init__(IMAGE, None, batch)


class _TotalVariation(_ImageTerm):
    name = "total_variation"

    def __init__(self, beta: float, batch: int | None):
        super().__init__(batch)
        self.beta = check_float(beta, "beta", positive=True)

    def args(self) -> list[str]:
        return [] if self.beta == 1 else [f"beta={self.beta:g}"]

    def check(self, shape: tuple[int, ...]) -> None:
        super().check(shape)
        if len(shape) != 4 or shape[2] < 2 or shape[3] < 2:
            raise FeatureVisualizationError(f"total_variation needs images (N, C, H, W) of at least 2×2; the input is "
                                            f"{tuple(shape)}: use l2() for vectors")

    def compute(self, x: torch.Tensor) -> torch.Tensor:
        dy = x[:, :, 1:, :-1] - x[:, :, :-1, :-1]
        dx = x[:, :, :-1, 1:] - x[:, :, :-1, :-1]
        sq = dx * dx + dy * dy
        tv = sq.sqrt() if self.beta == 1 else (sq + 1e-12).pow(self.beta / 2)
        return tv.reshape(x.shape[0], -1).mean(dim=1)


class _AlphaNorm(_ImageTerm):
    def __init__(self, alpha: float, center: float, batch: int | None, name: str):
        super().__init__(batch)
        self.alpha = check_float(alpha, "alpha", positive=True)
        self.center = check_float(center, "center")
        self.name = name

    def args(self) -> list[str]:
        out = [f"alpha={self.alpha:g}"] if self.name == "alpha_norm" else []
        return out + ([f"center={self.center:g}"] if self.center != 0.5 else [])

    def compute(self, x: torch.Tensor) -> torch.Tensor:
        d = (x - self.center).abs()
        return (d if self.alpha == 1 else d.pow(self.alpha)).reshape(x.shape[0], -1).mean(dim=1)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W) images, radius 3σ, reflected at the edges."""
    radius = max(1, math.ceil(3 * sigma))
    radius = min(radius, x.shape[2] - 1, x.shape[3] - 1)
    k = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (k / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    padded = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(padded, k.reshape(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(out, k.reshape(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


class _Blur(_ImageTerm):
    name = "blur"

    def __init__(self, sigma: float, batch: int | None):
        super().__init__(batch)
        self.sigma = check_float(sigma, "sigma", positive=True)

    def args(self) -> list[str]:
        return [f"sigma={self.sigma:g}"]

    def check(self, shape: tuple[int, ...]) -> None:
        super().check(shape)
        if len(shape) != 4:
            raise FeatureVisualizationError(f"blur needs images (N, C, H, W); the input is {tuple(shape)}")

    def compute(self, x: torch.Tensor) -> torch.Tensor:
        target = gaussian_blur(x.detach(), self.sigma)
        return 0.5 * (x - target).pow(2).reshape(x.shape[0], -1).mean(dim=1)


class _Distance(Term):
    name = "activation_distance"

    def __init__(self, key: str, target: torch.Tensor, selector: Any, batch: int | None):
        super().__init__(key, selector, batch)
        if not isinstance(target, torch.Tensor):
            raise FeatureVisualizationError(f"target must be a tensor (a layer's output on one example); got "
                                            f"{type(target).__name__}")
        self.target = target.detach()
        norm2 = float(self.target.double().pow(2).sum())
        if not math.isfinite(norm2):
            raise FeatureVisualizationError("target has NaN or inf entries")
        self.norm2 = norm2 if norm2 > 0 else 1.0
        self._cast: torch.Tensor | None = None

    def args(self) -> list[str]:
        return [f"<target {tuple(self.target.shape)}>"]

    def check(self, shape: tuple[int, ...]) -> None:
        super().check(shape)
        if tuple(self.target.shape) not in (tuple(shape[1:]), (1, *shape[1:])):
            raise FeatureVisualizationError(f"{self.label()}: {self._layer()} gives {tuple(shape)} per batch, so the "
                                            f"target should have shape {tuple(shape[1:])}; got "
                                            f"{tuple(self.target.shape)}")

    def compute(self, t: torch.Tensor) -> torch.Tensor:
        if self._cast is None or self._cast.device != t.device or self._cast.dtype != t.dtype:
            self._cast = self.target.to(t.device, t.dtype).reshape(1, *t.shape[1:])
        return (t - self._cast).pow(2).reshape(t.shape[0], -1).sum(dim=1) / self.norm2


class _CenterBias(Term):
    name = "center_bias"

    def __init__(self, key: str, unit: int, sigma: float, selector: Any, batch: int | None):
        super().__init__(key, selector, batch)
        self.unit = check_int(unit, "unit")
        self.sigma = check_float(sigma, "sigma", positive=True)
        self._weights: torch.Tensor | None = None

    def args(self) -> list[str]:
        return [str(self.unit), f"sigma={self.sigma:g}"]

    def check(self, shape: tuple[int, ...]) -> None:
        super().check(shape)
        if len(shape) != 4:
            raise FeatureVisualizationError(f"{self.label()}: {self._layer()} gives {tuple(shape)}; a centre bias "
                                            "needs a conv layer (N, C, H, W)")
        _check_unit(self, self.unit, shape)

    def compute(self, t: torch.Tensor) -> torch.Tensor:
        h, w = t.shape[2], t.shape[3]
        if self._weights is None or self._weights.shape != (h, w) or self._weights.device != t.device:
            y = (torch.arange(h, dtype=torch.float64) - (h - 1) / 2) / max(h, 1)
            x = (torch.arange(w, dtype=torch.float64) - (w - 1) / 2) / max(w, 1)
            g = torch.exp(-(y[:, None] ** 2 + x[None, :] ** 2) / (2 * self.sigma ** 2))
            self._weights = (g / g.sum()).to(t.device)
        return (t[:, self.unit] * self._weights.to(t.dtype)).sum(dim=(1, 2))


# ------------------------------------------------------------------------------------------------------------------
class Objective:
    """A weighted sum of terms, each with a value per image; maximised by
    :func:`~hiddenwidgets.analysis.featurevis.visualize`.

    Compose with ``+``, ``-``, unary ``-``, and ``*`` or ``/`` by a number. ``str(objective)`` reads like the
    expression that built it. ``objective.layers`` maps the layer names it reads to their selectors.
    """

    def __init__(self, terms: Sequence[tuple[float, Term]]):
        # a term weighted 0 is dropped (a weight slider at 0 must not fail); an objective of no terms is refused by
        # visualize() and evaluate()
        self.terms: tuple[tuple[float, Term], ...] = tuple((float(c), t) for c, t in terms if c != 0)
        selectors: dict[str, Any] = {}
        for _, term in self.terms:
            if term.key in selectors and selectors[term.key] != term.selector:
                raise FeatureVisualizationError(f"layer {term.key!r} is read with two selectors "
                                                f"({selectors[term.key]!r} and {term.selector!r}); use one")
            selectors[term.key] = term.selector
        self._selectors = selectors

    @property
    def keys(self) -> list[str]:
        """Every tensor the objective reads: layer names, and ``"<image>"``, ``"<input>"``, ``"<output>"``."""
        return list(self._selectors)

    @property
    def layers(self) -> dict[str, Any]:
        """Layer name -> selector for every named layer the objective reads."""
        return {k: s for k, s in self._selectors.items() if k not in (IMAGE, INPUT, OUTPUT)}

    @property
    def batch_needed(self) -> int:
        """The smallest batch the objective applies to (one more than the highest ``batch=`` index)."""
        return max((t.images_needed for _, t in self.terms), default=1)

    def check(self, key: str, shape: tuple[int, ...]) -> None:
        for _, term in self.terms:
            if term.key == key:
                term.check(tuple(shape))

    def values(self, key: str, tensor: torch.Tensor) -> torch.Tensor:
        """The per-image value (N,) of the terms that read ``key``, evaluated on ``tensor``."""
        if key == OUTPUT:
            tensor = logits_of(tensor, FeatureVisualizationError) if not isinstance(tensor, torch.Tensor) else tensor
        total: torch.Tensor | None = None
        for coef, term in self.terms:
            if term.key == key:
                v = term.values(tensor)
                v = v * coef if coef != 1 else v
                total = v if total is None else total + v
        if total is None:
            raise KeyError(key)
        return total

    # composition ------------------------------------------------------------------------------------------------
    def __add__(self, other: Any) -> Objective:
        if isinstance(other, Objective):
            return Objective(self.terms + other.terms)
        if isinstance(other, numbers.Number) and other == 0:  # sum() starts from 0
            return self
        return NotImplemented

    __radd__ = __add__

    def __neg__(self) -> Objective:
        return Objective([(-c, t) for c, t in self.terms])

    def __sub__(self, other: Any) -> Objective:
        if isinstance(other, Objective):
            return self + (-other)
        if isinstance(other, numbers.Number) and other == 0:
            return self
        return NotImplemented

    def __rsub__(self, other: Any) -> Objective:
        if isinstance(other, numbers.Number) and other == 0:
            return -self
        return NotImplemented

    def __mul__(self, other: Any) -> Objective:
        if isinstance(other, numbers.Real) and not isinstance(other, bool):
            scale = check_float(other, "the weight")
            return Objective([(c * scale, t) for c, t in self.terms])
        return NotImplemented

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> Objective:
        if isinstance(other, numbers.Real) and not isinstance(other, bool):
            scale = check_float(other, "the divisor")
            if scale == 0:
                raise ZeroDivisionError("an objective divided by 0")
            return Objective([(c / scale, t) for c, t in self.terms])
        return NotImplemented

    def __repr__(self) -> str:
        if not self.terms:
            return "0"
        out = ""
        for i, (c, t) in enumerate(self.terms):
            sign = "-" if c < 0 else "+"
            mag = abs(c)
            body = t.label() if mag == 1 else f"{mag:g} * {t.label()}"
            out += (f"-{body}" if sign == "-" else body) if i == 0 else f" {sign} {body}"
        return out


def _one(term: Term) -> Objective:
    return Objective([(1.0, term)])


def _key(layer_name: Any) -> str:
    if not isinstance(layer_name, str):
        raise FeatureVisualizationError(f"a layer is named by a string from model.named_modules() (or "
                                        f"featurevis.INPUT for the model's input); got {type(layer_name).__name__} "
                                        f"{layer_name!r}")
    return layer_name


# ------------------------------------------------------------------------------------------------------------------
# constructors
@keyword_checked
def channel(layer: str, unit: int, *, selector: Any = None, batch: int | None = None) -> Objective:
    """A channel's mean activation over positions (Olah et al. 2017's "channel" objective).

    Conv layers (N, C, H, W): channel ``unit`` averaged over H×W; sequence layers (N, T, D): feature ``unit``
    averaged over tokens. A layer without positions (N, D) raises: use :func:`neuron` or :func:`direction`.
    """
    return _one(_Channel(_key(layer), unit, selector, batch))


@keyword_checked
def channels(layer: str, units: Sequence[int], *, selector: Any = None) -> Objective:
    """Channel ``units[i]`` for image ``i``: one batch visualises many channels at once (a unit atlas), the same
    as ``sum(channel(layer, u, batch=i) for i, u in enumerate(units))`` in one term."""
    return _one(_Channels(_key(layer), units, selector))


@keyword_checked
def neuron(layer: str, unit: int, *, position: Any = None, selector: Any = None,
           batch: int | None = None) -> Objective:
    """One unit at one position (Olah et al. 2017's "neuron"): channel ``unit`` at ``position=(y, x)`` of a conv
    layer (default: the centre, (H // 2, W // 2)), feature ``unit`` at token ``position`` of a sequence (default
    the middle token), or feature ``unit`` of an (N, D) layer."""
    return _one(_Neuron(_key(layer), unit, position, selector, batch))


@keyword_checked
def layer(layer: str, *, selector: Any = None, batch: int | None = None) -> Objective:
    """The mean squared activation of a whole layer: DeepDream (Mordvintsev et al. 2015)."""
    return _one(_Layer(_key(layer), selector, batch))


@keyword_checked
def direction(layer: str, vector: Any, *, position: Any = None, selector: Any = None,
              batch: int | None = None) -> Objective:
    """The projection of a layer's activation on a direction ``vector`` (normalised to unit length): a CAV from
    :mod:`hiddenwidgets.analysis.tcav` (its ``.vector`` is used), a probe's weight row, any vector.

    With one entry per channel (conv) or feature (sequence), the dot product is taken at every position and
    averaged (or at ``position``), which equals the dot product with the channel means (TCAV's ``pool="mean"``);
    with one entry per unit of the flattened output, it is the dot product with the flattened activation
    (TCAV's ``pool="flatten"``); (N, D) layers take D entries.
    """
    return _one(_Direction(_key(layer), vector, position, selector, batch))


@keyword_checked
def class_logit(target: int, *, batch: int | None = None) -> Objective:
    """The model's logit for class ``target`` (its output must be (N, classes), or hold it first)."""
    return _one(_Logit(target, batch))


@keyword_checked
def diversity(layer: str, *, selector: Any = None) -> Objective:
    """Diversity of a batch, as in Olah et al. 2017: minus the cosine similarity of each image's Gram matrix
    (channels × channels, over positions) with every other image's, summed over pairs and divided by the batch
    size. Add it with a weight, e.g. ``channel(l, 3) + 0.5 * diversity(l)`` with ``batch=4``."""
    return _one(_Diversity(_key(layer), selector, None))


@keyword_checked
def total_variation(*, beta: float = 1.0, batch: int | None = None) -> Objective:
    """The total variation of the image, ``mean over pixels of ((∂x)² + (∂y)²)^(β/2)`` (Mahendran & Vedaldi
    2015's TV^β, β=1 the usual TV). A penalty: subtract it, e.g. ``objective - 1e-2 * total_variation()``."""
    return _one(_TotalVariation(beta, batch))


@keyword_checked
def l1(*, center: float = 0.5, batch: int | None = None) -> Objective:
    """The mean absolute deviation of the image's pixels from ``center`` (grey). A penalty: subtract it."""
    return _one(_AlphaNorm(1.0, center, batch, "l1"))


@keyword_checked
def l2(*, center: float = 0.5, batch: int | None = None) -> Objective:
    """The mean squared deviation of the image's pixels from ``center``. A penalty: subtract it."""
    return _one(_AlphaNorm(2.0, center, batch, "l2"))


@keyword_checked
def alpha_norm(*, alpha: float = 6.0, center: float = 0.5, batch: int | None = None) -> Objective:
    """Mahendran & Vedaldi 2015's α-norm prior, the mean of ``|x - center|^α`` over pixels (α = 6 in the paper):
    it keeps pixel values in a bounded range. A penalty: subtract it."""
    return _one(_AlphaNorm(alpha, center, batch, "alpha_norm"))


@keyword_checked
def blur(*, sigma: float = 0.5, batch: int | None = None) -> Objective:
    """Half the mean squared difference between the image and a blurred copy of it (held constant): its
    gradient pulls the image towards its blurred self each step, as Lucid's ``blur_input_each_step``
    (Nguyen et al. 2015). A penalty: subtract it."""
    return _one(_Blur(sigma, batch))


@keyword_checked
def activation_distance(layer: str, target: torch.Tensor, *, selector: Any = None,
                        batch: int | None = None) -> Objective:
    """``||Φ(x) - target||² / ||target||²``: the normalised squared distance of a layer's code from a target code
    (Mahendran & Vedaldi 2015's reconstruction loss). ``layer`` may be ``featurevis.INPUT`` (the model's input).
    A loss: maximise its negative, as :func:`~hiddenwidgets.analysis.featurevis.invert` does."""
    return _one(_Distance(_key(layer), target, selector, batch))


@keyword_checked
def center_bias(layer: str, unit: int, *, sigma: float = 0.25, selector: Any = None,
                batch: int | None = None) -> Objective:
    """A conv channel's activation weighted by a Gaussian centred on the map (σ as a fraction of its size,
    weights summing to 1): added to a channel objective, it favours the feature in the middle of the image, as
    Nguyen et al. 2016's centre-biased regularisation intends."""
    return _one(_CenterBias(_key(layer), unit, sigma, selector, batch))
