"""Thin adapters over Captum (>= 0.9): Captum's classes, names and keyword arguments, plus defaults where Captum
has none that fit an image classifier (baselines for the Shap methods, a patch grid for perturbation methods).

Each method accepts exactly the keyword arguments of its Captum ``attribute`` (introspected; NoiseTunnel's too for
SmoothGrad and its variants), which pass to Captum unchanged; layer methods also take ``reshape_transform``.
The model is called through :class:`~._forward.ModelCall` (extra arguments, ``ModelOutput`` logits, callable
targets). Captum's notes about the hooks it sets are dropped; every other warning it gives is re-issued and
recorded, and the one that says GuidedGradCam returned an empty tensor becomes an error.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections import Counter
from collections.abc import Iterator
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ._forward import call_failure
from ._layout import Layout, detect_layout, layer_output
from .base import AttributionError, AttributionMethod, Computed, Request, keyword_names

# Captum's notes about what it does to run (hooks set and removed, requires_grad set on its own copy of the inputs,
# Lime fitting one model per input): nothing about the result
BENIGN = re.compile(r"Setting forward, backward hooks and attributes on non-linear|Setting backward hooks on ReLU "
                    r"activations|did not already require gradients, required_grads has been set automatically|"
                    r"You are providing multiple inputs for Lime / Kernel SHAP")
EMPTY = "returning empty tensor"

# nonlinear modules Captum's DeepLift has a rule for (by exact type, as Captum looks them up)
DEEPLIFT_RULES = (nn.ReLU, nn.ELU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.MaxPool1d, nn.MaxPool2d,
                  nn.MaxPool3d, nn.Softmax)
# modules that are nonlinear in their input but have no DeepLift rule: Captum passes plain gradients through them
NONLINEAR = (nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.SELU, nn.CELU, nn.PReLU,
             nn.RReLU, nn.LogSigmoid, nn.Softsign, nn.Tanhshrink, nn.Softshrink, nn.Hardshrink, nn.Threshold,
             nn.GLU, nn.LogSoftmax, nn.Softmin, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm,
             nn.MultiheadAttention, nn.RNNBase, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
             nn.RMSNorm)


def _nonlinear_without_rule(model: nn.Module) -> Counter:
    """Type name -> count of the modules DeepLift would treat as linear although they are not."""
    found: Counter = Counter()
    for m in model.modules():
        t = type(m)
        if isinstance(m, DEEPLIFT_RULES) and t not in DEEPLIFT_RULES:
            found[t.__name__] += 1  # a subclass: Captum looks rules up by exact type
        elif isinstance(m, NONLINEAR) or t.__module__.startswith("transformers.activations"):
            found[t.__name__] += 1
    return found


def _counted(c: Counter) -> str:
    return ", ".join(f"{name} ({k})" for name, k in c.most_common(6))


_REISSUED: dict = {}  # the warnings registry for Captum's re-issued warnings


@contextlib.contextmanager
def captum_warnings(notes: list[str]) -> Iterator[None]:
    """Run Captum, dropping only its notes about the hooks it sets; every other warning is re-issued and recorded in
    ``notes``; the warning that Guided Grad-CAM returned an empty tensor is raised as an AttributionError."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        text = " ".join(str(w.message).split())
        if BENIGN.search(text):
            continue
        if EMPTY in text:
            raise AttributionError(f"Captum returned an empty tensor: {text}")
        notes.append(text)
        # at Captum's own line, once per message and line under Python's default filter (as if Captum warned)
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, registry=_REISSUED)


