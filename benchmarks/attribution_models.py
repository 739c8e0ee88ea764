"""Every attribution method on small real architectures: does ``hw.attribute`` give a right number or a clear
refusal?

    python benchmarks/attribution_models.py [--models vit swin ...] [--methods grad_cam ...] [--wrapped]

Models (random weights, small configs, built from ``transformers`` or by hand): ViT, Swin, ConvNeXt, ResNet
(``*ForImageClassification``), BERT and GPT-2 (``*ForSequenceClassification``, token ids), and an LSTM text
classifier called as ``forward(ids, lengths)``. Each is called the way its users call Captum / pytorch-grad-cam:
``target`` one class per input, ``layer`` the layer those libraries' docs suggest (ViT: last block's
``layernorm_before``; Swin: last block's ``layernorm_before``; ConvNeXt / ResNet: last stage; text: the embedding
layer), extra inputs as ``additional_forward_args``. ``--wrapped`` adds each Hugging Face model behind a module
returning ``.logits`` (the usual workaround for Captum), as ``vit+logits`` etc.

Prints one JSON object per (model, method): ``outcome`` is

- ``works``: the result equals an independent reference computed here (``check`` says which);
- ``works_unchecked``: right shape and finite, no reference here (stochastic methods);
- ``wrong``: a result that differs from the reference, has the wrong shape, or is empty;
- ``wrong_warned``: such a result, with a warning from hiddenwidgets saying it is off;
- ``refused``: ``hw.AttributionError``, with its message;
- ``unclear_error``: any other exception (from inside torch, Captum or the model).

and a final ``{"summary": ...}`` line with the counts. References are written here from the papers' formulas on
the layer's activations reshaped by hand (ViT: class token dropped, 4 x 4 patch grid; Swin: 4 x 4 token grid; text:
tokens as positions), never by calling hiddenwidgets.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import hiddenwidgets as hw
from hiddenwidgets.methods import METHODS

warnings.filterwarnings("ignore")
N = 2
TARGET = torch.tensor([1, 2])


@dataclass
class Case:
    name: str
    model: nn.Module
    inputs: torch.Tensor
    layer: str
    forward: Callable[..., torch.Tensor]  # (inputs, *extra) -> (N, classes), calling the model as it needs
    canon: Callable[[torch.Tensor], torch.Tensor]  # layer output -> (N, K, positions...) by hand
    extra: tuple = ()  # the model's other arguments, passed as additional_forward_args
    text: bool = False

    @property
    def call(self) -> dict[str, Any]:
        return {"additional_forward_args": self.extra} if self.extra else {}

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x, *self.extra)


def first(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def image_cases() -> list[Case]:
    from transformers import (
        ConvNextConfig,
        ConvNextForImageClassification,
        ResNetConfig,
        ResNetForImageClassification,
        SwinConfig,
        SwinForImageClassification,
        ViTConfig,
        ViTForImageClassification,
    )

    torch.manual_seed(0)
    x = torch.randn(N, 3, 32, 32)
    vit = ViTForImageClassification(ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                              num_attention_heads=2, intermediate_size=64, num_labels=5)).eval()
    swin = SwinForImageClassification(SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1],
                                                 num_heads=[1, 2], window_size=4, num_labels=5)).eval()
    convnext = ConvNextForImageClassification(ConvNextConfig(num_channels=3, num_stages=2, hidden_sizes=[8, 16],
                                                             depths=[1, 1], num_labels=5)).eval()
    resnet = ResNetForImageClassification(ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16],
                                                       depths=[1, 1], layer_type="basic", num_labels=5)).eval()

    def tokens_grid(a, cls):  # (N, [1 +] 16, D) -> (N, D, 4, 4)
        a = a[:, 1:] if cls else a
        return a.reshape(a.shape[0], 4, 4, a.shape[-1]).permute(0, 3, 1, 2)

    return [
        Case("vit", vit, x, "vit.layers.1.layernorm_before", lambda i: vit(i).logits,
             lambda a: tokens_grid(a, True)),
        Case("swin", swin, x, "swin.encoder.layers.1.blocks.0.layernorm_before", lambda i: swin(i).logits,
             lambda a: tokens_grid(a, False)),
        Case("convnext", convnext, x, "convnext.encoder.stages.1", lambda i: convnext(i).logits, lambda a: a),
        Case("resnet", resnet, x, "resnet.encoder.stages.1", lambda i: resnet(i).logits, lambda a: a),
    ]


class LSTMClassifier(nn.Module):
    """ids (N, T) and lengths (N,) -> logits, with packed sequences (the PyTorch text tutorial's shape)."""

    def __init__(self, vocab: int = 50, dim: int = 16, classes: int = 4):
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim, padding_idx=0)
        self.lstm = nn.LSTM(dim, dim, batch_first=True)
        self.fc = nn.Linear(dim, classes)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(self.embedding(ids), lengths.cpu(), batch_first=True,
                                                   enforce_sorted=False)
        _, (h, _) = self.lstm(packed)
        return self.fc(h[-1])


