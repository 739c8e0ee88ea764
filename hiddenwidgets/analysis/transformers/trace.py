"""One forward pass of a transformer, recorded: the residual stream after every block, the attention weights of
every layer and head, the model's own logits, and the function that decodes a residual into logits.

Works on Hugging Face models (causal LMs, masked LMs, encoders: ``output_hidden_states``; the last hidden state
of pre-norm decoders such as GPT-2 has the final norm applied, so the raw residual is read at the final norm's
input instead) and, with hooks on the blocks, on a user's own ``nn.TransformerEncoder`` or nanoGPT-style model.

Attention weights: Hugging Face models running SDPA/flash attention return none, so they are switched to the
eager implementation for the one pass and switched back afterwards (also after an error). Other models: an
``nn.MultiheadAttention`` is asked for its per-head weights for that pass (``need_weights=True``,
``average_attn_weights=False``, PyTorch's fused fast path off), and calls to
``torch.nn.functional.scaled_dot_product_attention`` (nanoGPT) are recorded by recomputing
softmax(q kᵀ · scale + mask) from the q and k they were given; the output is still the fused kernel's.
Nothing stays changed: the model's mode, ``requires_grad``, hooks and attention implementation are given back.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...pipeline.checks import keywords_checked, what
from ...pipeline.model_state import evaluation_mode, model_device, model_for_work
from ._errors import TransformerError

__all__ = ["Trace", "trace"]

FINAL_NORM_NAMES = ("ln_f", "norm", "final_layer_norm", "final_layernorm", "ln_final", "final_norm", "norm_f")
UNEMBED_NAMES = ("lm_head", "unembed", "head", "decoder", "output", "out")


@dataclass
class Trace:
    """What one pass recorded (see :func:`trace`). Shapes: L blocks, B sequences, T positions, H heads, V vocab.

    Attributes:
        residual: (L + 1, B, T, D) residual stream in the model's dtype: the embeddings, then after each block.
        mask: (B, T) bool, True where a position is a real token (the attention mask).
        input_ids: (B, T) token ids, or None when the model was given embeddings.
        tokens: the token strings per sequence (from ``tokens=``, the tokenizer, or ``#id``).
        logits: (B, T, V) the model's own output logits, or None (an encoder without a language-model head).
        attentions: (L, B, H, T, T) float32 attention weights (query × key), or None when not asked for.
        layer_names: "embeddings", "block 1" … "block L" (the residual after block i).
        decode: residual (…, D) → logits (…, V) with the model's own final norm and unembedding, or None.
        decode_problem: why there is no ``decode`` (when it is None).
        target: "next" (causal LM: each position predicts the next token) or "same" (masked LM).
        vocab: token id → string for decoded predictions.
        sources: how each part was obtained (for the record: "hidden_states", "hooks", "eager pass", …).
    """

    residual: torch.Tensor
    mask: torch.Tensor
    input_ids: torch.Tensor | None
    tokens: list[list[str]]
    logits: torch.Tensor | None
    attentions: torch.Tensor | None
    layer_names: list[str]
    decode: Callable[[torch.Tensor], torch.Tensor] | None
    decode_problem: str
    target: str
    vocab: Callable[[int], str]
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def n_layers(self) -> int:
        return self.residual.shape[0] - 1


# ----------------------------------------------------------------------------------------------------------------
# finding the parts of a model
def _is_hf(model: nn.Module) -> bool:
    return hasattr(model, "config") and hasattr(model, "base_model") and hasattr(model, "get_output_embeddings")


def _module(model: nn.Module, ref: Any, what_for: str) -> nn.Module | None:
    if ref is None or isinstance(ref, nn.Module):
        return ref
    if isinstance(ref, str):
        modules = dict(model.named_modules())
        if ref not in modules:
            from ...pipeline.checks import closest
            raise TransformerError(f"{what_for}: no module named {ref!r} in the model{closest(ref, modules)}")
        return modules[ref]
    raise TransformerError(f"{what_for} must be a module or a module name; got {what(ref)}")


def find_blocks(model: nn.Module) -> tuple[list[str], list[nn.Module]]:
    """The transformer blocks, in order: the ``nn.ModuleList`` of same-type modules holding the most parameters
    (``layers`` of an ``nn.TransformerEncoder``, ``transformer.h`` of GPT-2 / nanoGPT, ``encoder.layer`` of BERT)."""
    best: tuple[int, str, nn.ModuleList] | None = None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) and len({type(m) for m in mod}) == 1:
            if isinstance(mod[0], (nn.Linear, nn.Embedding, nn.LayerNorm, nn.Dropout)):
                continue
            size = sum(p.numel() for p in mod.parameters())
            if best is None or size > best[0]:
                best = (size, name, mod)
    if best is None:
        raise TransformerError(f"found no transformer blocks in {type(model).__name__} (an nn.ModuleList of blocks, "
                               "as in nn.TransformerEncoder.layers or GPT-2's transformer.h): pass blocks=[module "
                               "names in order]")
    return [f"{best[1]}.{i}" for i in range(len(best[2]))], list(best[2])


def _find_final_norm(model: nn.Module, block_names: Sequence[str]) -> nn.Module | None:
    """A norm named like a final norm (ln_f, norm, final_layer_norm…) outside the blocks, at most two levels deep
    (GPT-2's transformer.ln_f, Llama's model.norm, OPT's model.decoder.final_layer_norm, nanoGPT's transformer.ln_f,
    nn.TransformerEncoder's norm)."""
    root = model.base_model if _is_hf(model) else model
    for name, mod in root.named_modules():
        parts = name.split(".")
        if parts[-1] in FINAL_NORM_NAMES and len(parts) <= 2 and "norm" in type(mod).__name__.lower() \
                and not any(name.startswith(b + ".") for b in block_names):
            return mod
    return None


def _hf_head(model: nn.Module) -> nn.Module | None:
    out = model.get_output_embeddings()
    if out is None:
        return None
    base = model.base_model
    for _name, child in model.named_children():
        if child is base:
            continue
        if child is out or any(m is out for m in child.modules()):
            return child
    return out


def _generic_unembed(model: nn.Module, vocab_size: int | None) -> nn.Module | None:
    for name, mod in model.named_modules():
        if name.rsplit(".", 1)[-1] in UNEMBED_NAMES and isinstance(mod, nn.Linear) and \
                (vocab_size is None or mod.out_features == vocab_size):
            return mod
    return None


# ----------------------------------------------------------------------------------------------------------------
# inputs
def _split_inputs(model: nn.Module, inputs: Any, attention_mask: Any) -> tuple[tuple, dict, torch.Tensor | None,
                                                                             torch.Tensor]:
    """(args, kwargs, input_ids, mask) for the model's forward."""
    device = model_device(model)
    if isinstance(inputs, Mapping):
        kwargs = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}
        ids = kwargs.get("input_ids")
        args: tuple = ()
        if ids is not None and not _is_hf(model) and set(kwargs) <= {"input_ids", "attention_mask", "token_type_ids"}:
            # a tokenizer's output for a model of your own (nanoGPT: forward(idx)): the ids go positionally
            mask_given = kwargs.get("attention_mask")
            if mask_given is not None and not bool(torch.as_tensor(mask_given).bool().all()):
                raise TransformerError(f"{type(model).__name__} is not a Hugging Face model, so how it takes an "
                                       "attention mask is unknown, and these inputs have padding: pass a dict of "
                                       "its own forward's keyword arguments plus attention_mask=, or one sequence "
                                       "without padding")
            args, kwargs = (ids,), {}
        first = ids if ids is not None else next((v for v in kwargs.values() if isinstance(v, torch.Tensor)), None)
    elif isinstance(inputs, torch.Tensor):
        kwargs, args, first = {}, (inputs.to(device),), inputs
        ids = inputs if not inputs.is_floating_point() else None
    else:
        raise TransformerError(f"inputs must be token ids (B, T), embeddings (B, T, D), or a tokenizer's output (a "
                               f"dict with input_ids); got {what(inputs)}. Text needs a tokenizer: "
                               "tokenizer(texts, return_tensors='pt', padding=True)")
    if first is None or first.dim() < 2:
        raise TransformerError(f"inputs must have a batch and a position axis (B, T); got shape "
                               f"{tuple(first.shape) if first is not None else None}: add a batch axis with "
                               "ids[None] for one sequence")
    if ids is not None and ids.is_floating_point():
        raise TransformerError("input_ids are floats; token ids must be integers")
    shape = tuple(first.shape[:2])
    if attention_mask is None and isinstance(inputs, Mapping):
        attention_mask = inputs.get("attention_mask")
        if attention_mask is None and inputs.get("src_key_padding_mask") is not None:
            attention_mask = ~inputs["src_key_padding_mask"].bool()
    if attention_mask is None:
        mask = torch.ones(shape, dtype=torch.bool)
    else:
        mask = torch.as_tensor(attention_mask)
        if tuple(mask.shape) != shape:
            raise TransformerError(f"attention_mask has shape {tuple(mask.shape)}; expected (B, T) = {shape}, 1 "
                                   "for real tokens and 0 for padding")
        mask = mask.bool().cpu()
        if isinstance(model, nn.TransformerEncoder) and "src_key_padding_mask" not in kwargs:
            kwargs["src_key_padding_mask"] = ~mask.to(device)
        elif _is_hf(model) and "attention_mask" not in kwargs:
            kwargs["attention_mask"] = mask.long().to(device)
    if not bool(mask.any(1).all()):
        raise TransformerError("a sequence has no real token (its attention mask is all 0)")
    return args, kwargs, ids, mask


def _token_strings(ids: torch.Tensor | None, mask: torch.Tensor, tokens: Any, tokenizer: Any,
                   shape: tuple[int, int]) -> list[list[str]]:
    b, t = shape
    if tokens is not None:
        if isinstance(tokens, str) or not isinstance(tokens, Sequence):
            raise TransformerError(f"tokens must be token strings, one list per sequence; got {what(tokens)}")
        rows = [tokens] if tokens and isinstance(tokens[0], str) else list(tokens)
        if len(rows) != b or any(isinstance(r, str) or len(r) != t for r in rows):
            raise TransformerError(f"tokens must be {b} list(s) of {t} strings (one per position, padding "
                                   f"included); got {[len(r) for r in rows]} strings per row")
        return [[str(s) for s in r] for r in rows]
    if ids is None:
        return [[f"pos {j}" for j in range(t)] for _ in range(b)]
    if tokenizer is not None:
        return [list(tokenizer.convert_ids_to_tokens([int(i) for i in row])) for row in ids.cpu()]
    return [[f"#{int(i)}" for i in row] for row in ids.cpu()]


def _vocab(tokenizer: Any, vocab: Any) -> Callable[[int], str]:
    if vocab is not None:
        if callable(vocab):
            return lambda i: str(vocab(i))
        table = list(vocab)
        return lambda i: str(table[i]) if 0 <= i < len(table) else f"#{i}"
    if tokenizer is not None:
        return lambda i: str(tokenizer.convert_ids_to_tokens(int(i)))
    return lambda i: f"#{i}"


def _first_tensor(out: Any) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return None


# ----------------------------------------------------------------------------------------------------------------
# attention recording
def sdpa_weights(query: torch.Tensor, key: torch.Tensor, attn_mask: torch.Tensor | None = None,
                 is_causal: bool = False, scale: float | None = None, enable_gqa: bool = False) -> torch.Tensor:
    """The attention weights ``scaled_dot_product_attention`` uses, recomputed in float32 (PyTorch's documented
    reference: softmax(q kᵀ · scale + bias), a causal bias aligned top-left, a bool mask True = may attend)."""
    q, k = query.float(), key.float()
    if enable_gqa and k.shape[-3] != q.shape[-3]:
        k = k.repeat_interleave(q.shape[-3] // k.shape[-3], dim=-3)
    s = (1.0 / q.shape[-1] ** 0.5) if scale is None else scale
    scores = q @ k.transpose(-2, -1) * s
    lq, lk = scores.shape[-2], scores.shape[-1]
    if is_causal:
        keep = torch.ones(lq, lk, dtype=torch.bool, device=scores.device).tril()
        scores = scores.masked_fill(~keep, float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask.float()
    return torch.softmax(scores, dim=-1)


class _AttentionRecorder:
    """Per-block attention weights of one pass of a non-Hugging Face model (see the module docstring)."""

    def __init__(self, blocks: list[nn.Module]):
        self.blocks = blocks
        self.current = -1
        self.records: list[list[torch.Tensor]] = [[] for _ in blocks]
        self.thread = threading.get_ident()

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        handles = []
        for i, block in enumerate(self.blocks):
            handles.append(block.register_forward_pre_hook(lambda *_a, i=i: setattr(self, "current", i)))
            for mod in block.modules():
                if isinstance(mod, nn.MultiheadAttention):
                    handles.append(mod.register_forward_pre_hook(self._ask_weights, with_kwargs=True))
                    handles.append(mod.register_forward_hook(self._mha_out))
        original = F.scaled_dot_product_attention
        recorder = self

        def recorded_sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                          enable_gqa=False, **kw):
            out = original(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                           scale=scale, enable_gqa=enable_gqa, **kw)
            if threading.get_ident() == recorder.thread and recorder.current >= 0:
                w = sdpa_weights(query, key, attn_mask, is_causal, scale, enable_gqa)
                recorder.records[recorder.current].append(w if w.dim() == 4 else w.unsqueeze(0))
            return out

        fastpath = torch.backends.mha.get_fastpath_enabled()
        try:
            torch.backends.mha.set_fastpath_enabled(False)
            F.scaled_dot_product_attention = recorded_sdpa
            yield
        finally:
            F.scaled_dot_product_attention = original
            torch.backends.mha.set_fastpath_enabled(fastpath)
            for h in handles:
                h.remove()

    @staticmethod
    def _ask_weights(_mod: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        return args, {**kwargs, "need_weights": True, "average_attn_weights": False}

    def _mha_out(self, _mod: nn.Module, _args: Any, out: Any) -> None:
        if self.current >= 0 and isinstance(out, tuple) and len(out) > 1 and out[1] is not None:
            self.records[self.current].append(out[1].float())

    def weights(self) -> torch.Tensor:
        counts = [len(r) for r in self.records]
        if any(c != 1 for c in counts):
            raise TransformerError(
                f"expected one attention call per block; recorded {counts} (blocks in order). Attention is read "
                "from nn.MultiheadAttention modules and torch.nn.functional.scaled_dot_product_attention calls; a "
                "block with none of these (a hand-written softmax) or with several (cross-attention) cannot be "
                "read this way: pass attention=False, or compute the weights in your model and pass them to the "
                "attention functions directly")
        return torch.stack([r[0] for r in self.records])


@contextlib.contextmanager
def _no_lasting_capture_hooks(model: nn.Module) -> Iterator[None]:
    """transformers (5.x) installs output-capturing hooks on a model the first time it is asked for hidden states
    or attentions, and keeps them. Take away the ones our pass installed (only those: transformers' own, by their
    function's module), and its "installed" flag, so the model is as it was."""
    mods = list(model.modules())
    before = [(set(m._forward_hooks), set(m._forward_pre_hooks), "_output_capturing_hooks_installed" in m.__dict__)
              for m in mods]
    try:
        yield
    finally:
        for m, (fwd, pre, flagged) in zip(mods, before, strict=True):
            for hooks, old in ((m._forward_hooks, fwd), (m._forward_pre_hooks, pre)):
                for key in [k for k in hooks if k not in old]:
                    if getattr(hooks[key], "__module__", "").startswith("transformers."):
                        del hooks[key]
                        m._forward_hooks_with_kwargs.pop(key, None)
                        m._forward_hooks_always_called.pop(key, None)
                        m._forward_pre_hooks_with_kwargs.pop(key, None)
            if not flagged and "_output_capturing_hooks_installed" in m.__dict__:
                del m.__dict__["_output_capturing_hooks_installed"]


@contextlib.contextmanager
def _eager_attention(model: nn.Module) -> Iterator[None]:
    impl = getattr(model.config, "_attn_implementation", None)
    if impl in (None, "eager"):
        yield
        return
    try:
        model.set_attn_implementation("eager")
    except Exception as err:  # said to the user with the model's own reason
        raise TransformerError(f"{type(model).__name__} runs {impl!r} attention, which returns no weights, and "
                               f"could not be switched to 'eager' for one pass ({err}); load it with "
                               "attn_implementation='eager'") from err
    try:
        yield
    finally:
        model.set_attn_implementation(impl)


# ----------------------------------------------------------------------------------------------------------------
@keywords_checked
def trace(model: nn.Module, inputs: Any, *, attention: bool = False, attention_mask: Any = None,
          tokens: Any = None, tokenizer: Any = None, vocab: Any = None, blocks: Sequence[str] | None = None,
          final_norm: Any = "auto", unembed: Any = "auto", target: str | None = None,
          atol: float = 1e-4) -> Trace:
    """Run ``model`` once on ``inputs`` and record its residual stream (and attention weights).

    Parameters
    ----------
    model
        A Hugging Face model (causal LM, masked LM or encoder), an ``nn.TransformerEncoder``, or any module with
        an ``nn.ModuleList`` of blocks (nanoGPT-style).
    inputs
        Token ids (B, T), embeddings (B, T, D) (``nn.TransformerEncoder``), or a tokenizer's output.
    attention
        Also record the attention weights (L, B, H, T, T).
    attention_mask
        (B, T), 1 for real tokens (default: the inputs' ``attention_mask``, else all real). Passed to the model
        (Hugging Face: ``attention_mask``; ``nn.TransformerEncoder``: ``src_key_padding_mask``); padded
        positions are NaN in every statistic.
    tokens, tokenizer, vocab
        Token strings per sequence, for a model without a tokenizer; the tokenizer, to name tokens; id → string
        (list or callable) for decoded predictions (default: the tokenizer, else ``#id``).
    blocks
        Names of the blocks in order (default: found, see :func:`find_blocks`); not needed for Hugging Face
        models.
    final_norm, unembed
        The modules (or names) that turn the last residual into logits. "auto": the model's own (Hugging Face:
        the final norm of the base model and the output head; others: a norm named ln_f / norm / final_norm and a
        Linear named lm_head / head / unembed). ``final_norm=None``: none; ``unembed=None``: no decoder.
    target
        "next" or "same" token for the cross-entropy (default: "same" for masked LMs, else "next").
    atol
        How close the decoded last layer must be to the model's own logits (checked on every trace).

    Returns
    -------
    Trace
        The decoder is checked on every call: decoding the last residual must give the model's own logits (within
        ``atol``), else it is refused with the difference and what to pass instead.
    """
    if not isinstance(model, nn.Module):
        raise TransformerError(f"model must be a torch.nn.Module; got {what(model)}")
    if target not in (None, "next", "same"):
        raise TransformerError(f"target must be 'next', 'same' or None; got {target!r}")
    model = model_for_work(model)
    args, kwargs, ids, mask = _split_inputs(model, inputs, attention_mask)
    if attention:
        _check_attention_memory(model, mask.shape)
    hf = _is_hf(model)
    if blocks is not None:
        block_names = list(blocks)
        block_mods = [_module(model, b, "blocks") for b in block_names]
    elif hf:
        block_names, block_mods = [], []
    else:
        block_names, block_mods = find_blocks(model)
    norm = _find_final_norm(model, block_names) if final_norm == "auto" else \
        _module(model, final_norm, "final_norm")
    sources: dict[str, str] = {}
    captured: dict[str, Any] = {}
    handles = []
    recorder = _AttentionRecorder(block_mods) if attention and not hf else None
    try:
        if norm is not None:
            handles.append(norm.register_forward_pre_hook(lambda _m, a: captured.setdefault("norm_in", a[0])))
        if not hf or blocks is not None:
            captured["blocks"] = [None] * len(block_mods)

            def first_in(_m, a, kw):
                x = a[0] if a else next((v for v in kw.values() if isinstance(v, torch.Tensor)), None)
                captured.setdefault("embed", x)
            handles.append(block_mods[0].register_forward_pre_hook(first_in, with_kwargs=True))
            for i, mod in enumerate(block_mods):
                handles.append(mod.register_forward_hook(
                    lambda _m, _a, out, i=i: captured["blocks"].__setitem__(i, _first_tensor(out))))
        with evaluation_mode(model), torch.no_grad(), contextlib.ExitStack() as stack:
            if hf:
                stack.enter_context(_no_lasting_capture_hooks(model))
            if attention and hf:
                stack.enter_context(_eager_attention(model))
            if recorder is not None:
                stack.enter_context(recorder.active())
            extra = {"output_hidden_states": True, "return_dict": True} if hf else {}
            if attention and hf:
                extra["output_attentions"] = True
            out = model(*args, **kwargs, **extra)
    finally:
        for h in handles:
            h.remove()
    # residual stream
    batch_first = _batch_first(block_mods)
    if hf and blocks is None:
        hidden = list(out.hidden_states)
        if norm is not None and "norm_in" in captured and hidden[-1] is not captured["norm_in"]:
            normed = norm(captured["norm_in"])
            if torch.allclose(normed, hidden[-1], atol=1e-6) and not torch.allclose(captured["norm_in"], hidden[-1]):
                hidden[-1] = captured["norm_in"]  # GPT-2, Llama…: the last hidden state is after the final norm
                sources["residual"] = "hidden_states (the last one read before the final norm)"
        sources.setdefault("residual", "hidden_states")
        block_count = len(hidden) - 1
    else:
        seq = [captured.get("embed")] + captured["blocks"]
        if any(x is None or not isinstance(x, torch.Tensor) for x in seq):
            raise TransformerError("a block returned no tensor (or never ran): the residual stream cannot be read "
                                   "from its output; pass blocks= naming modules that return the residual")
        hidden = [x if batch_first else x.transpose(0, 1) for x in seq]
        sources["residual"] = "hooks on " + ", ".join(block_names[:2]) + ("…" if len(block_names) > 2 else "")
        block_count = len(block_mods)
    if any(isinstance(x, torch.Tensor) and x.is_nested for x in hidden):
        raise TransformerError("the blocks ran on nested tensors (PyTorch's fast path); cannot read positions")
    residual = torch.stack([h.detach() for h in hidden])
    b, t = mask.shape
    if tuple(residual.shape[1:3]) != (b, t):
        raise TransformerError(f"the residual stream has shape {tuple(residual.shape)}; expected (layers, {b}, {t}, "
                               "D): do the blocks return (batch, positions, features)?")
    # attention
    attn = None
    if attention:
        if hf:
            if not getattr(out, "attentions", None):
                raise TransformerError(f"{type(model).__name__} returned no attention weights")
            attn = torch.stack([a.detach().float() for a in out.attentions])
            sources["attention"] = "output_attentions (eager pass)"
        else:
            attn = recorder.weights().detach()
            sources["attention"] = "recorded per block (nn.MultiheadAttention weights / recomputed SDPA q·k)"
        if attn.shape[0] != block_count or attn.shape[1] != b or tuple(attn.shape[-2:]) != (t, t):
            raise TransformerError(f"attention weights have shape {tuple(attn.shape)}; expected ({block_count}, {b}, "
                                   f"heads, {t}, {t})")
    # logits and the decoder
    logits = getattr(out, "logits", None) if not isinstance(out, torch.Tensor) else None
    if logits is None and not hf:
        first = _first_tensor(out)
        if first is not None and first.dim() == 3 and not torch.equal(first, residual[-1]):
            logits = first if batch_first or first.shape[:2] == (b, t) else first.transpose(0, 1)
    decode, problem = _decoder(model, hf, norm, unembed, logits, residual, mask, atol)
    if target is None:
        masked = hf and ("MaskedLM" in type(model).__name__ or "ForPreTraining" in type(model).__name__)
        target = "same" if masked else "next"
    names = ["embeddings"] + [f"block {i + 1}" for i in range(block_count)]
    return Trace(residual=residual, mask=mask, input_ids=None if ids is None else ids.detach().cpu(),
                 tokens=_token_strings(ids, mask, tokens, tokenizer, (b, t)),
                 logits=None if logits is None else logits.detach(), attentions=attn, layer_names=names,
                 decode=decode, decode_problem=problem, target=target, vocab=_vocab(tokenizer, vocab),
                 sources=sources)


MAX_ATTENTION_BYTES = 2 << 30


def _check_attention_memory(model: nn.Module, shape: tuple[int, int]) -> None:
    """Refuse a pass whose attention weights (layers × batch × heads × T × T float32) would pass 2 GiB."""
    cfg = getattr(model, "config", None)
    layers = getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer", None)
    heads = getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_head", None)
    if not layers or not heads:
        return
    need = int(layers) * int(heads) * shape[0] * shape[1] ** 2 * 4
    if need > MAX_ATTENTION_BYTES:
        raise TransformerError(f"attention weights for {shape[0]} sequence(s) of {shape[1]} tokens would take "
                               f"{need / 2**30:.1f} GiB ({layers} layers × {heads} heads × T² float32); the limit is "
                               "2 GiB. Pass fewer sequences or a shorter window, or attention=False for the "
                               "residual stream and the lens alone")


def _batch_first(blocks: list[nn.Module]) -> bool:
    for b in blocks[:1]:
        attn = getattr(b, "self_attn", None)
        if isinstance(attn, nn.MultiheadAttention):
            return bool(attn.batch_first)
    return True


def _decoder(model: nn.Module, hf: bool, norm: nn.Module | None, unembed: Any, logits: torch.Tensor | None,
             residual: torch.Tensor, mask: torch.Tensor, atol: float) -> tuple[Callable | None, str]:
    if unembed == "auto":
        head = _hf_head(model) if hf else _generic_unembed(model, None if logits is None else logits.shape[-1])
    else:
        head = _module(model, unembed, "unembed") if not callable(unembed) or isinstance(unembed, nn.Module) \
            else unembed
    if head is None:
        kind = type(model).__name__
        why = (f"{kind} has no unembedding: it is an encoder that outputs hidden states, not token logits, so "
               "its layers cannot be decoded into tokens. Load it with a language-model head (e.g. "
               "AutoModelForMaskedLM / AutoModelForCausalLM) or pass unembed= (and final_norm=)") if hf else \
            (f"{kind} has no module that maps the residual to token logits (looked for a Linear named "
             f"{', '.join(UNEMBED_NAMES)}); pass unembed= (and final_norm=) to decode its layers")
        return None, why

    def decode(h: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return head(norm(h) if norm is not None else h)

    decode.modules = (norm, head)  # type: ignore[attr-defined]
    if logits is None:
        return decode, ""
    with evaluation_mode(model):
        mine = decode(residual[-1])
    if mine.shape != logits.shape:
        raise TransformerError(f"decoding the last layer gave shape {tuple(mine.shape)} but the model's logits have "
                               f"{tuple(logits.shape)}: pass unembed= and final_norm= naming the model's own")
    keep = mask.to(mine.device)
    gap = float((mine.float() - logits.float()).abs()[keep].max())
    scale = float(logits.float().abs()[keep].max()) or 1.0
    if gap > atol * max(1.0, scale):
        raise TransformerError(
            f"decoding the last layer's residual with final_norm={type(norm).__name__ if norm else None} and "
            f"unembed={type(head).__name__} does not give the model's own logits (largest difference {gap:.3g}): "
            "the model transforms its logits further (scaling, soft-capping) or these are not its own modules. "
            "Pass final_norm= and unembed= naming them")
    return decode, ""
