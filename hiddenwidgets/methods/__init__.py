"""Attribution methods: every Captum primary and layer method that applies to a classifier, and the CAM family
implemented here. One small class per method (CAMs: one file each), in one registry.

>>> hw.attribute(model, images, method="grad_cam_plus_plus", target=3, layer="features.4")
>>> hw.attribute(vit, images, "grad_cam", layer="vit.layers.11.layernorm_before")   # tokens read as a grid
>>> hw.attribute(bert, input_ids, "layer_integrated_gradients", layer="bert.embeddings",
...              forward_kwargs={"attention_mask": mask})                         # (N, T) per-token
>>> hw.available_methods()
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..pipeline.model_state import model_for_work, trained_elsewhere
from ._forward import ModelCall, call_failure, read_logits
from ._layout import Layout, detect_layout, layer_output
from .base import (
    AttributionError,
    AttributionMethod,
    AttributionResult,
    Computed,
    Request,
    Targets,
    check_integer_targets,
    evaluation_mode,
    resolve_targets,
)
from .captum_methods import CAPTUM_METHODS
from .eigen_cam import EigenCAM
from .grad_cam import GradCAM
from .grad_cam_plus_plus import GradCAMPlusPlus
from .hires_cam import HiResCAM
from .layer_cam import LayerCAM
from .metrics import deletion_insertion, infidelity, sanity_check, sensitivity
from .score_cam import ScoreCAM
from .smooth_grad_cam_plus_plus import SmoothGradCAMPlusPlus
from .xgrad_cam import XGradCAM

__all__ = [
    "METHODS",
    "AttributionError",
    "AttributionResult",
    "attribute",
    "available_methods",
    "conv_layers",
    "deletion_insertion",
    "embedding_layer",
    "infidelity",
    "map_layers",
    "probe",
    "resolve_targets",
    "sanity_check",
    "sensitivity",
]

CAM_METHODS = [GradCAM, GradCAMPlusPlus, SmoothGradCAMPlusPlus, EigenCAM, ScoreCAM, LayerCAM, XGradCAM, HiResCAM]
METHODS: dict[str, type[AttributionMethod]] = {m.name: m for m in [*CAPTUM_METHODS, *CAM_METHODS]}
PERTURBATION_METHODS = ["feature_ablation", "occlusion", "shapley_value_sampling", "lime", "kernel_shap"]
# the keyword arguments attribute() takes itself; everything else is a method option
OWN = ["target", "layer", "raw", "normalize", "additional_forward_args", "forward_kwargs", "return_info"]


def available_methods() -> list[dict[str, Any]]:
    """Every method: ``name``, ``label``, ``needs_layer``, ``paper``, ``family`` ("captum" or "cam")."""
    return [vars(m.info()) for m in METHODS.values()]


def conv_layers(model: nn.Module) -> list[str]:
    """Names of the modules with 4-D (conv-like) outputs a CAM can use, by type."""
    kinds = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.Sequential)
    return [name for name, m in model.named_modules()
            if name and isinstance(m, kinds) and any(isinstance(s, nn.Conv2d) for s in m.modules())]


def map_layers(model: nn.Module, inputs: torch.Tensor | Sequence[torch.Tensor], additional_forward_args: Any = None,
               forward_kwargs: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Every layer a CAM or layer method can draw a map over, with how its output would be read (its layout), in
    one forward pass over ``inputs`` (a batch of one is enough): conv maps, channels-last maps, ViT/Swin tokens on
    the input's grid, per-token vectors of token inputs. Layers without positions or with an undecidable layout
    are left out (pass ``reshape_transform=`` to :func:`attribute` for those)."""
    xs = _as_inputs(inputs)
    found: dict[str, tuple] = {}
    named = [(name, m) for name, m in model.named_modules() if name]

    def hook_for(name: str):
        def hook(module, args, kwargs, output):
            if name not in found:
                found[name] = (module, output, args, kwargs)
        return hook

    handles = [m.register_forward_hook(hook_for(name), with_kwargs=True) for name, m in named]
    try:
        with evaluation_mode(model), torch.no_grad():
            model(*xs, *_as_args(additional_forward_args), **dict(forward_kwargs or {}))
    except (RuntimeError, TypeError, IndexError) as err:
        raise call_failure(model, xs, err) from err
    finally:
        for h in handles:
            h.remove()
    out: dict[str, str] = {}
    for name, (module, output, args, kwargs) in found.items():
        try:
            layout = detect_layout(module, name, layer_output(output, name), args, kwargs, xs)
        except AttributionError:
            continue
        if layout.kind != "features":
            out[name] = layout.description
    return out


