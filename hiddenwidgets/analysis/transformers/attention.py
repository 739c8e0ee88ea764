"""Attention heads: entropy, the distance profile, and the heads' classification.

Inputs are attention weights (L, B, H, T, T) (query × key; from :func:`~.trace.trace` with ``attention=True``, or
your own) and the (B, T) attention mask. Padded queries are NaN; padded keys are never counted.

- **Entropy** of each query's attention row, in nats: -Σ_k w log w (0 log 0 = 0). ``normalized=True`` divides
  by log(number of keys the query may attend to), so 1 is uniform attention and 0 one key.
- **Distance profile**: the mean weight a head puts at each offset d = query − key (d > 0: earlier tokens).
- **Classification**, after Ramsauer et al. (2020), *Hopfield Networks is All You Need* (section on BERT's heads):
  they count how many keys k carry 90 % of a query's attention; heads whose k is a large share of the sequence
  average broadly (their class I), heads with k of one or two retrieve a single pattern (class IV). Here, for
  queries with at least 4 keys: the median of k90 / keys (torch.median: the lower middle value). A head is
  ``previous-token`` when it puts on average ≥ ``threshold`` of its weight on the token just before the query,
  else ``first-token`` when ≥ ``threshold`` goes to the first real token (a BOS / [CLS] "sink"), else
  ``focused`` when the median k90 is ≤ 2 keys, else ``broad`` when the median k90 / keys ≥ ``broad_fraction``,
  else ``mixed``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...pipeline.checks import check_number, keywords_checked, what
from ._errors import TransformerError

__all__ = ["HEAD_CLASSES", "HeadClasses", "allowed_keys", "classify_heads", "distance_profile", "head_entropy"]

HEAD_CLASSES = ("previous-token", "first-token", "focused", "broad", "mixed")


def _check(weights: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(weights, torch.Tensor) or weights.dim() != 5 or weights.shape[-1] != weights.shape[-2]:
        got = tuple(weights.shape) if isinstance(weights, torch.Tensor) else what(weights)
        raise TransformerError("attention weights must be a (layers, batch, heads, queries, keys) tensor with as "
                               f"many queries as keys; got {got}")
    b, t = weights.shape[1], weights.shape[-1]
    if mask is None:
        mask = torch.ones(b, t, dtype=torch.bool)
    mask = torch.as_tensor(mask).bool().cpu()
    if tuple(mask.shape) != (b, t):
        raise TransformerError(f"mask must be (batch, positions) = {(b, t)}; got {tuple(mask.shape)}")
    return weights.detach().float().cpu(), mask


def allowed_keys(weights: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """(B, T, T) bool: which keys each query may attend to: real keys, and keys up to the query when the model is
    causal (every weight above the diagonal exactly 0 in every layer and head)."""
    w, mask = _check(weights, mask)
    t = w.shape[-1]
    causal = bool((w.triu(1) == 0).all())
    allowed = mask[:, None, :].expand(-1, t, -1).clone()
    if causal:
        allowed &= torch.ones(t, t, dtype=torch.bool).tril()
    return allowed


@keywords_checked
def head_entropy(weights: torch.Tensor, mask: torch.Tensor | None = None, *,
                 normalized: bool = False) -> torch.Tensor:
    """(L, B, H, T) entropy in nats of each query's attention row (Ramsauer et al. 2020 compare heads by it);
    padded queries NaN. ``normalized``: divided by log(allowed keys) (a query with one allowed key: 0)."""
    w, mask = _check(weights, mask)
    logw = torch.where(w > 0, w.log(), torch.zeros_like(w))
    ent = -(w * logw).sum(-1)
    if normalized:
        n = allowed_keys(w, mask).sum(-1).float()  # (B, T)
        denom = n.log()
        ent = torch.where(denom > 0, ent / denom.clamp(min=1e-12), torch.zeros_like(ent))
    return ent.masked_fill(~mask[None, :, None, :], float("nan"))


def mean_over_queries(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(L, B, H, T) → (L, H): the mean over every real query of every sequence (NaN-aware)."""
    v = values.masked_fill(~mask[None, :, None, :], float("nan"))
    return v.transpose(1, 2).reshape(v.shape[0], v.shape[2], -1).nanmean(-1)


