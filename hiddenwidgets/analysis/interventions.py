"""Interventions on a concept direction in a layer: what does the model predict without it?

Given a direction ``v`` in a layer's feature space (a CAV from :mod:`hiddenwidgets.tcav`, a probe's weight row, a
difference of class means...), :func:`intervene` runs the model on the inputs twice: as is, and with the layer's
output edited along the unit direction ``v̂ = v / |v|``:

- ``mode="project"`` removes each example's component along ``v̂``:  ``h' = h - (h·v̂) v̂``, so ``h'·v̂ = 0``;
- ``mode="clamp"`` sets the component to ``value``:  ``h' = h - (h·v̂ - value) v̂``, so ``h'·v̂ = value``. The
  default ``value`` is the mean of ``h·v̂`` over ``reference`` inputs (e.g. examples without the concept), or 0
  without them (which is the same as projecting).

``h`` is the layer output in the feature space of ``pool``:

- ``pool="flatten"``: every unit, ``h = output.reshape(N, -1)``; the edit is exactly the formula above.
- ``pool="mean"``: the channel means of a conv layer (N, C, H, W), or the token mean of a sequence layer
  (N, T, D); ``v`` has C (or D) entries. The edit shifts every position of channel ``c`` by the same amount,
  ``-(h·v̂ - value) v̂_c``, which moves the channel means by exactly that and leaves the spatial pattern within
  each channel alone. This is the perturbation whose derivative TCAV's ``pool="mean"`` directional derivative
  measures.

For (N, D) layers both are the same. A layer returning a tuple, dict or dataclass gets only its selected tensor
replaced (``selector``: index or key; default the first tensor, as in :func:`hiddenwidgets.select_tensor`).

The model runs in eval mode under ``torch.no_grad()``; every module gets its own mode and every parameter its
``requires_grad`` back, and the temporary forward hook comes off when :func:`intervene` returns or raises.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..pipeline.capture import CaptureError, _unknown_layer_message, model_device, select_tensor
from ..pipeline.checks import check_choice, check_int, check_number, keywords_checked
from ..pipeline.model_state import evaluation_mode, model_for_work
from ..pipeline.summaries import units_of
from .matrices import RepresentationError
from .representations import pool

__all__ = ["InterventionError", "InterventionResult", "intervene"]

MODES = ("project", "clamp")
EDIT_POOLS = ("flatten", "mean")


class InterventionError(RepresentationError):
    """Bad input to :func:`intervene`: the message says what was expected and what to try."""


# ------------------------------------------------------------------------------------------------------------------
# helpers shared with hiddenwidgets.tcav: find a layer, pick (and replace) the tensor in its output, pool features
# (as hiddenwidgets.representations.pool does, with the checks an edit needs)
def resolve_layer(model: nn.Module, name: Any, error: type[Exception]) -> nn.Module:
    """The module called ``name`` in ``model``; ``error`` with the closest names otherwise."""
    if not isinstance(model, nn.Module):
        raise error(f"model must be a torch.nn.Module; got {type(model).__name__}")
    if not isinstance(name, str):
        raise error(f"a layer is named by a string from model.named_modules(); got {type(name).__name__} {name!r}")
    modules = dict(model.named_modules())
    if name not in modules:
        raise error(_unknown_layer_message(name, modules))
    return modules[name]


def _locate(output: Any, selector: Any) -> tuple[Any, Callable[[torch.Tensor], Any] | None]:
    """(key of the selected tensor in ``output``, or None for a bare tensor; function building the new output)."""
    if isinstance(output, torch.Tensor) and selector is None:
        return None, lambda new: new
    if isinstance(output, Mapping):
        key = selector if selector is not None else next(k for k, v in output.items() if isinstance(v, torch.Tensor))

        def rebuild_mapping(new: torch.Tensor) -> Any:
            out = copy.copy(output)
            out[key] = new
            return out

        return key, rebuild_mapping
    if isinstance(output, (tuple, list)):
        index = selector if selector is not None else next(i for i, v in enumerate(output)
                                                           if isinstance(v, torch.Tensor))

        def rebuild_sequence(new: torch.Tensor) -> Any:
            items = list(output)
            items[index] = new
            if isinstance(output, tuple) and hasattr(output, "_fields"):  # namedtuple
                return type(output)(*items)
            return type(output)(items)

        return index, rebuild_sequence
    if dataclasses.is_dataclass(output) and not isinstance(output, type):
        field = selector if selector is not None else next(f.name for f in dataclasses.fields(output)
                                                           if isinstance(getattr(output, f.name), torch.Tensor))

        def rebuild_dataclass(new: torch.Tensor) -> Any:
            out = copy.copy(output)
            setattr(out, field, new)
            return out

        return field, rebuild_dataclass
    return None, None


@contextlib.contextmanager
def edit_outputs(model: nn.Module, layers: Mapping[str, Any],
                 edit: Callable[[str, torch.Tensor], torch.Tensor | None],
                 error: type[Exception] = InterventionError) -> Iterator[None]:
    """Temporary forward hooks: each named layer's selected output tensor goes to ``edit(name, tensor)``; a tensor
    it returns replaces that one in the layer's output (the rest of a tuple/dict output is kept), None keeps the
    output. Exceptions raised by ``edit`` propagate out of the model call. The hooks come off on leaving the block,
    also on errors."""
    modules = {name: resolve_layer(model, name, error) for name in layers}
    for name, selector in layers.items():
        if callable(selector):
            raise error(f"layer {name!r}: a callable selector can read a tensor but not put an edited one back; "
                        "pass an index (tuple outputs) or a key/attribute name (dict or dataclass outputs)")

    def hook_for(name: str, selector: Any) -> Callable[[nn.Module, Any, Any], Any]:
        def hook(module: nn.Module, args: Any, output: Any) -> Any:
            if isinstance(output, torch.Tensor) and selector is not None:
                raise error(f"layer {name!r} returns a single tensor; drop the selector {selector!r}")
            try:
                tensor, _ = select_tensor(output, selector)
            except CaptureError as err:
                raise error(f"layer {name!r} ({type(module).__name__}): {err}") from None
            new = edit(name, tensor)
            if new is None:
                return None
            _, rebuild = _locate(output, selector)
            if rebuild is None:
                raise error(f"layer {name!r} returns {type(output).__name__}, whose tensor cannot be replaced; "
                            "choose a layer that returns a tensor, tuple, dict or dataclass")
            return rebuild(new)

        return hook

    handles = []
    try:
        for name, selector in layers.items():
            handles.append(modules[name].register_forward_hook(hook_for(name, selector)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def pooled(h: torch.Tensor, how: str, error: type[Exception], layer: str, axis: int | None = None) -> torch.Tensor:
    """(N, F) view of a layer output ``h`` in the feature space of ``how`` ("flatten" or "mean"); ``axis`` is the
    units' axis (see :func:`hiddenwidgets.analysis.representations.pool`)."""
    if h.ndim < 2:
        raise error(f"layer {layer!r} gives shape {tuple(h.shape)}; expected (examples, ...) with a batch dimension")
    try:
        return pool(h, how, axis=axis)
    except RepresentationError as err:
        raise error(str(err)) from None