def embedding_layer(model: nn.Module) -> tuple[str, str] | None:
    """(name, how it was found) of the model's input embedding: ``model.get_input_embeddings()`` (Hugging Face), or
    its first ``nn.Embedding``; None without one."""
    get = getattr(model, "get_input_embeddings", None)
    emb = None
    if callable(get):
        try:
            emb = get()
        except (NotImplementedError, AttributeError):
            emb = None
    for name, m in model.named_modules():
        if emb is not None and m is emb:
            return name, "model.get_input_embeddings()"
    for name, m in model.named_modules():
        if isinstance(m, nn.Embedding):
            return name, "its first nn.Embedding"
    return None


def _layers(model: nn.Module, layer: Any, method: type[AttributionMethod]) -> tuple[list[nn.Module], list[str]]:
    if not method.needs_layer:
        if layer is not None:
            raise AttributionError(f"{method.label} attributes to the input and takes no layer (got layer="
                                   f"{layer!r}); for a layer use e.g. layer_integrated_gradients or grad_cam")
        return [], []
    if layer is None:
        raise AttributionError(f"{method.label} needs a layer: pass layer=NAME, e.g. one of the conv-like layers "
                               f"{conv_layers(model)[-6:]} (or a transformer block / embedding layer by name)")
    several = isinstance(layer, (list, tuple))
    chosen = list(layer) if several else [layer]
    if several and not chosen:
        raise AttributionError("layer=[] names no layer; pass one name or module, or a list of them")
    if several and len(chosen) > 1 and not method.several_layers:
        raise AttributionError(f"{method.label} takes one layer; got {len(chosen)}")
    modules = dict(model.named_modules())
    names_of = {id(m): n for n, m in modules.items()}
    out_modules, out_names = [], []
    for item in chosen:
        if isinstance(item, nn.Module):
            if id(item) not in names_of:
                raise AttributionError(f"layer {type(item).__name__} is not a module of this model")
            out_modules.append(item)
            out_names.append(names_of[id(item)] or "(the model itself)")
        elif isinstance(item, str):
            if item not in modules:
                close = difflib.get_close_matches(item, list(modules), n=4, cutoff=0.4)
                raise AttributionError(f"no layer named {item!r}; closest: {close}; conv-like layers: "
                                       f"{conv_layers(model)[-6:]}")
            out_modules.append(modules[item])
            out_names.append(item)
        else:
            raise AttributionError(f"layer must be a name, a module, or a list of them; got {type(item).__name__}")
    return out_modules, out_names


def probe(model: nn.Module, inputs: torch.Tensor | Sequence[torch.Tensor], additional_forward_args: Any = None,
          forward_kwargs: Mapping[str, Any] | None = None) -> torch.Tensor:
    """The model's logits for ``inputs`` (no grad; read from ``output.logits`` or a tuple's first tensor), or an
    AttributionError saying what input it expects."""
    xs = _as_inputs(inputs)
    try:
        with torch.no_grad():
            out = model(*xs, *_as_args(additional_forward_args), **dict(forward_kwargs or {}))
    except (RuntimeError, TypeError, IndexError) as err:
        raise call_failure(model, xs, err) from err
    return read_logits(out)[0]


def _as_inputs(inputs: Any) -> tuple[torch.Tensor, ...]:
    xs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    if not xs or not all(isinstance(x, torch.Tensor) for x in xs):
        raise AttributionError(f"inputs must be a tensor of shape (N, ...) or a tuple of them; got "
                               f"{type(inputs).__name__}" + (f" of {[type(x).__name__ for x in xs]}" if xs else ""))
    if any(x.ndim == 0 for x in xs):
        raise AttributionError("inputs must have a batch dimension: (N, ...); got a 0-d tensor")
    n = xs[0].shape[0]
    if n == 0:
        raise AttributionError(f"inputs is an empty batch (shape {tuple(xs[0].shape)}): pass at least one input")
    if any(x.shape[0] != n for x in xs):
        raise AttributionError(f"every input needs the same batch size; got {[tuple(x.shape) for x in xs]}")
    return xs


