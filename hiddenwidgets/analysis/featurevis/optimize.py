"""Feature visualisation by optimisation (Olah, Mordvintsev & Schubert 2017, *Feature Visualization*, Distill;
Erhan et al. 2009, *Visualizing Higher-Layer Features of a Deep Network*): find images that maximise an
:class:`~hiddenwidgets.analysis.featurevis.objectives.Objective`.

Each step: decode the images from their parameterisation, apply the random transforms, normalise, run the
model with temporary hooks on the layers the objective reads, take the objective's gradient with respect to the
*image parameters only* (``torch.autograd.grad``; the model's parameters, their ``.grad`` and ``requires_grad``
are untouched) and take one Adam step uphill. After the first step the forward pass stops once every layer the
objective reads has run (unless it reads the logits). ``progress(step, total, images, objective_value)`` is called
after each step; returning ``False`` stops the optimisation, which returns what it has, marked ``cancelled``.

The model runs in eval mode; every module gets its own mode back, and the hooks come off when the call returns or
raises. Random numbers come from a ``torch.Generator`` seeded with ``seed``, never from the global RNG, so the
same call gives the same images (on the same device and torch build).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ...pipeline.model_state import evaluation_mode, model_device, model_for_work
from ..interventions import logits_of
from ._common import (
    IMAGE,
    INPUT,
    OUTPUT,
    FeatureVisualizationError,
    Taps,
    check_float,
    check_int,
    check_model,
    check_progress,
    input_error,
    keyword_checked,
    make_normalize,
    model_dtype,
)
from .objectives import Objective
from .parameterizations import PARAMS, ColorDecorrelation, make_parameterization, resolve_decorrelation
from .transforms import Transform, apply_transforms, default_transforms

__all__ = ["Visualization", "evaluate", "visualize"]

Progress = Callable[[int, int, torch.Tensor, float], Any]


@dataclass(frozen=True, eq=False)
class Visualization:
    """The result of :func:`visualize`.

    ``images``: (B, C, H, W) float32 CPU in [0, 1] (before ``normalize``; raw tensors for non-image inputs).
    ``values``: (B,) float64, the objective per image on the final images, without transforms.
    ``history``: (steps,) float64, the objective (summed over images) at each step, on that step's transformed
    images (what was maximised). ``steps``: steps taken; ``cancelled``: True if ``progress`` stopped it.
    """

    images: torch.Tensor
    values: torch.Tensor
    history: torch.Tensor
    steps: int
    cancelled: bool
    objective: str
    seed: int
    param: str
    decorrelation: str
    transforms: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Everything but the images, as JSON-ready values."""
        return {"values": self.values.tolist(), "history": self.history.tolist(), "steps": self.steps,
                "cancelled": self.cancelled, "objective": self.objective, "seed": self.seed, "param": self.param,
                "decorrelation": self.decorrelation, "transforms": self.transforms}


class _Run:
    """The objective on a model: hooks, one forward pass, the value per image."""

    def __init__(self, model: nn.Module, objective: Objective, normalize: Any, forward: Any, stop_early: bool):
        self.model = model
        self.objective = objective
        self.normalize = make_normalize(normalize)
        self.forward = forward
        self.stop_early = stop_early
        self.keys = set(objective.keys)
        self.checked: set[str] = set()
        self.current: dict[str, torch.Tensor] = {}
        self.probed = False
        self.taps = Taps(model, objective.layers, self._on_output)
        self.needs_model = bool(objective.layers) or OUTPUT in self.keys

    def _read(self, key: str, tensor: torch.Tensor) -> None:
        if key not in self.checked:
            self.objective.check(key, tuple(tensor.shape))
            self.checked.add(key)
        self.current[key] = self.objective.values(key, tensor)

    def _on_output(self, name: str, tensor: torch.Tensor) -> None:
        self._read(name, tensor)

    def per_image(self, images: torch.Tensor, transforms: Sequence[Any] | None,
                  generator: torch.Generator | None) -> torch.Tensor:
        self.current = {}
        if IMAGE in self.keys:
            self._read(IMAGE, images)
        x = apply_transforms(transforms, images, generator) if transforms else images
        if self.normalize is not None:
            x = self.normalize(x)
        if INPUT in self.keys:
            self._read(INPUT, x)
        if self.needs_model:
            try:
                out = self.taps.forward(self.model, x, self.forward)
            except (RuntimeError, TypeError, IndexError) as err:
                if self.probed:
                    raise
                diagnosis = input_error(self.model, x, err, self.forward)
                if diagnosis is None:
                    raise
                raise diagnosis from err
            if not self.probed:
                self.probed = True
                if self.stop_early and OUTPUT not in self.keys:
                    self.taps.stop_after = frozenset(self.objective.layers)
            if OUTPUT in self.keys:
                self._read(OUTPUT, logits_of(out, FeatureVisualizationError))
        total = None
        for v in self.current.values():
            total = v if total is None else total + v
        assert total is not None
        return total


