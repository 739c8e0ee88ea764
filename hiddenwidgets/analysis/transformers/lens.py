"""The logit lens and the tuned lens: what each layer's residual stream would predict if it were the last.

- **Logit lens** (nostalgebraist 2020, *interpreting GPT: the logit lens*): decode every layer's residual with the
  model's own final norm and unembedding. At the last layer this is the model's output (checked on every trace).
- **Tuned lens** (Belrose et al. 2023, *Eliciting Latent Predictions from Transformers with the Tuned Lens*): a
  learned affine translator per layer, h ↦ h + A h + b (A, b start at zero, so training starts from the logit
  lens), trained to minimise KL(final ‖ lens) on text the user gives; the model itself is frozen and unchanged.

Per layer × sequence × position (float32 whatever the model's dtype; padding and positions without a target NaN):
top-k token ids and probabilities, entropy (nats), cross-entropy against the actual next token ("next", causal
LMs) or the token itself ("same", masked LMs), and KL(final ‖ layer) in nats. The decoded logits are made one layer
at a time, so memory is one layer's B × T × V, never all layers' at once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...pipeline.checks import check_int, check_number, keywords_checked, what
from ._errors import TransformerError
from .trace import Trace

__all__ = ["LensResult", "TunedLens", "fit_tuned_lens", "logit_lens"]


@dataclass
class LensResult:
    """Per layer × sequence × position statistics of a lens (shapes (L + 1, B, T), top-k (L + 1, B, T, k))."""

    layer_names: list[str]
    tokens: list[list[str]]
    targets: torch.Tensor | None  # (B, T) the token each position is scored against (-1: none)
    target: str  # "next" or "same"
    topk_ids: torch.Tensor
    topk_probs: torch.Tensor
    entropy: torch.Tensor
    cross_entropy: torch.Tensor
    kl_to_final: torch.Tensor
    mask: torch.Tensor
    vocab: Callable[[int], str]
    lens: str = "logit"

    def top_tokens(self, layer: int, seq: int = 0, pos: int = 0) -> list[tuple[str, float]]:
        """The top-k (token string, probability) pairs of one cell."""
        return [(self.vocab(int(i)), float(p)) for i, p in zip(self.topk_ids[layer, seq, pos].tolist(),
                                                                self.topk_probs[layer, seq, pos].tolist(),
                                                                strict=True)]


def _targets(trace: Trace) -> torch.Tensor | None:
    ids = trace.input_ids
    if ids is None:
        return None
    tgt = torch.full_like(ids, -1)
    if trace.target == "same":
        tgt[trace.mask] = ids[trace.mask]
    else:
        ok = trace.mask[:, :-1] & trace.mask[:, 1:]
        tgt[:, :-1] = torch.where(ok, ids[:, 1:], torch.full_like(ids[:, 1:], -1))
    return tgt


@keywords_checked
def logit_lens(trace: Trace, *, k: int = 5, tuned: TunedLens | None = None) -> LensResult:
    """Decode every layer of ``trace`` (:func:`~hiddenwidgets.analysis.transformers.trace`) into token
    distributions: the logit lens (nostalgebraist 2020), or the tuned lens when ``tuned`` is given (Belrose et
    al. 2023).

    Raises :class:`TransformerError` when the model has no unembedding (an encoder such as BertModel: there are
    no tokens to decode into; the message says which model class to load instead).
    """
    if not isinstance(trace, Trace):
        raise TransformerError(f"logit_lens takes a Trace (hiddenwidgets.analysis.transformers.trace(model, "
                               f"inputs)); got {what(trace)}")
    if trace.decode is None:
        raise TransformerError("the logit lens does not apply: " + trace.decode_problem)
    k = check_int(k, "k", minimum=1, error=TransformerError)
    if tuned is not None and not isinstance(tuned, TunedLens):
        raise TransformerError(f"tuned must be a TunedLens; got {what(tuned)}")
    if tuned is not None and tuned.n_layers != trace.n_layers:
        raise TransformerError(f"this tuned lens was trained for {tuned.n_layers} blocks; the model has "
                               f"{trace.n_layers}")
    n, b, t = trace.residual.shape[:3]
    mask = trace.mask
    with torch.no_grad():
        final = trace.logits if trace.logits is not None else trace.decode(trace.residual[-1])
        final_logp = torch.log_softmax(final.float(), -1).cpu()
    vocab_size = final_logp.shape[-1]
    k = min(k, vocab_size)
    targets = _targets(trace)
    shape = (n, b, t)
    nan = float("nan")
    entropy, ce, kl = torch.full(shape, nan), torch.full(shape, nan), torch.full(shape, nan)
    top_ids = torch.zeros(*shape, k, dtype=torch.long)
    top_p = torch.full((*shape, k), nan)
    final_p = final_logp.exp()
    for layer in range(n):
        with torch.no_grad():
            h = trace.residual[layer]
            if tuned is not None:
                h = tuned.translate(h, layer)
            logp = final_logp if layer == n - 1 and tuned is None else \
                torch.log_softmax(trace.decode(h).float(), -1).cpu()
        p = logp.exp()
        entropy[layer] = -(p * logp).nansum(-1)
        kl[layer] = (final_p * (final_logp - logp)).nansum(-1)
        vals, idx = logp.topk(k, dim=-1)
        top_ids[layer], top_p[layer] = idx, vals.exp()
        if targets is not None:
            ok = targets >= 0
            picked = logp.gather(-1, targets.clamp(min=0)[..., None])[..., 0]
            ce[layer] = torch.where(ok, -picked, torch.full_like(picked, nan))
    pad = ~mask
    for arr in (entropy, kl):
        arr[:, pad] = nan
    top_p[:, pad] = nan
    return LensResult(layer_names=list(trace.layer_names), tokens=trace.tokens, targets=targets,
                      target=trace.target, topk_ids=top_ids, topk_probs=top_p, entropy=entropy, cross_entropy=ce,
                      kl_to_final=kl, mask=mask, vocab=trace.vocab, lens="tuned" if tuned is not None else "logit")


# ----------------------------------------------------------------------------------------------------------------
class TunedLens(nn.Module):
    """Belrose et al. (2023)'s tuned lens: one affine translator per block output below the last,
    h ↦ h + A_l h + b_l, decoded with the model's own final norm and unembedding. A_l and b_l start at zero (the
    logit lens); the last layer has none (it is the model's output). Save with :meth:`save`, load with
    :meth:`load`."""

    def __init__(self, n_layers: int, d_model: int):
        super().__init__()
        self.n_layers = check_int(n_layers, "n_layers", minimum=1, error=TransformerError)
        self.d_model = check_int(d_model, "d_model", minimum=1, error=TransformerError)
        self.translators = nn.ModuleList(nn.Linear(d_model, d_model) for _ in range(n_layers))
        for lin in self.translators:
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
        self.steps_trained = 0

    def translate(self, h: torch.Tensor, layer: int) -> torch.Tensor:
        """Layer ``layer``'s residual (0 = embeddings … n_layers = the last, unchanged) in the final layer's
        coordinates."""
        if layer >= self.n_layers:
            return h
        lin = self.translators[layer]
        return h + lin(h.to(lin.weight.dtype)).to(h.dtype)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the translators (and their sizes) to ``path`` with ``torch.save``; atomic (temp file, replace)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        torch.save({"format": "hiddenwidgets-tuned-lens/1", "n_layers": self.n_layers, "d_model": self.d_model,
                    "steps_trained": self.steps_trained, "state": self.state_dict()}, tmp)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> TunedLens:
        """Read a lens written by :meth:`save` (``weights_only=True``: a file cannot run code)."""
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(blob, dict) or blob.get("format") != "hiddenwidgets-tuned-lens/1":
            raise TransformerError(f"{path} is not a tuned lens saved by TunedLens.save")
        lens = cls(blob["n_layers"], blob["d_model"])
        lens.load_state_dict(blob["state"])
        lens.steps_trained = int(blob["steps_trained"])
        return lens


@keywords_checked
def fit_tuned_lens(traces: Sequence[Trace] | Trace, *, lens: TunedLens | None = None, steps: int = 200,
                   lr: float = 1e-3, weight_decay: float = 1e-3,
                   progress: Callable[[int, int, float], Any] | None = None) -> TunedLens:
    """Train a :class:`TunedLens` (Belrose et al. 2023) on recorded traces: minimise the sum over layers of the
    mean KL(final ‖ translated layer) over real positions, with Adam; the model is frozen (only its final norm
    and unembedding are applied; their parameters get no gradients).

    ``traces``: one or more :func:`trace` results (each one batch of text; cycled). ``lens``: continue training
    one. ``progress(step, steps, loss)`` after each step (a progress bar); returning False stops early.
    """
    items = [traces] if isinstance(traces, Trace) else list(traces)
    if not items or not all(isinstance(t, Trace) for t in items):
        raise TransformerError("traces must be one Trace or a list of them (hiddenwidgets.analysis.transformers"
                               ".trace(model, batch))")
    if any(t.decode is None for t in items):
        raise TransformerError("the tuned lens does not apply: " + next(t.decode_problem for t in items
                                                                        if t.decode is None))
    steps = check_int(steps, "steps", minimum=1, error=TransformerError)
    lr = check_number(lr, "lr", minimum=0, error=TransformerError)
    n_layers, d = items[0].n_layers, items[0].residual.shape[-1]
    lens = lens or TunedLens(n_layers, d)
    if lens.n_layers != n_layers or lens.d_model != d:
        raise TransformerError(f"lens is for {lens.n_layers} blocks of width {lens.d_model}; traces have "
                               f"{n_layers} of {d}")
    device = items[0].residual.device
    lens.to(device)
    targets = []
    with torch.no_grad():
        for t in items:
            final = t.logits if t.logits is not None else t.decode(t.residual[-1])
            targets.append(torch.log_softmax(final.float(), -1))
    opt = torch.optim.Adam(lens.parameters(), lr=lr, weight_decay=weight_decay)
    started = time.monotonic()
    for step in range(steps):
        t = items[step % len(items)]
        target = targets[step % len(items)]
        keep = t.mask.to(device)
        loss = torch.zeros((), device=device)
        for layer in range(n_layers):
            h = lens.translate(t.residual[layer].float(), layer).to(t.residual.dtype)
            logp = torch.log_softmax(_decode_with_grad(t, h).float(), -1)
            kl = (target.exp() * (target - logp)).sum(-1)
            loss = loss + kl[keep].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        lens.steps_trained += 1
        if progress is not None and progress(step + 1, steps, float(loss.detach())) is False:
            break
    lens.train_seconds = time.monotonic() - started
    return lens


def _decode_with_grad(trace: Trace, h: torch.Tensor) -> torch.Tensor:
    """The trace's decoder with autograd on, for the translators' gradients: the model's final norm and
    unembedding are called with detached copies of their parameters (``torch.func.functional_call``), so the
    model gets no ``.grad`` and no flag of it changes."""
    mods = getattr(trace.decode, "modules", None)
    if mods is None or not all(m is None or isinstance(m, nn.Module) for m in mods):
        raise TransformerError("the tuned lens needs the final norm and unembedding as modules (unembed= was a "
                               "plain function)")
    with torch.enable_grad():
        for mod in mods:
            if mod is not None:
                params = {k: v.detach() for k, v in mod.named_parameters()}
                params.update(dict(mod.named_buffers()))
                h = torch.func.functional_call(mod, params, (h,))
    return h
