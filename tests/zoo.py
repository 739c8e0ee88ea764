"""A zoo of architectures nobody here wrote, built from small configs with random weights, and the checks that
classify what hiddenwidgets does on each: **works** (the numbers equal a value computed here by hand from the
model's own outputs), **refused** (a clear error or warning that names the layer and the cause), or **wrong**
(anything else: a different number, or nothing, silently).

Used by ``tests/unit/test_zoo.py`` (which requires zero wrong cells) and ``benchmarks/zoo_matrix.py`` (which
prints the counts, also for an older checkout of the package, for before/after figures).

timm is not used: it needs torchvision, which does not import beside this machine's torch. Hugging Face's own
implementations of the same families (ResNet, ConvNeXt, Swin, ViT, MobileNetV2, EfficientNet) stand in.
"""

from __future__ import annotations

import contextlib
import math
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Arch:
    """One architecture: how to build it, a batch, its loss, and the layers to look at (with the axis their
    units are really on, where this differs from what PyTorch's layout would suggest)."""

    name: str
    build: Callable[[], nn.Module]
    batch: Callable[[], tuple[tuple, dict]]  # (args, kwargs) for model(*args, **kwargs)
    loss: Callable[[Any], torch.Tensor]  # model output -> scalar loss
    layers: dict[str, int | None]  # layer name -> true unit axis (None: the default layout is right)
    mask: Callable[[tuple, dict], torch.Tensor | None] = lambda args, kwargs: None  # attention mask for pooling
    compile: bool = False
    note: str = ""
    image: bool = False
    attribution: dict[str, Any] = field(default_factory=dict)


def _logits(out: Any) -> torch.Tensor:
    return out.logits if hasattr(out, "logits") else out[0] if isinstance(out, tuple) else out


def _ce(out: Any) -> torch.Tensor:
    logits = _logits(out)
    return nn.functional.cross_entropy(logits, torch.arange(len(logits)) % logits.shape[-1])


def _images(n: int = 2, size: int = 32, channels: int = 3) -> Callable[[], tuple[tuple, dict]]:
    def make() -> tuple[tuple, dict]:
        g = torch.Generator().manual_seed(7)
        return (torch.randn(n, channels, size, size, generator=g),), {}
    return make


def _tokens(n: int = 3, length: int = 9, vocab: int = 60, eos: int | None = None) -> Callable[[], tuple[tuple, dict]]:
    def make() -> tuple[tuple, dict]:
        g = torch.Generator().manual_seed(7)
        ids = torch.randint(2, vocab, (n, length), generator=g)
        mask = torch.ones(n, length, dtype=torch.long)
        mask[0, -3:] = 0  # one padded example: pooling must use the attention mask
        ids[0, -3:] = 0
        if eos is not None:  # one end-of-sequence token each, before the padding
            ids[ids == eos] = eos + 1
            ids[0, length - 4] = eos
            ids[1:, -1] = eos
        return (ids,), {"attention_mask": mask}
    return make


def _hf(cls_name: str, config_name: str, **config: Any) -> Callable[[], nn.Module]:
    def make() -> nn.Module:
        import transformers

        torch.manual_seed(0)
        cfg = getattr(transformers, config_name)(**config)
        model = getattr(transformers, cls_name)(cfg)
        return model.train()
    return make


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(32, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.relu2(self.conv2(self.relu1(self.conv1(x))))).flatten(1))


class BasicBlockNet(nn.Module):
    """A ResNet basic block as torchvision writes it: one ReLU module called twice."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.proj = nn.Conv2d(3, 8, 1)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.bn1(self.conv1(x)))
        h = self.relu(self.bn2(self.conv2(h)) + self.proj(x))
        return self.head(h.mean(dim=(2, 3)))


class PackedTagger(nn.Module):
    def __init__(self, cell: type[nn.RNNBase]) -> None:
        super().__init__()
        self.embed = nn.Embedding(30, 8)
        self.rnn = cell(8, 12, batch_first=True)
        self.head = nn.Linear(12, 3)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(self.embed(ids), lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        padded, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True)
        return self.head(padded.sum(dim=1))


def _packed_batch() -> tuple[tuple, dict]:
    g = torch.Generator().manual_seed(7)
    return (torch.randint(0, 30, (3, 6), generator=g), torch.tensor([6, 4, 2])), {}


class TiedLM(nn.Module):
    """Weight sharing the way small LMs do it: the unembedding reuses the embedding's weight through a functional
    call, so the tied ``unembed`` module never runs."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(30, 16)
        self.mix = nn.Linear(16, 16)
        self.unembed = nn.Linear(16, 30, bias=False)
        self.unembed.weight = self.embed.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.mix(self.embed(ids))).mean(dim=1)
        return h @ self.embed.weight.t()