def _positions(ndim: int, axis: int | None) -> tuple[int, ...]:
    """The axes a "mean" pooling averages over, for an output of ``ndim`` axes with units on ``axis``."""
    if axis is None:
        axis = 1 if ndim >= 4 else ndim - 1
    return tuple(d for d in range(1, ndim) if d != axis % ndim)


def pooled_gradient(g: torch.Tensor, how: str, error: type[Exception], layer: str,
                    axis: int | None = None) -> torch.Tensor:
    """The gradient with respect to :func:`pooled` features, from the gradient ``g`` with respect to the layer output.

    For ``"mean"``, write each position as its channel mean plus a fixed residual, ``h[c, i, j] = m_c + r[c, i, j]``;
    then ``d/dm_c = sum over positions of d/dh[c, i, j]``: the sum (not the mean) over positions.
    """
    if g.ndim == 2 or how == "flatten":
        return g.reshape(g.shape[0], -1)
    if g.ndim < 2:
        raise error(f"layer {layer!r} gives shape {tuple(g.shape)}; expected (examples, ...) with a batch dimension")
    return g.sum(dim=_positions(g.ndim, axis))


def _shift(h: torch.Tensor, how: str, amount: torch.Tensor, v: torch.Tensor, axis: int | None = None) -> torch.Tensor:
    """``h`` moved by ``-amount[n] * v`` in the pooled feature space (uniformly over positions for "mean")."""
    delta = amount.to(h.dtype)[:, None] * v.to(h.dtype)[None, :]  # (N, F)
    if h.ndim == 2 or how == "flatten":
        return h - delta.reshape(h.shape)
    unit = next(d for d in range(1, h.ndim) if d not in _positions(h.ndim, axis))
    shape = [h.shape[0]] + [h.shape[d] if d == unit else 1 for d in range(1, h.ndim)]
    return h - delta.reshape(shape)


