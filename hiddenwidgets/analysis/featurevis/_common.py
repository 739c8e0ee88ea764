"""What every feature-visualisation function shares: the error type, argument checks, the temporary hooks that read
(and may stop) a forward pass, and the diagnosis of a model that cannot take an input.

Nothing here changes the user's model: hooks are registered for one call and removed in ``finally``; mode and
``requires_grad`` are handled by :func:`hiddenwidgets.pipeline.model_state.evaluation_mode` in the callers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from ...pipeline.capture import CaptureError, select_tensor
from ...pipeline.checks import keywords_checked
from ...pipeline.summaries import units_of
from ..interventions import _locate, resolve_layer

__all__ = ["Cancelled", "FeatureVisualizationError"]

INPUT = "<input>"  # the tensor the model receives (after the user's normalisation): Mahendran & Vedaldi's x itself
IMAGE = "<image>"  # the parameterised image in [0, 1], before transforms and normalisation (regularisers)
OUTPUT = "<output>"  # the model's output (class logits)
SPECIAL = (INPUT, IMAGE, OUTPUT)

F = TypeVar("F", bound=Callable[..., Any])


class FeatureVisualizationError(ValueError):
    """Bad input to a feature-visualisation function: the message says what was wrong, what was expected and what
    to try. ``step`` is set when an optimisation stopped at a step (a NaN objective)."""

    def __init__(self, message: str, *, step: int | None = None):
        super().__init__(message)
        self.step = step


class Cancelled(Exception):
    """Raised by :func:`~hiddenwidgets.analysis.featurevis.dissect` when ``progress`` returned False: its
    thresholds need the whole data set, so a partial result would be wrong. (Optimisations and
    :func:`~hiddenwidgets.analysis.featurevis.dataset_examples` return their partial result instead, marked
    ``cancelled=True``.)"""


class _StopForward(Exception):
    """Raised from a hook once every layer the objective reads has run: the rest of the forward pass is skipped."""


keyword_checked = keywords_checked  # unknown keywords name the valid ones and the closest (one rule, shared)


# ------------------------------------------------------------------------------------------------------------------
# argument checks
def check_int(value: Any, name: str, minimum: int = 0, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise FeatureVisualizationError(f"{name} must be an int; got {type(value).__name__} {value!r}")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        span = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        raise FeatureVisualizationError(f"{name} must be {span}; got {value}")
    return value


def check_float(value: Any, name: str, *, positive: bool = False, minimum: float | None = None) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise FeatureVisualizationError(f"{name} must be a number; got {type(value).__name__} {value!r}") from None
    if not math.isfinite(out):
        raise FeatureVisualizationError(f"{name} must be finite; got {out}")
    if positive and out <= 0:
        raise FeatureVisualizationError(f"{name} must be > 0; got {out}")
    if minimum is not None and out < minimum:
        raise FeatureVisualizationError(f"{name} must be >= {minimum}; got {out}")
    return out


def check_progress(progress: Any) -> Callable[..., Any] | None:
    if progress is not None and not callable(progress):
        raise FeatureVisualizationError(f"progress must be a callable or None; got {type(progress).__name__}")
    return progress


def model_dtype(model: nn.Module) -> torch.dtype:
    """The floating dtype of the model's parameters (float32 for a model without floating parameters)."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


def check_model(model: Any) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise FeatureVisualizationError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    return model


def check_layer(model: nn.Module, name: Any) -> nn.Module:
    """The module named ``name`` (closest names in the error otherwise), as in :mod:`hiddenwidgets.pipeline.capture`."""
    return resolve_layer(model, name, FeatureVisualizationError)


def make_normalize(normalize: Any) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The user's input transform: None, a callable ``images -> model input``, or ``(mean, std)`` per channel."""
    if normalize is None or callable(normalize):
        return normalize
    if isinstance(normalize, (tuple, list)) and len(normalize) == 2:
        mean = torch.as_tensor(normalize[0], dtype=torch.float64).reshape(-1)
        std = torch.as_tensor(normalize[1], dtype=torch.float64).reshape(-1)
        if (std <= 0).any():
            raise FeatureVisualizationError(f"normalize=(mean, std) needs std > 0 in every channel; got {std.tolist()}")

        def by_mean_std(x: torch.Tensor) -> torch.Tensor:
            shape = (1, -1) + (1,) * (x.ndim - 2)
            return (x - mean.to(x).reshape(shape)) / std.to(x).reshape(shape)

        return by_mean_std
    raise FeatureVisualizationError("normalize must be None, a callable (images in [0, 1] -> model input), or "
                                    f"(mean, std) per channel, e.g. ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)); "
                                    f"got {type(normalize).__name__}")


def run_model(model: nn.Module, x: torch.Tensor, forward: Callable[[nn.Module, torch.Tensor], Any] | None) -> Any:
    return forward(model, x) if forward is not None else model(x)