class UnrolledCell(nn.Module):
    """A hand-unrolled recurrence: one LSTMCell called once per time step."""

    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.LSTMCell(4, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = c = torch.zeros(x.shape[0], 8)
        for t in range(x.shape[1]):
            h, c = self.cell(x[:, t], (h, c))
        return self.head(h)


def _seq_batch() -> tuple[tuple, dict]:
    return (torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(7)),), {}


def _seeded(cls: Callable[..., nn.Module], *args: Any) -> Callable[[], nn.Module]:
    def make() -> nn.Module:
        torch.manual_seed(0)
        return cls(*args).train()
    return make


def _convnext() -> nn.Module:
    """HF ConvNeXt with dead units planted on the channels-last axis (weights 0, bias -1), so that dead-unit
    fractions taken on the wrong axis show."""
    model = _hf("ConvNextForImageClassification", "ConvNextConfig", num_channels=3, hidden_sizes=[12, 24],
                depths=[1, 1], num_stages=2, num_labels=3)()
    block = model.convnext.encoder.stages[0].layers[0]
    with torch.no_grad():
        block.pwconv1.weight[:10] = 0
        block.pwconv1.bias[:10] = -1
        block.layernorm.weight[:3] = 0
        block.layernorm.bias[:3] = -1
    return model


def _channels_last_cnn() -> nn.Module:
    torch.manual_seed(0)
    return SmallCNN().to(memory_format=torch.channels_last).train()


def _text_mask(args: tuple, kwargs: dict) -> torch.Tensor | None:
    return kwargs.get("attention_mask")