def logits_of(output: Any, error: type[Exception]) -> torch.Tensor:
    """The (N, classes) logits tensor of a model's output (a tensor, or the first tensor of a tuple/dict)."""
    try:
        logits, _ = select_tensor(output)
    except CaptureError as err:
        raise error(f"the model's output holds no logits tensor: {err}") from None
    if logits.ndim != 2:
        raise error(f"the model must return logits of shape (examples, classes); got {tuple(logits.shape)}: wrap "
                    "it so that it returns one row of class scores per example")
    return logits


def check_inputs(inputs: Any, error: type[Exception], name: str = "inputs") -> torch.Tensor:
    if not isinstance(inputs, torch.Tensor):
        raise error(f"{name} must be a tensor of examples (N, ...); got {type(inputs).__name__}")
    if inputs.ndim < 1 or len(inputs) == 0:
        raise error(f"{name} must hold at least one example along its first dimension; got shape "
                    f"{tuple(inputs.shape)}")
    if inputs.is_complex():
        raise error(f"{name} are complex ({inputs.dtype}); the model's layers are compared as real features, "
                    "which would drop the imaginary part: pass real inputs")
    return inputs


def check_batch_size(batch_size: Any, error: type[Exception]) -> int:
    return check_int(batch_size, "batch_size", minimum=1, error=error, hint="try 256 (examples per forward pass)")


def unit_direction(direction: Any, error: type[Exception], name: str = "direction") -> torch.Tensor:
    """``direction`` (tensor, array, list or a CAV) as a float64 unit vector."""
    if hasattr(direction, "vector") and hasattr(direction, "layer"):  # a hiddenwidgets.tcav.CAV
        direction = direction.vector
    try:
        v = (direction.detach().cpu() if isinstance(direction, torch.Tensor)
             else torch.as_tensor(np.asarray(direction)))
    except (TypeError, ValueError) as err:
        raise error(f"{name} must be a vector of numbers (a tensor, array or list); got "
                    f"{type(direction).__name__} ({err})") from None
    if v.is_complex():
        raise error(f"{name} is complex ({v.dtype}); a direction in a layer's real feature space has real entries, "
                    "and converting would drop the imaginary part: pass direction.real")
    v = v.to(torch.float64)
    if v.ndim == 2 and 1 in v.shape:
        v = v.reshape(-1)
    if v.ndim != 1 or v.numel() == 0:
        raise error(f"{name} must be a 1-D vector with one entry per feature; got shape {tuple(v.shape)}")
    if not torch.isfinite(v).all():
        raise error(f"{name} has NaN or inf entries; pass a finite vector")
    norm = torch.linalg.vector_norm(v)
    if norm == 0:
        raise error(f"{name} is the zero vector, which has no direction; pass a non-zero vector (e.g. a CAV)")
    return v / norm