def seq(a: torch.Tensor) -> torch.Tensor:
    """(N, T, D) -> (N, D, T): tokens are the positions."""
    return a.transpose(1, 2)


def text_cases() -> list[Case]:
    from transformers import BertConfig, BertForSequenceClassification, GPT2Config, GPT2ForSequenceClassification

    torch.manual_seed(0)
    ids = torch.randint(1, 100, (N, 6))
    ids[1, 4:] = 0
    mask = (ids != 0).long()
    bert = BertForSequenceClassification(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                                                    num_attention_heads=2, intermediate_size=64, num_labels=3,
                                                    max_position_embeddings=16)).eval()
    gpt2 = GPT2ForSequenceClassification(GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=2, n_positions=16,
                                                    num_labels=3, pad_token_id=0)).eval()
    gids = torch.randint(1, 100, (N, 6))
    lstm = LSTMClassifier().eval()
    lids = torch.randint(1, 50, (N, 6))
    lengths = torch.tensor([6, 4])
    lids[1, 4:] = 0
    return [
        Case("bert", bert, ids, "bert.embeddings", lambda i, m: bert(i, m).logits, seq, (mask,), text=True),
        Case("gpt2", gpt2, gids, "transformer.wte", lambda i: gpt2(i).logits, seq, text=True),
        Case("lstm", lstm, lids, "embedding", lstm, seq, (lengths,), text=True),
    ]