@keywords_checked
def distance_profile(weights: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(offsets, profile)``: offsets d = query − key from −(T−1) to T−1, and (L, H, 2T−1) the mean weight a
    head puts at offset d, over the real queries whose key at that offset is real (NaN where there is none)."""
    w, mask = _check(weights, mask)
    t = w.shape[-1]
    offsets = torch.arange(-(t - 1), t)
    pair = (mask[:, :, None] & mask[:, None, :]).float()  # (B, Tq, Tk)
    out = torch.full((w.shape[0], w.shape[2], 2 * t - 1), float("nan"))
    for j, d in enumerate(offsets.tolist()):
        diag = w.diagonal(offset=-d, dim1=-2, dim2=-1)  # (L, B, H, n): w[q, q - d]
        valid = pair.diagonal(offset=-d, dim1=-2, dim2=-1)  # (B, n)
        count = valid.sum()
        if count > 0:
            out[:, :, j] = (diag * valid[None, :, None, :]).sum((1, 3)) / count
    return offsets, out


@dataclass
class HeadClasses:
    """Per layer × head: ``labels`` (one of :data:`HEAD_CLASSES`), and the numbers they come from."""

    labels: list[list[str]]
    previous_mass: torch.Tensor  # (L, H) mean weight on the key just before the query
    first_mass: torch.Tensor  # (L, H) mean weight on the first real token (queries after it)
    k90: torch.Tensor  # (L, H) median number of keys holding 90 % of the weight (queries with ≥ 4 keys)
    k90_fraction: torch.Tensor  # (L, H) median k90 / allowed keys
    entropy: torch.Tensor  # (L, H) mean entropy (nats) over real queries

    def counts(self) -> dict[str, int]:
        flat = [x for row in self.labels for x in row]
        return {c: flat.count(c) for c in HEAD_CLASSES}


@keywords_checked
def classify_heads(weights: torch.Tensor, mask: torch.Tensor | None = None, *, threshold: float = 0.5,
                   broad_fraction: float = 0.5) -> HeadClasses:
    """Classify every head as previous-token / first-token / focused / broad / mixed (see the module docstring;
    after Ramsauer et al. 2020's k90 analysis of BERT's heads)."""
    threshold = check_number(threshold, "threshold", minimum=0, maximum=1, error=TransformerError)
    broad_fraction = check_number(broad_fraction, "broad_fraction", minimum=0, maximum=1, error=TransformerError)
    w, mask = _check(weights, mask)
    n_l, b, n_h, t, _ = w.shape
    allowed = allowed_keys(w, mask)
    # previous token: w[q, q-1] for real q and q-1
    prev_valid = (mask[:, 1:] & mask[:, :-1]).float()  # (B, T-1)
    prev = w.diagonal(offset=-1, dim1=-2, dim2=-1)  # (L, B, H, T-1)
    denom = prev_valid.sum()
    previous = (prev * prev_valid[None, :, None]).sum((1, 3)) / denom if denom > 0 else \
        torch.full((n_l, n_h), float("nan"))
    # first real token of each sequence, queries after it
    first_idx = mask.float().argmax(1)  # (B,)
    pos = torch.arange(t)
    q_after = mask & (pos[None, :] > first_idx[:, None])  # (B, T)
    on_first = w.gather(-1, first_idx.view(1, b, 1, 1, 1).expand(n_l, b, n_h, t, 1))[..., 0]  # (L, B, H, T)
    cnt = q_after.float().sum()
    first = (on_first * q_after[None, :, None].float()).sum((1, 3)) / cnt if cnt > 0 else \
        torch.full((n_l, n_h), float("nan"))
    # k90
    n_keys = allowed.sum(-1)  # (B, T)
    ranked = w.masked_fill(~allowed[None, :, None], 0).sort(-1, descending=True).values.cumsum(-1)
    k90 = (ranked < 0.9).sum(-1) + 1  # (L, B, H, T)
    k90 = torch.minimum(k90, n_keys[None, :, None].expand_as(k90))
    use = mask & (n_keys >= 4)
    k90f = k90.float() / n_keys.clamp(min=1)[None, :, None].float()
    if use.any():  # the same queries count for every layer and head: (L, H, B, T)[..., use] -> (L, H, N)
        k90_med = k90.permute(0, 2, 1, 3)[..., use].float().median(-1).values
        frac_med = k90f.permute(0, 2, 1, 3)[..., use].median(-1).values
    else:
        k90_med = frac_med = torch.full((n_l, n_h), float("nan"))
    ent = mean_over_queries(head_entropy(w, mask), mask)
    labels = []
    for layer in range(n_l):
        row = []
        for hd in range(n_h):
            if previous[layer, hd] >= threshold:
                row.append("previous-token")
            elif first[layer, hd] >= threshold:
                row.append("first-token")
            elif k90_med[layer, hd] <= 2:
                row.append("focused")
            elif frac_med[layer, hd] >= broad_fraction:
                row.append("broad")
            else:
                row.append("mixed")
        labels.append(row)
    return HeadClasses(labels=labels, previous_mass=previous, first_mass=first, k90=k90_med,
                       k90_fraction=frac_med, entropy=ent)