def _check_shape(shape: Any) -> tuple[int, ...]:
    if isinstance(shape, torch.Size):
        shape = tuple(shape)
    if not isinstance(shape, (tuple, list)) or not shape:
        raise FeatureVisualizationError(f"shape must be the shape of one input example, e.g. (3, 224, 224) for RGB "
                                        f"images or (1, 28, 28) for MNIST; got {shape!r}")
    return tuple(check_int(s, "each entry of shape", minimum=1) for s in shape)


def _non_image(shape: tuple[int, ...], what: str) -> FeatureVisualizationError:
    return FeatureVisualizationError(
        f"{what} applies to images, shape (channels, height, width), but the input shape is {shape}: the model "
        "takes vectors or sequences, which are optimised as raw tensors. Drop it (param=None, decorrelate=None, "
        "transforms=None); the objectives that apply are direction, neuron, layer, class_logit (and channel on "
        "(tokens, features) layers), with l2() as a regulariser")


def _prepare_init(init: Any, shape: tuple[int, ...], image: bool) -> torch.Tensor | None:
    if init is None:
        return None
    if not isinstance(init, torch.Tensor):
        raise FeatureVisualizationError(f"init must be a tensor of starting images; got {type(init).__name__}")
    if tuple(init.shape) == shape:
        init = init.unsqueeze(0)
    if tuple(init.shape[1:]) != shape:
        raise FeatureVisualizationError(f"init has shape {tuple(init.shape)}; expected (batch, "
                                        f"{', '.join(map(str, shape))}) or {shape}")
    if not torch.isfinite(init).all():
        raise FeatureVisualizationError("init has NaN or inf values")
    if image and (init.min() < 0 or init.max() > 1):
        raise FeatureVisualizationError(f"init images must be in [0, 1] (before normalize); got values in "
                                        f"[{float(init.min()):.3g}, {float(init.max()):.3g}]")
    return init


def _resolve_transforms(transforms: Any, shape: tuple[int, ...], image: bool) -> list[Any]:
    if isinstance(transforms, str):
        if transforms != "default":
            raise FeatureVisualizationError(f"transforms must be 'default', None or a list of transforms; got "
                                            f"{transforms!r}")
        return default_transforms(min(shape[1], shape[2])) if image else []
    if transforms is None:
        return []
    try:
        out = list(transforms)
    except TypeError:
        raise FeatureVisualizationError(f"transforms must be 'default', None or a list of transforms (callables "
                                        f"(images, generator) -> images); got {type(transforms).__name__}") from None
    if out and not image:
        raise _non_image(shape, "transforms=")
    for t in out:
        if not callable(t):
            raise FeatureVisualizationError(f"each transform must be callable (images, generator) -> images; got "
                                            f"{type(t).__name__}")
    return out