def patch_mask(inputs: torch.Tensor, patches: int = 7) -> torch.Tensor | None:
    """A feature mask grouping image pixels into about ``patches`` x ``patches`` squares (all channels together)."""
    if inputs.ndim != 4:
        return None
    _, c, h, w = inputs.shape
    ph, pw = max(1, -(-h // patches)), max(1, -(-w // patches))
    rows = torch.arange(h, device=inputs.device) // ph
    cols = torch.arange(w, device=inputs.device) // pw
    ids = rows[:, None] * (-(-w // pw)) + cols[None, :]
    return ids.expand(1, c, h, w).contiguous()


def two_baselines(inputs: torch.Tensor) -> torch.Tensor:
    """Zeros and the batch mean: the Shap methods need a distribution of at least two baselines."""
    return torch.stack([torch.zeros_like(inputs[0]), inputs.mean(dim=0)])


PER_INPUT = {"feature_mask", "baselines", "sliding_window_shapes", "strides"}


def _per_input(make):
    """A defaults function of one tensor -> one of a tuple of inputs (Captum wants a tuple of masks, windows or
    baselines for a tuple of inputs; feature ids are offset so that no two inputs share one)."""
    def defaults(inputs: tuple[torch.Tensor, ...]) -> dict[str, Any]:
        parts = [make(x) for x in inputs]
        if len(inputs) == 1:
            return parts[0]
        out: dict[str, Any] = {}
        for key in parts[0]:
            values = [p.get(key) for p in parts]
            if key == "feature_mask":
                if any(v is None for v in values):
                    continue  # Captum's default: every element its own feature
                offset, shifted = 0, []
                for v in values:
                    shifted.append(v + offset)
                    offset += int(v.max()) + 1
                values = shifted
            out[key] = tuple(values) if key in PER_INPUT else values[0]
        return out
    return defaults


def _perturbation_defaults(extra: dict[str, Any]):
    def make(x: torch.Tensor) -> dict[str, Any]:
        mask = patch_mask(x)
        return {**({"feature_mask": mask} if mask is not None else {}), **extra}
    return _per_input(make)


def _occlusion_defaults(x: torch.Tensor) -> dict[str, Any]:
    # 16 occluded copies per forward pass, as the other perturbation methods here: the same result in ~1/16 of the
    # model calls (Captum's default evaluates one window position per call)
    if x.ndim != 4:
        return {"sliding_window_shapes": (1,) * (x.ndim - 1), "perturbations_per_eval": 16}
    _, c, h, w = x.shape
    win = (c, max(1, h // 7), max(1, w // 7))
    return {"sliding_window_shapes": win, "strides": (c, max(1, win[1] // 2), max(1, win[2] // 2)),
            "perturbations_per_eval": 16}


_OPTION_NAMES: dict[type, set[str]] = {}
SKIP = {"self", "inputs", "target", "additional_forward_args"}


class CaptumMethod(AttributionMethod):
    captum_class: ClassVar[str] = ""
    noise_tunnel: ClassVar[str | None] = None  # "smoothgrad", "smoothgrad_sq", "vargrad"
    deeplift_rules: ClassVar[bool] = False  # needs a DeepLift rule for every nonlinear module
    guided: ClassVar[bool] = False  # changes the backward pass of ReLU modules
    completeness: ClassVar[bool] = False  # attributions sum to f(x) - f(baseline): check the convergence delta

    def checks_completeness(self, model: nn.Module) -> bool:
        """Whether to ask Captum for the convergence delta and warn when it is large: always for the path methods
        (two more forward passes against their n_steps), and for DeepLift where a rule does not conserve the sum
        (Captum's MaxPool and Softmax rules, with a baseline other than zero)."""
        if self.completeness:
            return True
        return self.deeplift_rules and any(isinstance(m, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.Softmax))
                                           for m in model.modules())

    @classmethod
    def option_names(cls) -> set[str]:
        if cls not in _OPTION_NAMES:
            import captum.attr as ca

            names = keyword_names(getattr(ca, cls.captum_class).attribute, SKIP)
            if cls.noise_tunnel:
                names |= keyword_names(ca.NoiseTunnel.attribute, SKIP)
            if cls.needs_layer:
                names.add("reshape_transform")
            _OPTION_NAMES[cls] = names
        return _OPTION_NAMES[cls]

    def defaults(self, inputs: tuple[torch.Tensor, ...]) -> dict[str, Any]:
        return {}

    def check_model(self, model: nn.Module, notes: list[str]) -> None:
        """Refuse a model this method would explain wrongly (before any work)."""
        if self.deeplift_rules:
            bad = _nonlinear_without_rule(model)
            if bad:
                raise AttributionError(f"{self.label} (captum.attr.{self.captum_class}) has rescale rules only for "
                                       "ReLU, ELU, LeakyReLU, Sigmoid, Tanh, Softplus, MaxPool and Softmax modules; "
                                       f"this model also has {_counted(bad)}, which Captum would pass through with "
                                       "plain gradients, so the result would be neither DeepLift's nor sum to "
                                       "f(x) - f(baseline). Use integrated_gradients (or gradient_shap) instead")
        if self.guided:
            if not any(isinstance(m, nn.ReLU) for m in model.modules()):
                other = _nonlinear_without_rule(model)
                raise AttributionError(f"{self.label} changes the backward pass of nn.ReLU modules, and this model "
                                       f"has none" + (f" (its nonlinearities: {_counted(other)})" if other else "")
                                       + ": the result would be the plain gradient under another name. Use "
                                       "saliency (abs=False for the signed gradient) or input_x_gradient")
            other = _nonlinear_without_rule(model)
            if other:
                notes.append(f"only the model's nn.ReLU modules are guided; {_counted(other)} pass plain gradients")

    def compute(self, request: Request) -> Computed:
        if request.targets.per_example is not None:
            raise AttributionError(f"{self.label}: Captum evaluates inputs in batches of its own making, so one "
                                   "callable per input cannot be matched to rows; pass one callable mapping the "
                                   "(B, classes) logits to (B,) scores, or class indices")
        out = Computed()
        self.check_model(request.call.model, out.notes)
        if self.needs_layer:
            for layer, name in zip(request.layers, request.layer_names, strict=True):
                self._layer(request, layer, name, out)
            return out
        attrs, delta = self._run(request, None, out.notes)
        out.attributions = attrs if isinstance(attrs, tuple) else (attrs,)
        out.delta = delta
        if self.checks_completeness(request.call.model):
            check_delta(self.label, out.attributions, delta, out.notes)
        return out

    def _algorithm(self, request: Request, layer: nn.Module | None):
        import captum.attr as ca

        cls = getattr(ca, self.captum_class)
        algo = cls(request.call, layer) if self.needs_layer else cls(request.call)
        return ca.NoiseTunnel(algo) if self.noise_tunnel else algo

    def _run(self, request: Request, layer: nn.Module | None, notes: list[str]) -> tuple[Any, torch.Tensor | None]:
        """Captum's ``attribute`` with our defaults, the user's options and the extra forward arguments; returns
        (attributions, convergence delta or None)."""
        options = {k: v for k, v in request.options.items() if k != "reshape_transform"}
        want_delta = bool(options.pop("return_convergence_delta", False))
        kwargs = {**self.defaults(request.inputs), **options}
        if self.noise_tunnel:
            kwargs = {"nt_type": self.noise_tunnel, "nt_samples": 10, "stdevs": 0.15, **kwargs}
        delta_wanted = want_delta or self.checks_completeness(request.call.model)
        if delta_wanted:
            kwargs["return_convergence_delta"] = True
        if self.captum_class != "LayerActivation":
            kwargs["target"] = request.targets.indices
        call = request.call
        # a new tensor on the same storage (no copy): Captum sets and unsets requires_grad on what it is given, so
        # the user's own tensor is never touched; given an input that already requires grad, Integrated Gradients
        # would record its 50-step expansion in the graph (1.3 x slower at 224 x 224)
        inputs = tuple(x.detach() for x in request.inputs)
        try:
            with captum_warnings(notes):
                out = self._algorithm(request, layer).attribute(inputs[0] if len(inputs) == 1 else inputs,
                                                                additional_forward_args=call.extra or None,
                                                                **kwargs)
        except (AssertionError, TypeError) as err:
            if isinstance(err, TypeError) and not call._checked:  # the model's own call failed
                raise call_failure(call.model, request.inputs, err) from err
            raise AttributionError(f"{self.label} (captum.attr.{self.captum_class}) failed: {err}") from err
        except RuntimeError as err:
            if "used more than once" in str(err):  # Captum's DeepLift keeps one input/output per module
                raise AttributionError(
                    f"{self.label} (captum.attr.{self.captum_class}) keeps one input and output per module, and "
                    "this model calls a nonlinear module more than once per forward pass (a ReLU shared by two "
                    "places, as in torchvision's ResNet blocks). Use integrated_gradients or gradient_shap, or give "
                    "each place its own module") from err
            raise
        if delta_wanted:
            out, delta = out
            return out, delta.detach()
        return out, None

    def _layer(self, request: Request, layer: nn.Module, name: str, out: Computed) -> None:
        seen: dict[str, Any] = {}

        def hook(module, args, kwargs, output):
            if "output" not in seen:
                seen.update(output=layer_output(output, name).detach(), args=args, kwargs=kwargs,
                            parts=[type(o).__name__ for o in output] if isinstance(output, tuple) else None)

        handle = layer.register_forward_hook(hook, with_kwargs=True)  # runs before Captum's own hook
        try:
            attr, delta = self._run(request, layer, out.notes)
        except (AttributeError, AttributionError) as err:
            parts = seen.get("parts")
            if parts and any(p != "Tensor" for p in parts):
                raise AttributionError(f"Captum's layer methods attribute to every output of the layer, which must "
                                       f"all be tensors; layer {name!r} ({type(layer).__name__}) returns "
                                       f"({', '.join(parts)}). Use a CAM method (it reads the first tensor), or "
                                       "a sublayer that returns one tensor") from err
            raise
        finally:
            handle.remove()
        if "output" not in seen:
            raise AttributionError(f"layer {name!r} did not run during the forward pass; choose a layer the model uses")
        if isinstance(attr, tuple):
            attr = attr[0]
        # attributed to the layer's input, the attribution has the input's shape
        reference = attr if request.options.get("attribute_to_layer_input") else seen["output"]
        layout = detect_layout(layer, name, reference, seen["args"], seen["kwargs"], request.inputs,
                               request.options.get("reshape_transform"))
        self.check_layout(layout, name)
        if self.checks_completeness(request.call.model):
            check_delta(f"{self.label} at {name!r}", (attr,), delta, out.notes)
        if layout.kind == "features":
            m = attr.detach()
        else:
            m = layout.to_channels(attr.detach()).sum(dim=1)
            dropped = layout.prefix_part(attr.detach())
            if dropped is not None:
                out.extra["class_token" if len(request.layers) == 1 else f"class_token:{name}"] = dropped
        out.maps.append(m)
        out.layouts.append(layout)
        if delta is not None:
            out.delta = delta if out.delta is None else torch.stack([out.delta, delta])

    def check_layout(self, layout: Layout, name: str) -> None:
        pass


def check_delta(label: str, attrs: tuple[torch.Tensor, ...], delta: torch.Tensor | None, notes: list[str]) -> None:
    """Warn when attributions that should sum to f(x) - f(baseline) miss it by more than 5 % of that difference
    plus 0.001 (Captum's convergence delta: their sum minus the difference)."""
    n = attrs[0].shape[0]
    if delta is None or delta.ndim != 1 or delta.numel() % n:
        return
    delta = delta.reshape(n, -1).mean(dim=1)  # DeepLiftShap: one per (input, baseline), inputs first
    total = sum(a.detach().flatten(1).sum(1) for a in attrs)
    diff = total - delta  # f(x) - f(baseline)
    bad = (delta.abs() > 0.05 * diff.abs() + 1e-3).nonzero().flatten()
    if bad.numel():
        i = int(bad[0])
        msg = (f"{label}: the attributions of input {i} sum to {float(total[i]):.4g}, but f(x) - f(baseline) = "
               f"{float(diff[i]):.4g} (convergence delta {float(delta[i]):.3g}; {len(bad)} of {len(delta)} inputs "
               "off by more than 5 %): the attributions do not add up to the change of the output. Raise n_steps "
               "(path methods), or check the baseline (a model that also reads its input ids, e.g. to find padding, "
               "sees the baseline's ids); DeepLift's rules for MaxPool and Softmax do not conserve the sum")
        notes.append(msg)
        warnings.warn(msg, stacklevel=4)


class LayerGradCamMethod(CaptumMethod):
    """Captum's LayerGradCam averages the gradient over dims 2.. of the layer's output: right for (N, C, ...) conv
    outputs only."""

    def check_layout(self, layout: Layout, name: str) -> None:
        if layout.kind not in ("conv", "conv1d"):
            raise AttributionError(f"Captum's LayerGradCam reads layer {name!r}'s output as (N, C, positions...) and "
                                   f"averages gradients over dims 2..; this layer's output is {layout.description}. "
                                   "Use method='grad_cam' (the same Grad-CAM, reading this layout)")


class GuidedGradCamMethod(CaptumMethod):
    """Guided Grad-CAM as Captum defines it (Guided Backprop times the ReLU'd Grad-CAM upsampled to the input,
    ``interpolate_mode`` "nearest" by default), with the Grad-CAM computed by this package's pipeline so that
    token and channels-last layers (and ``reshape_transform``) are read right. Captum's own GuidedGradCam returns
    an empty tensor for layers whose output is not (N, C, H, W)."""

    @classmethod
    def option_names(cls) -> set[str]:
        return {"interpolate_mode", "reshape_transform"}

    def compute(self, request: Request) -> Computed:
        import captum.attr as ca

        from .grad_cam import GradCAM

        if request.targets.per_example is not None:
            return super().compute(request)  # the same refusal
        out = Computed()
        self.check_model(request.call.model, out.notes)
        x = request.inputs[0]
        if len(request.inputs) != 1 or x.ndim != 4:
            raise AttributionError(f"Guided Grad-CAM upsamples a Grad-CAM map to an image: it needs one (N, C, H, W) "
                                   f"input; got {[tuple(t.shape) for t in request.inputs]}")
        mode = request.options.get("interpolate_mode", "nearest")
        cam_request = Request(request.call, request.inputs, request.targets, request.layers, request.layer_names,
                              {"reshape_transform": request.options.get("reshape_transform")})
        cam = GradCAM().compute(cam_request)
        grid, layout = cam.maps[0], cam.layouts[0]
        if grid.ndim != 3:
            raise AttributionError(f"Guided Grad-CAM needs a layer with a 2-d grid; layer {request.layer_names[0]!r} "
                                   f"is read as {layout.description}")
        up = F.interpolate(grid.unsqueeze(1), size=x.shape[2:], mode=mode)
        guided = ca.GuidedBackprop(request.call)
        try:
            with captum_warnings(out.notes):
                gb = guided.attribute(x.detach(), target=request.targets.indices,
                                      additional_forward_args=request.call.extra or None)
        except (AssertionError, TypeError) as err:
            raise AttributionError(f"{self.label} (captum.attr.GuidedBackprop) failed: {err}") from err
        out.attributions = (gb * up,)
        out.layouts.append(layout)
        out.notes.extend(cam.notes)
        return out


class LRPMethod(CaptumMethod):
    """Captum's LRP, refused up front for a model with a layer it has no rule for, and run on a private copy of the
    model (Captum changes the weights of the layers it propagates through while it runs)."""

    def check_model(self, model: nn.Module, notes: list[str]) -> None:
        from captum.attr._core.lrp import SUPPORTED_LAYERS_WITH_RULES, SUPPORTED_NON_LINEAR_LAYERS

        known = (*SUPPORTED_LAYERS_WITH_RULES, *SUPPORTED_NON_LINEAR_LAYERS)
        bad = Counter(type(m).__name__ for m in model.modules()
                      if not any(True for _ in m.children()) and type(m) not in known and not hasattr(m, "rule"))
        if bad:
            raise AttributionError(f"LRP (captum.attr.LRP) has no propagation rule for {_counted(bad)}: Captum has "
                                   "rules for Conv2d, Linear, BatchNorm2d, MaxPool, AvgPool2d, AdaptiveAvgPool2d, "
                                   "ReLU, Dropout and Tanh; set module.rule on the others (captum.attr._utils."
                                   "lrp_rules) or use another method")

    def compute(self, request: Request) -> Computed:
        # Captum's LRP rewrites the weights of every layer with a rule while it runs (and leaves an `activations`
        # dict on each): on the user's model another thread would see those weights, so it runs on a private copy
        from ..pipeline.model_state import ModelSnapshot

        call = request.call
        live = call.model
        call.model = ModelSnapshot(live).model
        try:
            return super().compute(request)
        finally:
            call.model = live


def _captum(name: str, label: str, captum_class: str, paper: str, *, needs_layer: bool = False,
            gradient_based: bool = True, layer_map: bool = False, noise_tunnel: str | None = None,
            defaults=None, float_inputs: bool = True, base: type[CaptumMethod] = CaptumMethod,
            **flags: Any) -> type[CaptumMethod]:
    attrs = {"name": name, "label": label, "captum_class": captum_class, "paper": paper, "needs_layer": needs_layer,
             "gradient_based": gradient_based, "layer_map": layer_map, "noise_tunnel": noise_tunnel,
             "float_inputs": float_inputs, "several_layers": layer_map, **flags}
    if defaults is not None:
        attrs["defaults"] = lambda self, inputs: defaults(inputs)
    return type(f"Captum_{name}", (base,), attrs)


_shap_defaults = _per_input(lambda x: {"baselines": two_baselines(x)})
PERTURBATION = {"gradient_based": False, "float_inputs": False}

CAPTUM_METHODS: list[type[CaptumMethod]] = [
    _captum("integrated_gradients", "Integrated Gradients", "IntegratedGradients",
            "Sundararajan et al. 2017, Axiomatic Attribution for Deep Networks", completeness=True),
    _captum("saliency", "Saliency", "Saliency", "Simonyan et al. 2014, Deep Inside Convolutional Networks"),
    _captum("deep_lift", "DeepLift", "DeepLift", "Shrikumar et al. 2017, Learning Important Features Through "
            "Propagating Activation Differences", deeplift_rules=True),
    _captum("deep_lift_shap", "DeepLiftShap", "DeepLiftShap", "Lundberg & Lee 2017, A Unified Approach to "
            "Interpreting Model Predictions", defaults=_shap_defaults, deeplift_rules=True),
    _captum("gradient_shap", "GradientShap", "GradientShap", "Lundberg & Lee 2017, A Unified Approach to "
            "Interpreting Model Predictions", defaults=_shap_defaults),
    _captum("input_x_gradient", "Input × Gradient", "InputXGradient", "Shrikumar et al. 2016, Not Just a Black "
            "Box"),
    _captum("guided_backprop", "Guided Backprop", "GuidedBackprop", "Springenberg et al. 2015, Striving for "
            "Simplicity: The All Convolutional Net", guided=True),
    _captum("deconvolution", "Deconvolution", "Deconvolution", "Zeiler & Fergus 2014, Visualizing and "
            "Understanding Convolutional Networks", guided=True),
    _captum("guided_grad_cam", "Guided Grad-CAM", "GuidedGradCam", "Selvaraju et al. 2017, Grad-CAM",
            needs_layer=True, guided=True, base=GuidedGradCamMethod),
    _captum("feature_ablation", "Feature Ablation", "FeatureAblation", "Captum: ablation of feature groups",
            defaults=_perturbation_defaults({"perturbations_per_eval": 16}), **PERTURBATION),
    _captum("occlusion", "Occlusion", "Occlusion", "Zeiler & Fergus 2014, Visualizing and Understanding "
            "Convolutional Networks", defaults=_per_input(_occlusion_defaults), **PERTURBATION),
    _captum("shapley_value_sampling", "Shapley Value Sampling", "ShapleyValueSampling", "Castro et al. 2009, "
            "Polynomial calculation of the Shapley value based on sampling",
            defaults=_perturbation_defaults({"n_samples": 10, "perturbations_per_eval": 16}), **PERTURBATION),
    _captum("lime", "Lime", "Lime", "Ribeiro et al. 2016, \"Why Should I Trust You?\"",
            defaults=_perturbation_defaults({"n_samples": 100, "perturbations_per_eval": 16}), **PERTURBATION),
    _captum("kernel_shap", "KernelShap", "KernelShap", "Lundberg & Lee 2017, A Unified Approach to Interpreting "
            "Model Predictions", defaults=_perturbation_defaults({"n_samples": 100, "perturbations_per_eval": 16}),
            **PERTURBATION),
    _captum("lrp", "LRP", "LRP", "Bach et al. 2015, On Pixel-Wise Explanations for Non-Linear Classifier "
            "Decisions by Layer-Wise Relevance Propagation", base=LRPMethod),
    _captum("smoothgrad", "SmoothGrad", "Saliency", "Smilkov et al. 2017, SmoothGrad: removing noise by adding "
            "noise", noise_tunnel="smoothgrad"),
    _captum("smoothgrad_sq", "SmoothGrad²", "Saliency", "Hooker et al. 2019, A Benchmark for Interpretability "
            "Methods in Deep Neural Networks", noise_tunnel="smoothgrad_sq"),
    _captum("vargrad", "VarGrad", "Saliency", "Adebayo et al. 2018, Local Explanation Methods for Deep Neural "
            "Networks Lack Sensitivity to Parameter Values", noise_tunnel="vargrad"),
    _captum("layer_grad_cam", "LayerGradCam (Captum)", "LayerGradCam", "Selvaraju et al. 2017, Grad-CAM",
            needs_layer=True, layer_map=True, float_inputs=False, base=LayerGradCamMethod),
    _captum("layer_integrated_gradients", "LayerIntegratedGradients", "LayerIntegratedGradients",
            "Sundararajan et al. 2017, Axiomatic Attribution for Deep Networks", needs_layer=True, layer_map=True,
            float_inputs=False, completeness=True),
    _captum("layer_conductance", "LayerConductance", "LayerConductance", "Dhamdhere et al. 2018, How Important Is "
            "a Neuron?", needs_layer=True, layer_map=True, completeness=True),
    _captum("layer_activation", "LayerActivation", "LayerActivation", "Captum: the layer's activations",
            needs_layer=True, layer_map=True, gradient_based=False, float_inputs=False),
]