def _as_args(args: Any) -> tuple:
    if args is None:
        return ()
    return tuple(args) if isinstance(args, (tuple, list)) else (args,)


def _targets(target: Any, n: int, predicted: Callable[[], torch.Tensor], device: torch.device) -> Targets:
    if isinstance(target, str):
        if target != "predicted":
            raise AttributionError(f"target must be a class index, one per input, 'predicted' or a callable; got "
                                   f"{target!r}")
        return Targets(indices=predicted().argmax(dim=-1), description="the predicted class of each input")
    if callable(target) and not isinstance(target, torch.Tensor):
        return Targets(score=target, description=f"the callable {getattr(target, '__name__', type(target).__name__)}")
    if isinstance(target, (list, tuple)) and target and all(callable(t) for t in target):
        if len(target) != n:
            raise AttributionError(f"got {len(target)} callable targets for {n} inputs; pass one per input, or one "
                                   "callable for all")
        return Targets(per_example=list(target), description="one callable per input")
    t = check_integer_targets(target).to(device)
    if t.numel() == 1:
        t = t.expand(n)
    if t.numel() != n:
        raise AttributionError(f"got {t.numel()} targets for {n} inputs; pass one class index, or one per input")
    return Targets(indices=t, description="the given class of each input")


def _check_options(cls: type[AttributionMethod], options: dict[str, Any]) -> None:
    valid = cls.option_names()
    unknown = sorted(set(options) - valid)
    if not unknown:
        return
    close = {u: difflib.get_close_matches(u, [*valid, *OWN], n=1, cutoff=0.6) for u in unknown}
    hints = "; ".join(f"{u!r}: did you mean {c[0]!r}?" for u, c in close.items() if c)
    noun = "argument" if len(unknown) == 1 else "arguments"
    raise TypeError(f"{cls.name} got unexpected keyword {noun} {', '.join(map(repr, unknown))}"
                    + (f" ({hints})" if hints else "") + f". Its options: {', '.join(sorted(valid)) or 'none'}; "
                    f"attribute() itself takes {', '.join(OWN)}")


def _integer_inputs(model: nn.Module, cls: type[AttributionMethod], xs: tuple[torch.Tensor, ...]) -> None:
    ints = [i for i, x in enumerate(xs) if not (x.is_floating_point() or x.is_complex())]
    if not ints or not cls.float_inputs:
        return
    x = xs[ints[0]]
    emb = embedding_layer(model)
    where = (f"layer={emb[0]!r} (found as {emb[1]})" if emb else "layer=<the embedding layer>")
    raise AttributionError(f"{cls.label} needs inputs it can differentiate, interpolate or add noise to, but input "
                           f"{ints[0]} holds integers ({x.dtype}, shape {tuple(x.shape)}: token ids?). Attribute to "
                           f"the embedding layer instead, as Captum's BERT tutorial does: "
                           f"method='layer_integrated_gradients', {where} (per-token attributions, (N, T)); or use a "
                           f"perturbation method ({', '.join(PERTURBATION_METHODS)}) that replaces tokens with "
                           "`baselines` (default 0: pass your pad or mask token id)")


def _normalised(t: torch.Tensor) -> torch.Tensor:
    """Per example, min-max scaled to [0, 1] over all its values (a constant map becomes 0)."""
    flat = t.flatten(1)
    lo = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - lo
    return ((flat - lo) / span.where(span > 0, torch.ones_like(span))).reshape(t.shape)