ZOO: list[Arch] = [
    Arch("CNN", _seeded(SmallCNN), _images(), _ce, {"conv1": None, "relu2": None, "pool": None, "fc": None},
         image=True),
    Arch("CNN, channels_last memory", _channels_last_cnn, _images(), _ce, {"conv1": None, "relu2": None},
         image=True),
    Arch("ResNet basic block (one ReLU called twice)", _seeded(BasicBlockNet), _images(), _ce,
         {"relu": None, "bn2": None}, image=True),
    Arch("HF ResNet", _hf("ResNetForImageClassification", "ResNetConfig", num_channels=3, embedding_size=8,
                          hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", num_labels=3),
         _images(), _ce, {"resnet.encoder.stages.1": None, "resnet.encoder.stages.0.layers.0.shortcut": None},
         image=True),
    Arch("HF ConvNeXt (channels-last blocks)", _convnext, _images(), _ce,
         {"convnext.encoder.stages.0.layers.0.pwconv1": 3,
                          "convnext.encoder.stages.0.layers.0.layernorm": 3,
                          "convnext.encoder.stages.0.layers.0.act": 3,
                          "convnext.encoder.stages.1.layers.0": None}, image=True),
    Arch("HF Swin (tokens, windows)", _hf("SwinForImageClassification", "SwinConfig", image_size=32, patch_size=4,
                                          num_channels=3, embed_dim=16, depths=[1, 1], num_heads=[2, 2],
                                          window_size=4, num_labels=3),
         _images(), _ce, {"swin.encoder.layers.0.blocks.0.mlp.fc2": None, "swin.encoder.layers.1": None,
                          "swin.encoder.layers.0.downsample": None, "swin.embeddings.dropout": None}, image=True),
    Arch("HF ViT", _hf("ViTForImageClassification", "ViTConfig", image_size=32, patch_size=8, num_channels=3,
                       hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       num_labels=3),
         _images(), _ce, {"vit.layers.0": None, "vit.layers.1.mlp.fc1": None, "vit.layers.0.dropout": None},
         image=True),
    Arch("HF MobileNetV2", _hf("MobileNetV2ForImageClassification", "MobileNetV2Config", num_channels=3,
                               image_size=32, depth_multiplier=0.25, num_labels=3),
         _images(), _ce, {"mobilenet_v2.layer.1.conv_3x3": None, "mobilenet_v2.conv_1x1": None}, image=True),
    Arch("HF GPT-2", _hf("GPT2ForSequenceClassification", "GPT2Config", vocab_size=60, n_positions=32, n_embd=32,
                         n_layer=2, n_head=2, num_labels=3, pad_token_id=0, bos_token_id=1, eos_token_id=1),
         _tokens(), _ce, {"transformer.h.0": None, "transformer.h.1.mlp.c_fc": None, "transformer.wte": None,
                          "transformer.h.0.attn.attn_dropout": None}, mask=_text_mask),
    Arch("HF BERT", _hf("BertForSequenceClassification", "BertConfig", vocab_size=60, hidden_size=32,
                        num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=3),
         _tokens(), _ce, {"bert.encoder.layer.0.output": None, "bert.pooler": None, "bert.embeddings": None,
                          "bert.encoder.layer.1.attention.self.dropout": None}, mask=_text_mask),
    Arch("HF T5 (shared embedding)", _hf("T5ForSequenceClassification", "T5Config", vocab_size=60, d_model=32,
                                         d_kv=8, d_ff=64, num_layers=2, num_heads=2, num_labels=3,
                                         decoder_start_token_id=0, pad_token_id=0, eos_token_id=1),
         _tokens(eos=1), _ce, {"transformer.encoder.block.0": None, "transformer.shared": None,
                               "transformer.encoder.embed_tokens": None}, mask=_text_mask),
    Arch("HF ALBERT (one layer shared by all)", _hf("AlbertForSequenceClassification", "AlbertConfig",
                                                    vocab_size=60, embedding_size=16, hidden_size=32,
                                                    num_hidden_layers=3, num_attention_heads=2,
                                                    intermediate_size=64, num_labels=3),
         _tokens(), _ce, {"albert.encoder.albert_layer_groups.0.albert_layers.0": None,
                          "albert.encoder.embedding_hidden_mapping_in": None}, mask=_text_mask),
    Arch("LSTM on packed sequences", _seeded(PackedTagger, nn.LSTM), _packed_batch, _ce,
         {"rnn": None, "embed": None}),
    Arch("GRU on packed sequences", _seeded(PackedTagger, nn.GRU), _packed_batch, _ce, {"rnn": None}),
    Arch("LSTMCell unrolled by hand", _seeded(UnrolledCell), _seq_batch, _ce, {"cell": None, "head": None}),
    Arch("tied embedding LM (weight sharing)", _seeded(TiedLM), lambda: ((torch.randint(0, 30, (3, 5)),), {}),
         _ce, {"mix": None, "unembed": None}),
    Arch("compiled CNN (torch.compile)", _seeded(SmallCNN), _images(), _ce, {"conv1": None, "relu2": None},
         compile=True, image=True),
]


# ------------------------------------------------------------------------------------------------------------------
# references, computed here from the model's own outputs
def _tensor(out: Any) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, nn.utils.rnn.PackedSequence):
        return out.data
    if isinstance(out, (tuple, list)):
        for o in out:
            t = _tensor(o)
            if t is not None:
                return t
    if hasattr(out, "values") and callable(out.values):
        for o in out.values():
            t = _tensor(o)
            if t is not None:
                return t
    return None


@contextlib.contextmanager
def recording(model: nn.Module, names: list[str]):
    """Every output of each named module in the block (all calls), with whether it was a training call."""
    seen: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    modules = dict(model.named_modules())
    handles = []
    for n in names:
        module = modules.get(n) or modules.get(f"_orig_mod.{n}")

        def hook(m, a, out, n=n):
            t = _tensor(out)
            if t is not None and torch.is_grad_enabled() and m.training:
                seen[n].append(t.detach().clone())

        handles.append(module.register_forward_hook(hook))
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-5)


