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
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
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