@keyword_checked
def visualize(model: nn.Module, objective: Objective, *, shape: Sequence[int], batch: int | None = None,
              steps: int = 256, lr: float = 0.05, param: str | None = None,
              decorrelate: bool | ColorDecorrelation | None = None, color_data: torch.Tensor | None = None,
              transforms: str | Sequence[Transform] | None = "default",
              normalize: Callable[[torch.Tensor], torch.Tensor] | tuple[Any, Any] | None = None,
              forward: Callable[[nn.Module, torch.Tensor], Any] | None = None, init: torch.Tensor | None = None,
              seed: int = 0, progress: Progress | None = None, progress_every: int = 1, stop_early: bool = True,
              decay_power: float = 1.0) -> Visualization:
    """Optimise images to maximise ``objective`` (Olah et al. 2017, *Feature Visualization*, Distill).

    Parameters
    ----------
    model : the network; its mode, ``requires_grad``, ``.grad`` and hooks are as before afterwards.
    objective : from :mod:`~hiddenwidgets.analysis.featurevis.objectives` (composable with ``+ - *``).
    shape : one input example's shape, (C, H, W) for images (e.g. (1, 28, 28)); another shape, e.g. (D,),
        optimises a raw tensor (no sigmoid, colours or transforms).
    batch : images optimised together (default: what the objective's ``batch=`` terms need, or 1).
    steps, lr : Adam steps and learning rate.
    param : "fourier" (default for images: 1/f-scaled spectrum) or "pixel".
    decorrelate : True (default for images): colours through :class:`ColorDecorrelation`, from ``color_data``
        (images (N, C, H, W) in [0, 1]) if given, else ImageNet's for RGB (identity otherwise); False; or a
        :class:`ColorDecorrelation` (computed once, for repeated calls).
    transforms : "default" (:func:`~hiddenwidgets.analysis.featurevis.transforms.default_transforms` for the
        size), None, or a list of transforms; the result is cropped back to (H, W).
    normalize : applied to the images in [0, 1] before the model: a callable, or (mean, std) per channel.
    forward : ``forward(model, x)`` instead of ``model(x)`` (e.g. ``model(inputs_embeds=x)``).
    init : starting images (B, C, H, W) in [0, 1] (e.g. a mean image, as in Nguyen et al. 2016).
    seed : seeds this call's own ``torch.Generator`` (initial parameters and transforms).
    progress : ``progress(step, total, images, objective_value) -> bool | None`` after each ``progress_every``
        steps and the last one; ``images`` (B, C, H, W) float32 CPU, the images of that step; returning False
        stops the optimisation.
    stop_early : after the first step, end each forward pass once the layers the objective reads have run.
    decay_power : the exponent of the Fourier 1/f scaling.

    Returns a :class:`Visualization`. Raises :class:`FeatureVisualizationError` for bad input, and with ``.step``
    set when the objective or its gradient becomes NaN or infinite.
    """
    model = model_for_work(check_model(model))  # a copy of the weights while another thread trains it
    if not isinstance(objective, Objective):
        raise FeatureVisualizationError(f"objective must be an Objective (e.g. objectives.channel('conv2', 3)); got "
                                        f"{type(objective).__name__}")
    if not objective.terms:
        raise FeatureVisualizationError("the objective has no terms (every weight is 0); give a term a weight")
    shape = _check_shape(shape)
    image = len(shape) == 3
    steps = check_int(steps, "steps")
    lr = check_float(lr, "lr", positive=True)
    seed = check_int(seed, "seed")
    every = check_int(progress_every, "progress_every", minimum=1)
    progress = check_progress(progress)
    decay_power = check_float(decay_power, "decay_power", minimum=0)
    if image:
        param = "fourier" if param is None else param
        if param not in PARAMS:
            raise FeatureVisualizationError(f"param must be one of {PARAMS}; got {param!r}")
        decorrelation = resolve_decorrelation(True if decorrelate is None else decorrelate, color_data, shape[0])
    else:
        if param is not None:
            raise _non_image(shape, f"param={param!r}")
        if decorrelate not in (None, False) or color_data is not None:
            raise _non_image(shape, "colour decorrelation")
        decorrelation = None
    chosen = _resolve_transforms(transforms, shape, image)
    init_t = _prepare_init(init, shape, image)
    need = objective.batch_needed
    if batch is None:
        batch = max(need, len(init_t) if init_t is not None else 1)
    batch = check_int(batch, "batch", minimum=1)
    if batch < need:
        raise FeatureVisualizationError(f"the objective has terms for image {need - 1} of the batch; pass "
                                        f"batch={need} or more")
    if init_t is not None and len(init_t) not in (1, batch):
        raise FeatureVisualizationError(f"init has {len(init_t)} images for a batch of {batch}; pass 1 or {batch}")

    device, dtype = model_device(model), model_dtype(model)
    generator = torch.Generator().manual_seed(seed)
    history: list[float] = []
    cancelled = False
    run = _Run(model, objective, normalize, forward, stop_early)
    with evaluation_mode(model), run.taps, torch.enable_grad():
        p = make_parameterization(param or "vector", (batch, *shape), generator=generator, device=device,
                                  dtype=dtype, decorrelation=decorrelation, decay_power=decay_power)
        if init_t is not None:
            p.initialize(init_t.expand(batch, *shape))
        opt = torch.optim.Adam(p.params, lr=lr, maximize=True)
        for step in range(1, steps + 1):
            images = p.decode()
            per_image = run.per_image(images, chosen, generator)
            total = per_image.sum()
            value = float(total.detach())
            if not math.isfinite(value):
                raise FeatureVisualizationError(
                    f"the objective became {value} at step {step} of {steps}: stopped there. Try a lower lr (now "
                    f"{lr:g}), a normalize= matching the data the model was trained on, or a regulariser such as "
                    "- 1e-2 * total_variation()", step=step)
            if not total.requires_grad:
                raise FeatureVisualizationError("the objective does not depend on the input: does the model detach "
                                                "its activations or run under torch.no_grad()?")
            grads = torch.autograd.grad(total, p.params, allow_unused=True)
            if any(g is None for g in grads):
                raise FeatureVisualizationError("the objective does not depend on the input; choose layers on the "
                                                "path from the input")
            if not all(bool(torch.isfinite(g).all()) for g in grads):
                raise FeatureVisualizationError(
                    f"the objective's gradient became NaN or infinite at step {step} of {steps}: stopped there. Try a "
                    f"lower lr (now {lr:g}) or a normalize= matching the training data", step=step)
            for prm, g in zip(p.params, grads, strict=True):
                prm.grad = g
            opt.step()
            for prm in p.params:
                prm.grad = None
            history.append(value)
            if progress is not None and (step % every == 0 or step == steps):
                answer = progress(step, steps, images.detach().to("cpu", torch.float32), value)
                if answer is False:
                    cancelled = True
                    break
        with torch.no_grad():
            final = p.decode()
            values = run.per_image(final, None, None)
    return Visualization(
        images=final.detach().to("cpu", torch.float32),
        values=values.detach().to("cpu", torch.float64),
        history=torch.tensor(history, dtype=torch.float64),
        steps=len(history), cancelled=cancelled, objective=repr(objective), seed=seed,
        param=p.kind, decorrelation=decorrelation.source if decorrelation is not None else "none",
        transforms=[repr(t) for t in chosen])