def batch_inputs(batch: Any, inputs: Callable[[Any], torch.Tensor] | None) -> torch.Tensor:
    """The input tensor of one loader batch: the batch itself, the first element of a tuple/list, or
    ``inputs(batch)``."""
    if inputs is not None:
        x = inputs(batch)
    elif isinstance(batch, torch.Tensor):
        x = batch
    elif isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        x = batch[0]
    else:
        kind = f"a dict with keys {list(batch)[:6]}" if isinstance(batch, Mapping) else type(batch).__name__
        raise FeatureVisualizationError(f"cannot find the input tensor in a batch that is {kind}; the loader should "
                                        "yield tensors or (inputs, labels, ...) tuples, or pass inputs=lambda batch: "
                                        "batch['pixel_values']")
    if not isinstance(x, torch.Tensor):
        raise FeatureVisualizationError(f"the batch's inputs must be a tensor; got {type(x).__name__}")
    return x


# ------------------------------------------------------------------------------------------------------------------
# hooks
class Taps:
    """Temporary forward hooks on named layers for one call: each layer's selected output tensor goes to
    ``on_output(name, tensor)`` the first time the layer runs in a forward pass.

    - A layer that runs twice in one forward pass raises (the objective would be ambiguous).
    - ``stop_after``: once every layer in it has run, the hook raises :class:`_StopForward`, which :meth:`forward`
      catches: the rest of the model is skipped (layers after the last one read cannot change the objective).
    - When the forward pass goes on after a layer, the model gets a *copy* of the tensor, so an in-place op
      downstream (``ReLU(inplace=True)``) cannot change the tensor the objective differentiates.
    - The tensor handed on is in one layout whatever the layer's: (N, C, H, W) for maps, (N, T, D) for
      sequences, units on axis 1 and last respectively, the unit axis decided as everywhere in hiddenwidgets
      (:func:`hiddenwidgets.pipeline.summaries.decide_units`): a channels-last (N, H, W, C) map (ConvNeXt, Swin)
      is permuted to channels-first, a 1-D convolution's (N, C, L) to (N, L, C). A view: gradients flow.

    Use as a context manager; the hooks come off on leaving it, also on errors and ``KeyboardInterrupt``.
    """

    def __init__(self, model: nn.Module, layers: Mapping[str, Any],
                 on_output: Callable[[str, torch.Tensor], None]):
        self.model = model
        self.layers = dict(layers)
        self.modules = {name: check_layer(model, name) for name in self.layers}
        self.on_output = on_output
        self.order: list[str] = []  # layers in the order they ran in the last forward pass
        self.stop_after: frozenset[str] = frozenset()
        self._seen: set[str] = set()
        self._handles: list[Any] = []
        self._axes: dict[tuple[str, tuple[int, ...]], int] = {}

    def canonical(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` with its units on axis 1 (4-D) or last (3-D); see the class docstring."""
        if tensor.ndim not in (3, 4):
            return tensor
        key = (name, tuple(tensor.shape))
        axis = self._axes.get(key)
        if axis is None:
            axis = self._axes[key] = units_of(tensor, self.modules[name], model=self.model)[0]
        if tensor.ndim == 4 and axis == 3:
            return tensor.permute(0, 3, 1, 2)
        if tensor.ndim == 3 and axis == 1:
            return tensor.transpose(1, 2)
        return tensor

    def __enter__(self) -> Taps:
        try:
            for name, module in self.modules.items():
                self._handles.append(module.register_forward_hook(self._hook_for(name, self.layers[name])))
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        handles, self._handles = self._handles, []
        for handle in handles:
            handle.remove()

    def _hook_for(self, name: str, selector: Any) -> Callable[[nn.Module, Any, Any], Any]:
        def hook(module: nn.Module, args: Any, output: Any) -> Any:
            if name in self._seen:
                raise FeatureVisualizationError(f"layer {name!r} ran twice in one forward pass; the objective needs a "
                                                "layer the model calls once (name the module at one of its uses)")
            self._seen.add(name)
            self.order.append(name)
            try:
                tensor, _ = select_tensor(output, selector)
            except CaptureError as err:
                raise FeatureVisualizationError(f"layer {name!r} ({type(module).__name__}): {err}") from None
            self.on_output(name, self.canonical(name, tensor))
            if self.stop_after and self._seen >= self.stop_after:
                raise _StopForward
            _, rebuild = _locate(output, selector)
            return rebuild(tensor.clone()) if rebuild is not None else None

        return hook

    def forward(self, model: nn.Module, x: torch.Tensor,
                forward: Callable[[nn.Module, torch.Tensor], Any] | None) -> Any:
        """Run the model on ``x``; the output, or None if the pass was stopped after the last layer read."""
        self._seen = set()
        self.order = []
        try:
            out = run_model(model, x, forward)
        except _StopForward:
            return None
        missing = [name for name in self.layers if name not in self._seen]
        if missing:
            raise FeatureVisualizationError(f"layer(s) {missing} did not run in the forward pass; choose layers the "
                                            "model calls (see model.named_modules())")
        return out


# ------------------------------------------------------------------------------------------------------------------
# a model that cannot take the input
COMMON_SIZES = (28, 32, 64, 96, 112, 128, 224, 227, 256, 299)


def _expects(module: nn.Module) -> str:
    if isinstance(module, nn.modules.conv._ConvNd):
        return f"{module.in_channels} input channels"
    if isinstance(module, nn.Linear):
        return f"{module.in_features} features in the last dimension"
    if isinstance(module, nn.Embedding):
        return f"integer token ids (< {module.num_embeddings})"
    return ""


def _failing_module(model: nn.Module, x: torch.Tensor, forward: Callable[[nn.Module, torch.Tensor], Any] | None
                    ) -> tuple[str, nn.Module, Any] | bool | None:
    """(name, module, input shapes) of the innermost module that raised on ``x`` (None if it cannot be told),
    or False if the model runs on ``x`` without error: pre/post hooks on every module, only for this diagnosis,
    removed in finally."""
    names = {id(m): n for n, m in model.named_modules()}
    stack: list[tuple[str, nn.Module, Any]] = []
    handles = []

    def pre(module: nn.Module, args: Any) -> None:
        shapes = [tuple(a.shape) for a in args if isinstance(a, torch.Tensor)]
        stack.append((names.get(id(module), "?"), module, shapes))

    def post(module: nn.Module, args: Any, output: Any) -> None:
        if stack:
            stack.pop()

    try:
        for m in model.modules():
            handles.append(m.register_forward_pre_hook(pre))
            handles.append(m.register_forward_hook(post))
        with torch.no_grad():
            run_model(model, x, forward)
    except Exception:
        return stack[-1] if stack else None
    finally:
        for h in handles:
            h.remove()
    return False


def _sizes_that_work(model: nn.Module, channels: int, dtype: torch.dtype, device: torch.device,
                     forward: Callable[[nn.Module, torch.Tensor], Any] | None) -> list[int]:
    ok = []
    for s in COMMON_SIZES:
        try:
            with torch.no_grad():
                run_model(model, torch.full((1, channels, s, s), 0.5, dtype=dtype, device=device), forward)
        except Exception:
            continue
        ok.append(s)
    return ok


def input_error(model: nn.Module, x: torch.Tensor, err: Exception,
                forward: Callable[[nn.Module, torch.Tensor], Any] | None) -> FeatureVisualizationError | None:
    """A :class:`FeatureVisualizationError` that says which layer refused an input of ``x``'s shape, what it
    expected, and (for images) which square sizes the model takes; None if the model itself runs on ``x`` (the
    error came from elsewhere, and is re-raised as it is)."""
    shape = tuple(x.shape)
    msg = f"the model cannot take inputs of shape {shape}: {type(err).__name__}: {err}"
    where = _failing_module(model, x.detach(), forward)
    if where is False:
        return None
    if isinstance(where, tuple):
        name, module, shapes = where
        msg += f". The layer that refused it: {name or '(the model)'!r} ({module.__class__.__name__})"
        if shapes:
            msg += f", which received {', '.join(str(s) for s in shapes)}"
        expected = _expects(module)
        if expected:
            msg += f" and expects {expected}"
    first = next((m for m in model.modules() if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear, nn.Embedding))),
                 None)
    if isinstance(first, nn.Embedding):
        msg += (". The model starts with an embedding, so its inputs are token ids, which cannot be optimised: "
                "optimise the embeddings instead, e.g. forward=lambda model, x: model(inputs_embeds=x) with "
                "shape=(tokens, embedding_dim) and param='pixel', transforms=None; objectives that apply there: "
                "direction, neuron, layer, class_logit")
    elif x.ndim == 4:
        channels = first.in_channels if isinstance(first, nn.modules.conv._ConvNd) else shape[1]
        sizes = _sizes_that_work(model, channels, x.dtype, x.device, forward)
        if sizes:
            msg += (f". Square inputs the model takes: {', '.join(f'{s}×{s}' for s in sizes)} with {channels} "
                    f"channel(s): pass shape=({channels}, {sizes[0]}, {sizes[0]})")
        else:
            msg += ". Pass shape=(channels, height, width) of the images the model was trained on"
    else:
        msg += ". Pass shape= the shape of one input example, as the model was trained on"
    return FeatureVisualizationError(msg)


def as_index_list(values: Iterable[Any], name: str) -> list[int]:
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise FeatureVisualizationError(f"{name} must hold integer indices; got {type(v).__name__} {v!r}")
        out.append(int(v))
    return out


def check_units(units: Any, count: int, layer: str) -> list[int]:
    """Unit (channel / feature) indices of a layer with ``count`` units; all of them for None."""
    if units is None:
        return list(range(count))
    if isinstance(units, (int, np.integer)) and not isinstance(units, bool):
        units = [units]
    if isinstance(units, torch.Tensor):
        units = units.tolist()
    if not isinstance(units, Sequence) and not isinstance(units, range):
        units = list(units)
    idx = as_index_list(units, "units")
    if not idx:
        raise FeatureVisualizationError("units is empty; pass unit indices, or None for every unit of the layer")
    bad = [u for u in idx if not 0 <= u < count]
    if bad:
        raise FeatureVisualizationError(f"unit {bad[0]} is out of range: layer {layer!r} has {count} units "
                                        f"(indices 0..{count - 1})")
    if len(set(idx)) != len(idx):
        raise FeatureVisualizationError("units lists a unit more than once; list each unit once")
    return idx