def _resized(m: torch.Tensor, layout: Layout, xs: tuple[torch.Tensor, ...], name: str) -> tuple[torch.Tensor, str]:
    """A layer map resized to the input: bilinear for a 2-d grid over an image, linear for a 1-d conv over a
    sequence; per-token maps already match."""
    x = xs[0]
    if layout.kind == "features":
        raise AttributionError(f"layer {name!r} gives {layout.description}: there is no map to resize to the input; "
                               "pass raw=True for per-unit attributions, or choose a layer with positions (a conv "
                               "layer, a transformer block, an embedding layer)")
    if len(layout.grid) == 2 and x.ndim == 4:
        if tuple(m.shape[1:]) == tuple(x.shape[2:]):
            return m, ""
        size = tuple(x.shape[2:])
        return F.interpolate(m.unsqueeze(1).float(), size=size, mode="bilinear", align_corners=False).squeeze(1) \
            .to(m.dtype), f"bilinearly resized from {layout.grid[0]} x {layout.grid[1]} to {size[0]} x {size[1]}"
    if len(layout.grid) == 1 and x.ndim >= 2 and m.shape[1] == x.shape[1]:
        return m, ""
    if len(layout.grid) == 1 and layout.kind == "conv1d" and x.ndim == 3:
        return F.interpolate(m.unsqueeze(1).float(), size=x.shape[2], mode="linear", align_corners=False).squeeze(1) \
            .to(m.dtype), f"linearly resized from {layout.grid[0]} to {x.shape[2]} positions"
    return m, f"kept at the layer's {layout.grid} positions (no input dims they correspond to)"


def attribute(model: nn.Module, inputs: torch.Tensor | Sequence[torch.Tensor],
              method: str = "integrated_gradients", target: Any = "predicted",
              layer: str | nn.Module | Sequence[str | nn.Module] | None = None, raw: bool = False, *,
              normalize: bool = False, additional_forward_args: Any = None,
              forward_kwargs: Mapping[str, Any] | None = None, return_info: bool = False,
              **options: Any) -> Any:
    """Attribute ``model``'s score for ``target`` to ``inputs`` with ``method`` (see :func:`available_methods`).

    Parameters
    ----------
    model : called as ``model(*inputs, *additional_forward_args, **forward_kwargs)``; its logits are the output
        tensor, ``output.logits`` (Hugging Face ``ModelOutput``) or the first tensor of a tuple (stated in
        ``AttributionResult.output``); any other output is refused.
    inputs : an (N, ...) tensor, or a tuple of them (attributions are then a tuple too).
    target : ``"predicted"``, a class index, one per input, a callable mapping the (B, classes) logits to (B,)
        scores (e.g. a softmax probability or a segmentation region's sum; its rows may be any batch Captum
        builds, so it must work row by row), or (CAMs only) a list of one callable per input, each given that
        input's logits (pytorch-grad-cam's ``targets``). Floats are refused, never truncated.
    layer : for layer methods and CAMs: a name or module, or a list of them (maps resized to the input and
        averaged, as pytorch-grad-cam does; with ``normalize`` each is scaled to [0, 1] first).
    raw : maps at the layer's own positions, not resized (a list of layers must then agree in shape); for a layer
        without positions, (N, D) per-unit attributions.
    normalize : each example's result min-max scaled to [0, 1] (pytorch-grad-cam's habit); raw values by default.
    additional_forward_args, forward_kwargs : the model's other arguments (tensors with the batch first are
        expanded with the inputs wherever a method batches copies of them).
    return_info : return an :class:`AttributionResult` (result, delta, targets, how the output and each layer
        were read) instead of the tensor.
    options : the method's own keyword arguments (Captum's ``attribute`` arguments for Captum methods;
        ``relu``, ``reshape_transform``, ``aug_smooth``, ``eigen_smooth`` and the method's own for CAMs);
        unknown ones raise TypeError naming the valid ones. ``return_convergence_delta=True`` (where Captum has
        it) returns ``(attributions, delta)``.

    Returns
    -------
    A tensor shaped like ``inputs`` for input methods; for CAMs and layer methods, an (N, H, W) map resized to the
    image (``raw=True``: the layer's grid), or (N, T) per token for token inputs (embedding-layer attributions are
    summed over the embedding features). Layer outputs are read as conv maps, channels-last maps, ViT/Swin tokens on
    the input's patch grid, per-token vectors, or through ``reshape_transform``; anything else is refused. The
    model's and every module's mode, ``requires_grad``, grads and hooks are as before afterwards.
    """
    if method not in METHODS:
        close = difflib.get_close_matches(method, list(METHODS), n=3, cutoff=0.5)
        raise AttributionError(f"unknown method {method!r}" + (f"; did you mean {close}?" if close else "")
                               + f" Available: {', '.join(METHODS)}")
    cls = METHODS[method]
    _check_options(cls, options)
    xs = _as_inputs(inputs)
    n = xs[0].shape[0]
    args = _as_args(additional_forward_args)
    if forward_kwargs is not None and (not isinstance(forward_kwargs, Mapping)
                                       or not all(isinstance(k, str) for k in forward_kwargs)):
        raise AttributionError(f"forward_kwargs must be a dict of the model's keyword arguments; got "
                               f"{type(forward_kwargs).__name__}")
    if trained_elsewhere(model):  # computed on a copy: modules given as objects are found there by name
        names_of = {id(m): n for n, m in model.named_modules()}
        layer = [names_of.get(id(x), x) if isinstance(x, nn.Module) else x for x in layer] \
            if isinstance(layer, (list, tuple)) else names_of.get(id(layer), layer) if isinstance(layer, nn.Module) \
            else layer
    model = model_for_work(model)  # a copy of the weights while another thread trains the model
    _integer_inputs(model, cls, xs)
    layers, names = _layers(model, layer, cls)
    want_delta = bool(options.get("return_convergence_delta", False))
    with evaluation_mode(model):
        def predicted() -> torch.Tensor:
            return probe(model, xs, args, forward_kwargs)

        targets = _targets(target, n, predicted, xs[0].device)
        call = ModelCall(model, len(xs), args, forward_kwargs, targets,
                         return_scores=cls.family == "captum" and targets.score is not None)
        request = Request(call, xs, targets, layers, names, options)
        try:
            computed = cls().compute(request)
        except RuntimeError as err:
            if cls.gradient_based and "does not require grad" in str(err):
                raise AttributionError(f"{cls.label} needs gradients, but the model's output does not depend "
                                       "differentiably on its input; use a perturbation method instead: occlusion, "
                                       "feature_ablation, shapley_value_sampling, lime, kernel_shap or score_cam"
                                       ) from err
            if not call._checked:  # the model failed on its first call: say how it was called
                raise call_failure(model, xs, err) from err
            raise
        except TypeError as err:
            if not call._checked:
                raise call_failure(model, xs, err) from err
            raise
    result, reduction = _finish(cls, computed, xs, names, raw, normalize)
    if return_info:
        return AttributionResult(
            attributions=result, method=method, delta=computed.delta if want_delta else None,
            targets=targets.indices, target=targets.description, output=call.read,
            layers={name: lay.description for name, lay in zip(names, computed.layouts, strict=False)},
            reduction=reduction, extra=computed.extra, warnings=computed.notes)
    return (result, computed.delta) if want_delta else result