def monitor_cells(arch: Arch, hw: Any) -> dict[str, tuple[str, str]]:
    """Per layer: ("works" | "refused" | "wrong", why), from a monitor over two training steps."""
    model = arch.build()
    names = list(arch.layers)
    run = torch.compile(model) if arch.compile else model
    out: dict[str, tuple[str, str]] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            monitor = hw.ActivationMonitor(model, names, every=1)
        except Exception as err:
            return {n: ("refused", f"construction: {err}") for n in names}
        steps = 4
        refs: list[dict[str, list[torch.Tensor]]] = []
        for _ in range(steps):
            args, kwargs = arch.batch()
            with recording(model, names) as seen:
                loss = arch.loss(run(*args, **kwargs))
                loss.backward()
            refs.append(seen)
            try:
                monitor.step(loss=loss)
            except Exception as err:
                return {n: ("wrong", f"step() raised into the training loop: {type(err).__name__}: {err}")
                        for n in names}
        monitor.flush()
    said = " ".join(str(w.message) for w in caught) + " " + " ".join(
        e["message"] for e in monitor.history.events)
    for name in names:
        series = monitor.history.layer(name)
        calls = [t for r in refs for t in r[name]]
        if not calls:  # the layer never ran in training: a clear statement is the right outcome
            cause = name in said and ("did not run" in said or "never" in said or "only outside training" in said)
            out[name] = ("refused", "said it never ran") if cause and series.samples == 0 else \
                ("wrong", f"never ran; recorded {series.samples} samples, said: {said[:80]!r}")
            continue
        last = [t for t in refs[-1][name]]
        every = torch.cat([t.reshape(-1).float() for t in last])
        stats = series.stats()
        if series.samples != steps:
            out[name] = ("wrong", f"{series.samples} samples for {steps} steps")
            continue
        total = series.rows[series.count - 1, series.col("total")]
        if total != every.numel():
            out[name] = ("wrong", f"{int(total)} values recorded, the layer produced {every.numel()} "
                         f"in {len(last)} call(s)")
            continue
        finite = every[torch.isfinite(every)]
        if not (_close(stats["max"][-1], finite.max().item()) and _close(stats["min"][-1], finite.min().item())):
            out[name] = ("wrong", f"max {stats['max'][-1]} vs {finite.max().item()}")
            continue
        axis = arch.layers[name]
        if axis is not None:  # dead units on the true unit axis, over the monitor's window (every step here)
            active = None
            for r in refs:
                for t in r[name]:
                    a = t.amax(dim=tuple(d for d in range(t.ndim) if d != axis)) > 0
                    active = a if active is None else active | a
            dead = 1.0 - active.float().mean().item()
            if not _close(stats["dead_frac"][-1], dead):
                out[name] = ("wrong", f"dead units {stats['dead_frac'][-1]:.3f} vs {dead:.3f} on axis {axis}")
                continue
        out[name] = ("works", f"{len(last)} call(s) per step")
    monitor.close()
    return out


def features_cells(arch: Arch, hw: Any) -> dict[str, tuple[str, str]]:
    """Per layer: layer_features' mean pooling against the masked mean over positions computed here."""
    model = arch.build()
    names = list(arch.layers)
    args, kwargs = arch.batch()
    mask = arch.mask(args, kwargs)
    out: dict[str, tuple[str, str]] = {}
    seen: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    modules = dict(model.named_modules())
    packed: dict[str, torch.Tensor] = {}

    def keep(n: str, o: Any) -> None:
        first = o[0] if isinstance(o, tuple) and not isinstance(o, nn.utils.rnn.PackedSequence) else o
        if isinstance(first, nn.utils.rnn.PackedSequence):  # per sequence: the mean over its own steps
            padded, lengths = nn.utils.rnn.pad_packed_sequence(first, batch_first=True)
            steps = torch.arange(padded.shape[1])[None, :] < lengths[:, None]
            packed[n] = (padded * steps[..., None]).sum(dim=1) / lengths[:, None]
        t = _tensor(o)
        if t is not None:
            seen[n].append(t.detach().clone())

    handles = [modules[n].register_forward_hook(lambda m, a, o, n=n: keep(n, o)) for n in names]
    try:
        with torch.no_grad():
            model.eval()
            model(*args, **kwargs)
            model.train()
    finally:
        for h in handles:
            h.remove()
    if len(args) == 1 and not kwargs:
        inputs, forward = args[0], None
    elif len(args) == 1:
        inputs = {"input_ids": args[0], **kwargs}
        forward = None
    else:
        inputs = args[0]
        rest = args[1:]

        def forward(m: nn.Module, batch: Any, rest: tuple = rest) -> Any:
            return m(batch, *rest)
    for name in names:
        try:
            got = hw.layer_features(model, inputs, [name], forward=forward)[name]
        except Exception as err:
            msg = str(err)
            clear = name in msg and any(k in msg for k in ("did not run", "ran ", "times"))
            ran = len(seen[name])
            if ran == 0 or ran > 1:
                out[name] = ("refused", msg[:80]) if clear else ("wrong", f"unclear error: {msg[:80]}")
            else:
                out[name] = ("wrong", f"raised for a layer that ran once: {msg[:80]}")
            continue
        if len(seen[name]) != 1:
            out[name] = ("wrong", f"returned features for a layer that ran {len(seen[name])} times")
            continue
        t = seen[name][0].float()
        axis = arch.layers[name]
        if name in packed:
            want = packed[name]
        elif t.ndim == 2:
            want = t
        elif axis is None and t.ndim >= 4:
            want = t.mean(dim=tuple(range(2, t.ndim)))
        elif (axis is None or axis == 2) and t.ndim == 3:
            if mask is not None and mask.shape == t.shape[:2]:
                w = mask.float()[..., None]
                want = (t * w).sum(dim=1) / w.sum(dim=1)
            else:
                want = t.mean(dim=1)
        else:
            want = t.mean(dim=tuple(d for d in range(1, t.ndim) if d != axis))
        ok = got.shape == want.shape and torch.allclose(got, want, rtol=1e-4, atol=1e-5)
        out[name] = ("works", "masked mean") if ok else ("wrong", f"features {tuple(got.shape)} differ from the "
                                                          f"mean over positions {tuple(want.shape)}")
    return out