@keyword_checked
def evaluate(model: nn.Module, objective: Objective, images: torch.Tensor, *,
             normalize: Callable[[torch.Tensor], torch.Tensor] | tuple[Any, Any] | None = None,
             forward: Callable[[nn.Module, torch.Tensor], Any] | None = None, batch_size: int = 256) -> torch.Tensor:
    """The objective's value on each of ``images`` (N, ...) (in [0, 1], before ``normalize``), as
    :func:`visualize` reports it: (N,) float64 CPU. For comparing an optimised image with data set examples."""
    model = model_for_work(check_model(model))  # a copy of the weights while another thread trains it
    if not isinstance(objective, Objective) or not objective.terms:
        raise FeatureVisualizationError(f"objective must be an Objective with at least one term; got {objective!r}")
    if not isinstance(images, torch.Tensor) or images.ndim < 2 or len(images) == 0:
        raise FeatureVisualizationError("images must be a non-empty tensor (N, ...) of examples")
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    if objective.batch_needed > 1:  # terms for particular images of the batch: one batch
        batch_size = max(batch_size, len(images))
    device, dtype = model_device(model), model_dtype(model)
    run = _Run(model, objective, normalize, forward, stop_early=True)
    out = []
    with evaluation_mode(model), run.taps, torch.no_grad():
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size].to(device, dtype)
            out.append(run.per_image(chunk, None, None).to("cpu", torch.float64))
    return torch.cat(out)
