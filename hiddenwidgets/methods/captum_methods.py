"""Thin adapters over Captum (>= 0.9): Captum's classes, names and keyword arguments, plus defaults where Captum
has none that fit an image classifier (baselines for the Shap methods, a patch grid for perturbation methods).
Anything passed as an option goes to Captum's ``attribute`` unchanged.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import torch
from torch import nn

from .base import AttributionError, AttributionMethod


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


class CaptumMethod(AttributionMethod):
    captum_class: ClassVar[str] = ""
    noise_tunnel: ClassVar[str | None] = None  # "smoothgrad", "smoothgrad_sq", "vargrad"

    def defaults(self, inputs: torch.Tensor) -> dict[str, Any]:
        return {}

    def compute(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, layer: nn.Module | None,
                **options: Any) -> torch.Tensor:
        import captum.attr as ca

        cls = getattr(ca, self.captum_class)
        algo = cls(model, layer) if self.needs_layer else cls(model)
        kwargs = {**self.defaults(inputs), **options}
        if self.noise_tunnel:
            algo = ca.NoiseTunnel(algo)
            kwargs = {"nt_type": self.noise_tunnel, "nt_samples": 10, "stdevs": 0.15, **kwargs}
        # a new tensor on the same storage (no copy): Captum sets and unsets requires_grad on what it is given, so the
        # user's own tensor is never touched; given an input that already requires grad, Integrated Gradients would
        # record its 50-step expansion in the graph (1.3 x slower at 224 x 224)
        inputs = inputs.detach()
        try:
            with warnings.catch_warnings():  # Captum's notes about the hooks it sets and the flags it sets
                warnings.filterwarnings("ignore", category=UserWarning, module=r"captum\.")
                out = algo.attribute(inputs, target=targets, **kwargs)
        except (AssertionError, TypeError) as err:
            raise AttributionError(f"{self.label} (captum.attr.{self.captum_class}) failed: {err}") from err
        if isinstance(out, tuple):
            out = out[0]
        if self.layer_map and out.ndim == 4:
            out = out.sum(dim=1)  # a layer attribution per channel -> one map (sum over channels)
        return out


def _captum(name: str, label: str, captum_class: str, paper: str, *, needs_layer: bool = False,
            gradient_based: bool = True, layer_map: bool = False, noise_tunnel: str | None = None,
            defaults=None) -> type[CaptumMethod]:
    attrs = {"name": name, "label": label, "captum_class": captum_class, "paper": paper, "needs_layer": needs_layer,
             "gradient_based": gradient_based, "layer_map": layer_map, "noise_tunnel": noise_tunnel}
    if defaults is not None:
        attrs["defaults"] = lambda self, inputs: defaults(inputs)
    return type(f"Captum_{name}", (CaptumMethod,), attrs)


def _perturbation_defaults(extra: dict[str, Any]):
    def make(inputs: torch.Tensor) -> dict[str, Any]:
        mask = patch_mask(inputs)
        return {**({"feature_mask": mask} if mask is not None else {}), **extra}
    return make


def _occlusion_defaults(inputs: torch.Tensor) -> dict[str, Any]:
    if inputs.ndim != 4:
        return {"sliding_window_shapes": (1,) * (inputs.ndim - 1)}
    _, c, h, w = inputs.shape
    win = (c, max(1, h // 7), max(1, w // 7))
    return {"sliding_window_shapes": win, "strides": (c, max(1, win[1] // 2), max(1, win[2] // 2))}


CAPTUM_METHODS: list[type[CaptumMethod]] = [
    _captum("integrated_gradients", "Integrated Gradients", "IntegratedGradients",
            "Sundararajan et al. 2017, Axiomatic Attribution for Deep Networks"),
    _captum("saliency", "Saliency", "Saliency", "Simonyan et al. 2014, Deep Inside Convolutional Networks"),
    _captum("deep_lift", "DeepLift", "DeepLift", "Shrikumar et al. 2017, Learning Important Features Through "
            "Propagating Activation Differences"),
    _captum("deep_lift_shap", "DeepLiftShap", "DeepLiftShap", "Lundberg & Lee 2017, A Unified Approach to "
            "Interpreting Model Predictions", defaults=lambda x: {"baselines": two_baselines(x)}),
    _captum("gradient_shap", "GradientShap", "GradientShap", "Lundberg & Lee 2017, A Unified Approach to "
            "Interpreting Model Predictions", defaults=lambda x: {"baselines": two_baselines(x)}),
    _captum("input_x_gradient", "Input × Gradient", "InputXGradient", "Shrikumar et al. 2016, Not Just a Black "
            "Box"),
    _captum("guided_backprop", "Guided Backprop", "GuidedBackprop", "Springenberg et al. 2015, Striving for "
            "Simplicity: The All Convolutional Net"),
    _captum("deconvolution", "Deconvolution", "Deconvolution", "Zeiler & Fergus 2014, Visualizing and "
            "Understanding Convolutional Networks"),
    _captum("guided_grad_cam", "Guided Grad-CAM", "GuidedGradCam", "Selvaraju et al. 2017, Grad-CAM",
            needs_layer=True),
    _captum("feature_ablation", "Feature Ablation", "FeatureAblation", "Captum: ablation of feature groups",
            gradient_based=False, defaults=_perturbation_defaults({"perturbations_per_eval": 16})),
    _captum("occlusion", "Occlusion", "Occlusion", "Zeiler & Fergus 2014, Visualizing and Understanding "
            "Convolutional Networks", gradient_based=False, defaults=_occlusion_defaults),
    _captum("shapley_value_sampling", "Shapley Value Sampling", "ShapleyValueSampling", "Castro et al. 2009, "
            "Polynomial calculation of the Shapley value based on sampling", gradient_based=False,
            defaults=_perturbation_defaults({"n_samples": 10, "perturbations_per_eval": 16})),
    _captum("lime", "Lime", "Lime", "Ribeiro et al. 2016, \"Why Should I Trust You?\"", gradient_based=False,
            defaults=_perturbation_defaults({"n_samples": 100, "perturbations_per_eval": 16})),
    _captum("kernel_shap", "KernelShap", "KernelShap", "Lundberg & Lee 2017, A Unified Approach to Interpreting "
            "Model Predictions", gradient_based=False,
            defaults=_perturbation_defaults({"n_samples": 100, "perturbations_per_eval": 16})),
    _captum("lrp", "LRP", "LRP", "Bach et al. 2015, On Pixel-Wise Explanations for Non-Linear Classifier "
            "Decisions by Layer-Wise Relevance Propagation"),
    _captum("smoothgrad", "SmoothGrad", "Saliency", "Smilkov et al. 2017, SmoothGrad: removing noise by adding "
            "noise", noise_tunnel="smoothgrad"),
    _captum("smoothgrad_sq", "SmoothGrad²", "Saliency", "Hooker et al. 2019, A Benchmark for Interpretability "
            "Methods in Deep Neural Networks", noise_tunnel="smoothgrad_sq"),
    _captum("vargrad", "VarGrad", "Saliency", "Adebayo et al. 2018, Local Explanation Methods for Deep Neural "
            "Networks Lack Sensitivity to Parameter Values", noise_tunnel="vargrad"),
    _captum("layer_grad_cam", "LayerGradCam (Captum)", "LayerGradCam", "Selvaraju et al. 2017, Grad-CAM",
            needs_layer=True, layer_map=True),
    _captum("layer_integrated_gradients", "LayerIntegratedGradients", "LayerIntegratedGradients",
            "Sundararajan et al. 2017, Axiomatic Attribution for Deep Networks", needs_layer=True, layer_map=True),
    _captum("layer_conductance", "LayerConductance", "LayerConductance", "Dhamdhere et al. 2018, How Important Is "
            "a Neuron?", needs_layer=True, layer_map=True),
]


class LayerActivationMethod(CaptumMethod):
    """Captum's LayerActivation: the layer's output, summed over channels (no target involved)."""

    name = "layer_activation"
    label = "LayerActivation"
    captum_class = "LayerActivation"
    paper = "Captum: the layer's activations"
    needs_layer = True
    layer_map = True
    gradient_based = False

    def compute(self, model, inputs, targets, layer, **options):
        import captum.attr as ca

        out = ca.LayerActivation(model, layer).attribute(inputs, **options)
        out = out[0] if isinstance(out, tuple) else out
        return out.sum(dim=1) if out.ndim == 4 else out


CAPTUM_METHODS.append(LayerActivationMethod)