# ------------------------------------------------------------------------------------------------------------------
# hw.attribute: every method on the image and text models below, each result checked against a reference written
# here from the papers' formulas on the layer's activations reshaped by hand (ViT: class token dropped, 4 x 4 patch
# grid; Swin: 4 x 4 token grid; text: tokens as positions), autograd, or Captum called directly; never by calling
# hiddenwidgets. Outcomes: works (checked), works_unchecked (stochastic methods: right shape, finite), refused (an
# AttributionError), wrong_warned (a result hiddenwidgets warns is off: Captum's convergence delta), wrong, and
# unclear_error (any other exception). Models are called the way users call Captum / pytorch-grad-cam: one target
# per input, the layer those libraries' docs suggest, extra inputs as additional_forward_args.
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


def conv_cases() -> list[Case]:
    """The zoo's own convolutional models: a small CNN (also in channels_last memory), a torchvision-style basic
    block with a reused ReLU, and Hugging Face's MobileNetV2."""
    torch.manual_seed(0)
    x = torch.randn(N, 3, 32, 32)
    cnn = _seeded(SmallCNN)().eval()
    last = _channels_last_cnn().eval()
    block = _seeded(BasicBlockNet)().eval()
    mobile = _hf("MobileNetV2ForImageClassification", "MobileNetV2Config", num_channels=3, image_size=32,
                 depth_multiplier=0.25, num_labels=5)().eval()
    return [
        Case("cnn", cnn, x, "conv2", cnn, lambda a: a),
        Case("cnn channels_last", last, x.contiguous(memory_format=torch.channels_last), "conv2", last,
             lambda a: a),
        Case("basic block", block, x, "bn2", block, lambda a: a),
        Case("mobilenet_v2", mobile, x, "mobilenet_v2.conv_1x1", lambda i: mobile(i).logits, lambda a: a),
    ]


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
    albert = _hf("AlbertForSequenceClassification", "AlbertConfig", vocab_size=100, embedding_size=16,
                 hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64, num_labels=3,
                 max_position_embeddings=16)().eval()
    return [
        Case("bert", bert, ids, "bert.embeddings", lambda i, m: bert(i, m).logits, seq, (mask,), text=True),
        Case("albert", albert, ids, "albert.embeddings", lambda i, m: albert(i, m).logits, seq, (mask,),
             text=True),
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
    cls = sys.modules["hiddenwidgets.methods"].METHODS[method]
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


def run(case: Case, method: str, hw: Any) -> dict[str, Any]:
    cls = hw.methods.METHODS[method]
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




def attribution_cases() -> list[Case]:
    return image_cases() + conv_cases() + text_cases()


def attribution_cells(hw: Any, cases: list[Case] | None = None) -> dict[tuple[str, str], tuple[str, str]]:
    """{(model, method): (outcome, detail)} over every method of ``hw.methods.METHODS``."""
    out = {}
    for case in cases or attribution_cases():
        for method in hw.methods.METHODS:
            torch.manual_seed(0)
            row = run(case, method, hw)
            out[(case.name, method)] = (row["outcome"], row["detail"])
    return out