# -- references, from the formulas on hand-reshaped activations ----------------------------------------------------
def acts_and_grads(case: Case, inputs: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    module = dict(case.model.named_modules())[case.layer]
    store = {}
    h = module.register_forward_hook(lambda m, a, o: store.__setitem__("a", first(o)))
    try:
        logits = case.logits(case.inputs if inputs is None else inputs)
    finally:
        h.remove()
    g = torch.autograd.grad(logits.gather(1, TARGET[:, None]).sum(), store["a"])[0]
    return case.canon(store["a"]).detach(), case.canon(g).detach()


def to_input(case: Case, m: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    if case.text:
        return m
    kw = {"align_corners": False} if mode == "bilinear" else {}
    return F.interpolate(m.unsqueeze(1), size=case.inputs.shape[2:], mode=mode, **kw).squeeze(1)


def positions(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(range(2, t.ndim))


def cam_reference(method: str, case: Case) -> torch.Tensor | None:
    a, g = acts_and_grads(case)
    pos = positions(a)
    if method == "grad_cam":
        m = (g.mean(pos, keepdim=True) * a).sum(1)
    elif method == "layer_grad_cam":  # Captum's default: no ReLU
        return to_input(case, (g.mean(pos, keepdim=True) * a).sum(1))
    elif method == "hires_cam":
        m = (g * a).sum(1)
    elif method == "layer_cam":
        m = (g.clamp(min=0) * a).sum(1)
    elif method == "xgrad_cam":
        s = a.sum(pos, keepdim=True)
        m = (((a / s.where(s != 0, torch.ones_like(s))) * g).sum(pos, keepdim=True) * a).sum(1)
    elif method == "grad_cam_plus_plus":
        d2, d3 = g**2, g**3
        denom = 2 * d2 + a.sum(pos, keepdim=True) * d3
        alpha = torch.where(denom != 0, d2 / denom.where(denom != 0, torch.ones_like(denom)), 0.0)
        m = ((alpha * g.clamp(min=0)).sum(pos, keepdim=True) * a).sum(1)
    elif method == "layer_activation":
        return to_input(case, a.sum(1))
    elif method == "eigen_cam":  # first principal component, signed to correlate with the channel sum
        flat = a.flatten(2).transpose(1, 2)
        centred = flat - flat.mean(1, keepdim=True)
        proj = centred @ torch.linalg.svd(centred, full_matrices=False)[2][:, 0, :, None]
        total = flat.sum(2, keepdim=True)
        sign = torch.sign(((proj - proj.mean(1, keepdim=True)) * (total - total.mean(1, keepdim=True))).sum((1, 2)))
        m = (proj[..., 0] * sign[:, None]).reshape(a.shape[0], *a.shape[2:])
    else:
        return None
    return to_input(case, m.clamp(min=0))


def captum_forward(case: Case):
    class F_(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = case.model

        def forward(self, x, *extra):
            return case.forward(x, *extra)

    return F_()


def layer_captum_reference(method: str, case: Case) -> torch.Tensor:
    import captum.attr as ca

    module = dict(case.model.named_modules())[case.layer]
    cls = {"layer_integrated_gradients": ca.LayerIntegratedGradients,
           "layer_conductance": ca.LayerConductance}[method]
    out = cls(captum_forward(case), module).attribute(case.inputs, target=TARGET,
                                                      additional_forward_args=case.extra or None)
    return to_input(case, case.canon(first(out)).sum(1)).detach()


def input_grad(case: Case) -> torch.Tensor:
    x = case.inputs.clone().requires_grad_(True)
    return torch.autograd.grad(case.logits(x).gather(1, TARGET[:, None]).sum(), x)[0]


def check(method: str, case: Case, out: Any) -> tuple[str, str]:
    """(outcome, what was checked) for a returned result."""
    if isinstance(out, tuple):
        out = out[0]
    if not isinstance(out, torch.Tensor) or out.numel() == 0:
        return "wrong", f"returned {type(out).__name__} of {getattr(out, 'shape', None)}"
    cls = METHODS[method]
    map_method = cls.needs_layer and method != "guided_grad_cam"
    want = ((N, *case.inputs.shape[1:]) if not case.text else (N, case.inputs.shape[1])) if map_method \
        else tuple(case.inputs.shape)
    if map_method and not case.text:
        want = (N, *case.inputs.shape[2:])
    if tuple(out.shape) != want:
        return "wrong", f"shape {tuple(out.shape)}, expected {want}"
    if not torch.isfinite(out).all():
        return "wrong", "non-finite values"
    out = out.detach().float()

    def close(ref: torch.Tensor) -> bool:
        return torch.allclose(out, ref.float(), rtol=1e-3, atol=1e-5 * max(1.0, ref.abs().max().item()))

    ref = cam_reference(method, case) if map_method else None
    if ref is not None:
        return ("works" if close(ref) else "wrong"), f"{method} formula on hand-reshaped activations"
    if method in ("layer_integrated_gradients", "layer_conductance"):
        return ("works" if close(layer_captum_reference(method, case)) else "wrong"), \
            "Captum called directly, reshaped by hand"
    if method == "saliency":
        return ("works" if close(input_grad(case).abs()) else "wrong"), "|d logit / d input| by autograd"
    if method == "input_x_gradient":
        return ("works" if close(case.inputs * input_grad(case)) else "wrong"), "input * gradient by autograd"
    if method in ("integrated_gradients", "deep_lift", "deep_lift_shap"):
        with torch.no_grad():
            fx = case.logits(case.inputs).gather(1, TARGET[:, None])[:, 0]
            if method == "deep_lift_shap":
                base = torch.stack([torch.zeros_like(case.inputs[0]), case.inputs.mean(0)])
                fb = torch.stack([case.logits(b.expand_as(case.inputs)).gather(1, TARGET[:, None])[:, 0]
                                  for b in base]).mean(0)
            else:
                fb = case.logits(torch.zeros_like(case.inputs)).gather(1, TARGET[:, None])[:, 0]
        total = out.flatten(1).sum(1)
        ok = torch.allclose(total, fx - fb, rtol=0.05, atol=0.02 * max(1.0, (fx - fb).abs().max().item()))
        return ("works" if ok else "wrong"), f"completeness: sum {total.tolist()} vs f(x)-f(b) {(fx - fb).tolist()}"
    if method in ("guided_backprop", "deconvolution", "guided_grad_cam"):
        if not any(isinstance(m, nn.ReLU) for m in case.model.modules()):
            return "wrong", "the model has no nn.ReLU: Captum returns an unguided gradient under this name"
        if method == "guided_grad_cam":
            import captum.attr as ca
            a, g = acts_and_grads(case)
            cam = to_input(case, (g.mean(positions(a), keepdim=True) * a).sum(1).clamp(min=0), "nearest")
            gb = ca.GuidedBackprop(captum_forward(case)).attribute(case.inputs, target=TARGET)
            ok = close(gb * cam.unsqueeze(1))
            return ("works" if ok else "wrong"), "guided backprop x nearest-upsampled Grad-CAM (Captum's definition)"
    if method == "feature_ablation":
        x = case.inputs.clone()
        if case.text:
            x[:, 0] = 0
            idx = (slice(None), 0)
        else:
            x[:, :, :5, :5] = 0  # the first 5 x 5 patch of the 7 x 7 grid on 32 x 32
            idx = (slice(None), 0, 0, 0)
        with torch.no_grad():
            want_ = (case.logits(case.inputs) - case.logits(x)).gather(1, TARGET[:, None])[:, 0]
        return ("works" if torch.allclose(out[idx], want_, rtol=1e-3, atol=1e-5) else "wrong"), \
            "first feature group: f(x) - f(x with the group set to 0)"
    return "works_unchecked", "shape and finite"


def run(case: Case, method: str) -> dict[str, Any]:
    cls = METHODS[method]
    kwargs = dict(case.call)
    if cls.needs_layer:
        kwargs["layer"] = case.layer
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = hw.attribute(case.model, case.inputs, method, TARGET, **kwargs)
    except hw.AttributionError as err:
        return {"outcome": "refused", "detail": str(err)[:300]}
    except Exception as err:
        return {"outcome": "unclear_error", "detail": f"{type(err).__name__}: {str(err)[:300]}"}
    try:
        outcome, detail = check(method, case, out)
    except Exception as err:
        outcome, detail = "works_unchecked", f"reference failed: {type(err).__name__}: {err}"
    said = [str(w.message) for w in caught if "hiddenwidgets" in w.filename or "convergence delta" in str(w.message)]
    if outcome == "wrong" and said:
        outcome, detail = "wrong_warned", f"{detail}; warned: {said[0][:200]}"
    return {"outcome": outcome, "detail": detail}


class Logits(nn.Module):
    """The usual workaround for Captum: a module returning ``model(...).logits`` (extra inputs by keyword)."""

    def __init__(self, model: nn.Module, *keywords: str):
        super().__init__()
        self.model = model
        self.keywords = keywords

    def forward(self, x, *extra):
        return self.model(x, **dict(zip(self.keywords, extra, strict=True))).logits


def wrapped(case: Case) -> Case:
    """The same model behind :class:`Logits` (layer names get the ``model.`` prefix)."""
    keywords = ("attention_mask",) if case.extra else ()
    return Case(case.name + "+logits", Logits(case.model, *keywords), case.inputs, "model." + case.layer,
                case.forward, case.canon, case.extra, case.text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=None)
    ap.add_argument("--methods", nargs="*", default=None)
    ap.add_argument("--wrapped", action="store_true", help="also each Hugging Face model behind a .logits wrapper")
    a = ap.parse_args()
    cases = [c for c in image_cases() + text_cases() if not a.models or c.name in a.models]
    if a.wrapped:
        cases += [wrapped(c) for c in cases if c.name != "lstm"]
    counts: Counter = Counter()
    per_model: dict[str, Counter] = {}
    for case in cases:
        for method in METHODS:
            if a.methods and method not in a.methods:
                continue
            torch.manual_seed(0)
            row = {"model": case.name, "method": method, **run(case, method)}
            counts[row["outcome"]] += 1
            per_model.setdefault(case.name, Counter())[row["outcome"]] += 1
            print(json.dumps(row), flush=True)
    print(json.dumps({"summary": dict(counts), "per_model": {k: dict(v) for k, v in per_model.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