# ------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class InterventionResult:
    """The model's predictions on the same inputs without and with the intervention.

    Tensors are CPU float32 (``logits_*``, ``probs_*``, ``coefficient_*``) or int64 (``predicted_*``,
    ``target``), one row per input. ``coefficient_before`` / ``coefficient_after`` are each example's ``h·v̂`` in
    the layer before and after the edit (``value`` or 0 afterwards, up to float round-off). ``target`` is the
    class whose probability drop is reported (default: the class predicted before).
    """

    layer: str
    mode: str
    value: float | None
    pool: str
    logits_before: torch.Tensor
    logits_after: torch.Tensor
    probs_before: torch.Tensor
    probs_after: torch.Tensor
    predicted_before: torch.Tensor
    predicted_after: torch.Tensor
    target: torch.Tensor
    coefficient_before: torch.Tensor
    coefficient_after: torch.Tensor

    @property
    def changed(self) -> np.ndarray:
        """Indices of the inputs whose predicted class changed."""
        return torch.nonzero(self.predicted_before != self.predicted_after).flatten().numpy().astype(np.int64)

    @property
    def target_drop(self) -> torch.Tensor:
        """Per input: probability of its target class before minus after (positive: the edit lowered it)."""
        rows = torch.arange(len(self.target))
        return self.probs_before[rows, self.target] - self.probs_after[rows, self.target]

    def records(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per input."""
        rows = torch.arange(len(self.target))
        before = self.probs_before[rows, self.target].tolist()
        after = self.probs_after[rows, self.target].tolist()
        pb, pa = self.predicted_before.tolist(), self.predicted_after.tolist()
        cb, ca = self.coefficient_before.tolist(), self.coefficient_after.tolist()
        return [{"index": i, "target": int(t), "predicted_before": pb[i], "predicted_after": pa[i],
                 "changed": pb[i] != pa[i], "target_prob_before": before[i], "target_prob_after": after[i],
                 "target_drop": before[i] - after[i], "coefficient_before": cb[i], "coefficient_after": ca[i]}
                for i, t in enumerate(self.target.tolist())]

    def summary(self) -> dict[str, Any]:
        """Fraction of predictions changed; mean change (after - before) of the probability of the class each input
        was predicted as before; mean target-class probability drop."""
        rows = torch.arange(len(self.target))
        own = self.probs_after[rows, self.predicted_before] - self.probs_before[rows, self.predicted_before]
        return {"layer": self.layer, "mode": self.mode, "value": self.value, "pool": self.pool,
                "examples": len(self.target), "changed": len(self.changed),
                "changed_fraction": len(self.changed) / len(self.target),
                "mean_predicted_prob_change": float(own.mean()),
                "mean_target_drop": float(self.target_drop.mean())}


def _targets(target: Any, n: int, classes: int, predicted: torch.Tensor) -> torch.Tensor:
    """The class per input whose probability drop is reported: ``predicted`` by default; the checks are those of
    the attribution targets (:func:`hiddenwidgets.methods.base.resolve_targets`)."""
    from ..methods.base import AttributionError, resolve_targets

    if target is None:
        return predicted
    try:
        t = torch.as_tensor(np.asarray(target)).reshape(-1)
    except (TypeError, ValueError) as err:
        raise InterventionError(f"target must be a class index or one per input; got {target!r} ({err})") from None
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.dtype.is_complex:
        raise InterventionError(f"target must be integer class indices; got {t.dtype} values "
                                f"{t[:4].tolist()}: convert with .long() if they are whole numbers")
    try:
        return resolve_targets(t, n, classes).clone()
    except AttributionError as err:
        raise InterventionError(str(err)) from None


@keywords_checked
def intervene(model: nn.Module, inputs: torch.Tensor, layer: str, direction: Any, *, mode: str = "project",
              value: float | None = None, reference: torch.Tensor | None = None, pool: str | None = None,
              selector: int | str | None = None, target: Any = None, batch_size: int = 256) -> InterventionResult:
    """Predictions on ``inputs`` without and with ``layer``'s output edited along ``direction``.

    Parameters
    ----------
    model
        a classifier returning logits (N, classes) (or a tuple/dict whose first tensor is the logits).
    inputs
        tensor of examples (N, ...).
    layer
        module name from ``model.named_modules()``.
    direction
        a vector in the layer's pooled feature space (tensor, array, or a
        :class:`hiddenwidgets.tcav.CAV`, whose ``pool`` and ``selector`` are then the defaults). Normalised
        to unit length.
    mode
        "project" (remove the component along the direction) or "clamp" (set it to ``value``).
    value
        the component after clamping; default: the mean ``h·v̂`` over ``reference``, else 0.
    reference
        inputs (N', ...) whose mean component is the clamp value.
    pool
        "flatten" (default) or "mean" (channel / token means); see the module docstring.
    selector
        which tensor of a tuple/dict/dataclass output to edit (default: the first tensor).
    target
        class index, or one per input, whose probability drop is reported (default: predicted class).
    batch_size
        inputs per forward pass.

    Raises
    ------
    InterventionError
        unknown layer or mode; a direction that is zero, non-finite or of the wrong size; a
        model whose output is not (N, classes) logits.
    """
    model = model_for_work(model)  # a copy of the weights while another thread trains the model
    check_inputs(inputs, InterventionError)
    module = resolve_layer(model, layer, InterventionError)
    check_choice(mode, "mode", MODES, InterventionError)
    v = unit_direction(direction, InterventionError)
    is_cav = hasattr(direction, "vector") and hasattr(direction, "layer")
    if pool is None:
        pool = getattr(direction, "pool", "flatten") if is_cav else "flatten"
    if selector is None and is_cav:
        selector = getattr(direction, "selector", None)
    check_choice(pool, "pool", EDIT_POOLS, InterventionError)
    cav_layer = direction.layer if is_cav else None
    if cav_layer is not None and cav_layer != layer:
        raise InterventionError(f"the CAV was trained on layer {cav_layer!r} but the intervention is on {layer!r}; "
                                "use the CAV's layer, or a CAV trained on this one")
    if value is not None and mode == "project":
        raise InterventionError("value= is for mode='clamp'; projecting always sets the component to 0")
    if reference is not None and mode == "project":
        raise InterventionError("reference= is for mode='clamp' (its mean component becomes the clamp value)")
    if value is not None and reference is not None:
        raise InterventionError("pass either value= (the clamp value) or reference= (inputs whose mean component is "
                                "the clamp value), not both")
    if value is not None:
        value = check_number(value, "value", error=InterventionError, hint="the component along the direction "
                             "after clamping")
    if reference is not None:
        check_inputs(reference, InterventionError, "reference")
    batch_size = check_batch_size(batch_size, InterventionError)
    device = model_device(model)

    def axis_of(h: torch.Tensor) -> int | None:
        return units_of(h, module, model=model)[0] if pool == "mean" and h.ndim >= 3 else None

    def coefficient(name: str, h: torch.Tensor) -> torch.Tensor:
        x = pooled(h, pool, InterventionError, name, axis_of(h))
        if x.shape[1] != v.numel():
            raise InterventionError(f"the direction has {v.numel()} entries but layer {name!r} gives {x.shape[1]} "
                                    f"features per example with pool={pool!r} (output shape {tuple(h.shape)}); "
                                    "pass a direction of that size, e.g. a CAV trained on this layer with this pool")
        return x.to(torch.float64) @ v.to(x.device)

    def run(data: torch.Tensor, edit: Callable[[str, torch.Tensor], torch.Tensor | None]) -> torch.Tensor:
        outs = []
        with edit_outputs(model, {layer: selector}, edit, InterventionError):
            for start in range(0, len(data), batch_size):
                outs.append(logits_of(model(data[start:start + batch_size].to(device)),
                                      InterventionError).detach().float().cpu())
        return torch.cat(outs)

    coef_before: list[torch.Tensor] = []
    coef_after: list[torch.Tensor] = []

    def record(name: str, h: torch.Tensor) -> None:
        coef_before.append(coefficient(name, h).cpu())

    def apply(name: str, h: torch.Tensor) -> torch.Tensor:
        c = coefficient(name, h)
        goal = 0.0 if mode == "project" else value
        new = _shift(h, pool, c - goal, v.to(h.device), axis_of(h))
        coef_after.append(coefficient(name, new).cpu())
        return new

    with evaluation_mode(model), torch.no_grad():
        if mode == "clamp" and value is None:
            if reference is None:
                value = 0.0
            else:
                check_inputs(reference, InterventionError, "reference")
                ref: list[torch.Tensor] = []
                run(reference, lambda name, h: ref.append(coefficient(name, h).cpu()))
                value = float(torch.cat(ref).mean())
        before = run(inputs, record)
        after = run(inputs, apply)
    n = len(inputs)
    if len(coef_before) == 0 or len(coef_after) == 0:
        raise InterventionError(f"layer {layer!r} did not run in the forward pass; choose a layer the model calls")
    cb, ca = torch.cat(coef_before), torch.cat(coef_after)
    if len(cb) != n or len(ca) != n:
        raise InterventionError(f"layer {layer!r} ran {len(cb)} times per {n} examples; intervene on a layer the "
                                "model calls once per forward pass")
    pb, pa = before.softmax(dim=1), after.softmax(dim=1)
    predicted = before.argmax(dim=1)
    return InterventionResult(layer=layer, mode=mode, value=None if mode == "project" else value, pool=pool,
                              logits_before=before, logits_after=after, probs_before=pb, probs_after=pa,
                              predicted_before=predicted, predicted_after=after.argmax(dim=1),
                              target=_targets(target, n, before.shape[1], predicted),
                              coefficient_before=cb.float(), coefficient_after=ca.float())