def _finish(cls: type[AttributionMethod], computed: Computed, xs: tuple[torch.Tensor, ...], names: list[str],
            raw: bool, normalize: bool) -> tuple[Any, str]:
    """The user's result from a method's raw one: maps resized (unless raw) and averaged over layers, optionally
    normalised; and a sentence saying how the values were reduced."""
    if computed.attributions is not None:
        attrs = tuple(a.detach() for a in computed.attributions)
        if normalize:
            attrs = tuple(_normalised(a) for a in attrs)
        reduction = "per input element" + ("; min-max normalised per example" if normalize else "")
        return (attrs[0] if len(xs) == 1 else attrs), reduction
    steps = []
    if cls.family == "captum":
        steps.append("summed over the layer's channels (features) at each position" if cls.name != "layer_grad_cam"
                     else "Captum's LayerGradCam map")
    else:
        steps.append(f"{cls.label} map at the layer's positions")
    maps = []
    for m, layout, name in zip(computed.maps, computed.layouts, names, strict=True):
        if not raw:
            m, how = _resized(m, layout, xs, name)
            if how:
                steps.append(f"{name}: {how}")
        maps.append(m.detach())
    if len(maps) > 1:
        shapes = {tuple(m.shape) for m in maps}
        if len(shapes) > 1:
            raise AttributionError(f"the layers' maps have different shapes {sorted(shapes)}: with raw=True several "
                                   "layers must share a grid; drop raw=True to resize each to the input first")
        if normalize:
            maps = [_normalised(m) for m in maps]
        steps.append(f"mean over {len(maps)} layers" + (" (each normalised first)" if normalize else ""))
        out = torch.stack(maps).mean(dim=0)
    else:
        out = maps[0]
    if normalize:
        out = _normalised(out)
        steps.append("min-max normalised per example")
    return out, "; ".join(steps)
