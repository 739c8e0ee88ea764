"""The life of tokens through depth: per token and layer, the residual's norm, its cosine to the token's input
embedding and to its final representation, and how decodable the token's identity is per layer.

After *The hidden life of tokens* (Bartolo-style drift analyses; e.g. Voita et al. 2019, *The Bottom-up
Evolution of Representations in the Transformer*): a token's representation starts as its embedding and drifts
towards the prediction it serves; the cosine to the input falls and the cosine to the output rises with depth.
Decodability is a linear probe (:func:`hiddenwidgets.analysis.probes.probe_layers`, multinomial logistic
regression on a held-out split) predicting the token id at a position from that layer's residual.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ...pipeline.checks import check_int, keywords_checked, what
from ..probes import probe_layers
from ._errors import TransformerError
from .trace import Trace

__all__ = ["TokenFlow", "token_decodability", "token_flow"]


@dataclass
class TokenFlow:
    """(L + 1, B, T) float32 statistics (padding NaN)."""

    layer_names: list[str]
    tokens: list[list[str]]
    norm: torch.Tensor
    cos_to_input: torch.Tensor
    cos_to_final: torch.Tensor
    mask: torch.Tensor


def token_flow(trace: Trace) -> TokenFlow:
    """Norm of each token's residual, and its cosine to the token's layer-0 (embedding) and last-layer residual,
    computed in float32."""
    if not isinstance(trace, Trace):
        raise TransformerError(f"token_flow takes a Trace; got {what(trace)}")
    r = trace.residual.float().cpu()
    norm = r.norm(dim=-1)
    cos_in = torch.nn.functional.cosine_similarity(r, r[:1].expand_as(r), dim=-1)
    cos_out = torch.nn.functional.cosine_similarity(r, r[-1:].expand_as(r), dim=-1)
    pad = ~trace.mask
    for arr in (norm, cos_in, cos_out):
        arr[:, pad] = float("nan")
    return TokenFlow(layer_names=list(trace.layer_names), tokens=trace.tokens, norm=norm, cos_to_input=cos_in,
                     cos_to_final=cos_out, mask=trace.mask)


@dataclass
class Decodability:
    """Held-out accuracy of a linear probe predicting the token id from each layer's residual."""

    layer_names: list[str]
    accuracy: list[float]
    chance: float
    rows: int  # token positions used (real tokens whose id occurs at least ``min_count`` times)
    left_out: int  # real token positions whose id occurs fewer times (a probe cannot be tested on them)
    types: int


@keywords_checked
def token_decodability(trace: Trace, *, min_count: int = 2, seed: int = 0, test_fraction: float = 0.25,
                       max_iter: int = 100) -> Decodability:
    """Per layer, how linearly decodable each position's token identity is (a probe on the residual rows of all
    real positions). Token ids seen fewer than ``min_count`` times cannot be both trained and tested on: their
    positions are left out, and how many is reported in ``left_out``."""
    if not isinstance(trace, Trace) or trace.input_ids is None:
        raise TransformerError("token_decodability needs a Trace made from token ids (it predicts them)")
    min_count = check_int(min_count, "min_count", minimum=2, error=TransformerError)
    ids = trace.input_ids[trace.mask]
    _, inverse, counts = ids.unique(return_inverse=True, return_counts=True)
    keep = counts[inverse] >= min_count
    if int(keep.sum()) < 4 or int((counts >= min_count).sum()) < 2:
        raise TransformerError(f"too few repeated tokens to probe: {int(keep.sum())} positions of "
                               f"{int((counts >= min_count).sum())} token ids occur at least {min_count} times; "
                               "give more text")
    r = trace.residual.float().cpu()
    feats: dict[str, Any] = {name: r[i][trace.mask][keep] for i, name in enumerate(trace.layer_names)}
    results = probe_layers(feats, ids[keep].numpy(), control=False, seed=seed, test_fraction=test_fraction,
                           max_iter=max_iter)
    return Decodability(layer_names=list(trace.layer_names), accuracy=[r.accuracy for r in results],
                        chance=results[0].chance, rows=int(keep.sum()), left_out=int((~keep).sum()),
                        types=int((counts >= min_count).sum()))
