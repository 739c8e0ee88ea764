"""AttentionView: every head of every layer as a thumbnail, sorted by entropy; click one for its token-to-token
pattern, hover a token to see where it attends from and to. Long sequences page; the view never receives the
full (layers × heads × T × T) tensor, only thumbnails and the pattern of the head shown, one page at a time."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import traitlets

from ..analysis import transformers as T
from ..pipeline.checks import check_int, keywords_checked
from ..pipeline.transport import encode
from ._base import model_name
from .logit_lens import TransformerView, _np32

__all__ = ["AttentionView"]


def thumbnails(weights: torch.Tensor, size: int) -> np.ndarray:
    """(L, H, T, T) → (L, H, s, s) uint8: block means (s = min(size, T)), each thumbnail scaled by its own max."""
    w = weights.float()
    n_l, n_h, t, _ = w.shape
    s = min(size, t)
    pooled = torch.nn.functional.adaptive_avg_pool2d(w.reshape(n_l * n_h, 1, t, t), s).reshape(n_l, n_h, s, s)
    top = pooled.amax((-1, -2), keepdim=True).clamp(min=1e-12)
    return np.ascontiguousarray((pooled / top * 255).round().clamp(0, 255).to(torch.uint8).numpy())


class AttentionView(TransformerView):
    """Attention heads of ``model`` on one text (Hugging Face models running SDPA are switched to eager attention
    for the pass and back; nn.MultiheadAttention and nanoGPT's SDPA calls are read per block, see
    :func:`~hiddenwidgets.analysis.transformers.trace`).

    Thumbnails: each head's pattern averaged to ``thumb`` × ``thumb`` cells (scaled to its own maximum), in
    layer rows sorted by mean entropy (low: focused), labelled with its class (previous-token, first-token,
    focused, broad, mixed; :func:`~hiddenwidgets.analysis.transformers.classify_heads`). The selected head's
    pattern is sent for ``page_size`` queries × keys at a time, with its distance profile (mean weight per
    offset query − key); it is always the latest computed weights' (the step slider moves the thumbnails and
    numbers, and the detail says which step its pattern is from). ``head`` (layer, head) and ``page`` are traits.
    """

    _view_file = "attention_view"

    head = traitlets.List(traitlets.Int(), [0, 0], help="(layer, head) shown in detail.").tag(sync=True)
    page = traitlets.Int(0, help="Page of the selected head's pattern (page_size queries from page × size).").tag(
        sync=True)
    _pattern = traitlets.Dict(help="The selected head's pattern on the current page, {header, data}.").tag(sync=True)

    def _describe(self) -> str:
        return (f"the attention heads of {model_name(self.model)} on one text, classified by pattern"
                + (f" ({self.status})" if self.status else ""))

    @keywords_checked
    def __init__(self, model: torch.nn.Module, source: Any, *, tokenizer: Any = None, tokens: Any = None,
                 sequence: int = 0, thumb: int = 24, page_size: int = 128, every: int | None = None,
                 overhead: float = 0.03, title: str = "Attention heads"):
        self.thumb = check_int(thumb, "thumb", minimum=2, maximum=64, error=T.TransformerError)
        self.page_size = check_int(page_size, "page_size", minimum=8, maximum=512, error=T.TransformerError)
        super().__init__(title=title, text=source if isinstance(source, str) else "",
                         editable=isinstance(source, str) and tokenizer is not None)
        self._setup(model, source, tokenizer, tokens, sequence, every, overhead, {})
        self.refresh()

    def _compute(self) -> dict:
        tr = self._trace(attention=True)
        s = min(self.sequence, tr.mask.shape[0] - 1)
        where = tr.mask[s].nonzero()[:, 0]
        w = tr.attentions[:, s][:, :, where][..., where]  # (L, H, n, n) real tokens only
        mask = torch.ones(1, len(where), dtype=torch.bool)
        self.weights = w
        classes = T.classify_heads(w[:, None], mask)
        self.classes = classes
        entropy = classes.entropy
        order = [sorted(range(w.shape[1]), key=lambda h, row=row: float(row[h])) for row in entropy]
        offsets, profile = T.distance_profile(w[:, None], mask)
        self.offsets, self.profile = offsets, profile
        self._weights_step = self._step
        arrays = {"entropy": _np32(entropy), "previous": _np32(classes.previous_mass),
                  "first": _np32(classes.first_mass), "k90": _np32(classes.k90),
                  "thumbs": thumbnails(w, self.thumb)}
        index, data = encode(arrays)
        header = {"index": index, "layers": tr.layer_names[1:], "heads": int(w.shape[1]),
                  "tokens": [tr.tokens[s][j] for j in where.tolist()], "labels": classes.labels, "order": order,
                  "thumb": int(arrays["thumbs"].shape[-1]), "page_size": self.page_size,
                  "step": -1, "source": tr.sources.get("attention", "")}
        counts = ", ".join(f"{v} {k}" for k, v in classes.counts().items() if v)
        self.status = f"{w.shape[0]} layers × {w.shape[1]} heads × {len(where)} tokens · {counts}"
        self._send_pattern()
        return {"header": header, "data": data}

    @traitlets.observe("head", "page")
    def _selection(self, _change: dict) -> None:
        if hasattr(self, "weights"):
            self._send_pattern()

    @traitlets.validate("head")
    def _valid_head(self, proposal: dict) -> list:
        v = list(proposal["value"])
        w = getattr(self, "weights", None)
        if len(v) != 2 or (w is not None and not (0 <= v[0] < w.shape[0] and 0 <= v[1] < w.shape[1])):
            within = tuple(w.shape[:2]) if w is not None else "?"
            raise traitlets.TraitError(f"head must be [layer, head] within {within}; got {v}")
        return v

    def _send_pattern(self) -> None:
        layer, hd = self.head
        w = self.weights[layer, hd]
        n = w.shape[0]
        pages = max(1, -(-n // self.page_size))
        page = min(max(self.page, 0), pages - 1)
        q0 = page * self.page_size
        q1 = min(n, q0 + self.page_size)
        # keys: the window that ends at the page's last query (a causal head sees no later keys), page_size wide
        k1 = q1 if bool((w.triu(1) == 0).all()) else min(n, q0 + self.page_size)
        k0 = max(0, k1 - self.page_size)
        block = w[q0:q1, k0:k1]
        outside = (w[q0:q1].sum(-1) - block.sum(-1))
        index, data = encode({"pattern": _np32(block), "outside": _np32(outside),
                              "profile": _np32(self.profile[layer, hd])})
        self._pattern = {"header": {"index": index, "layer": layer, "head": hd, "q0": q0, "k0": k0, "pages": pages,
                                    "page": page, "n": n, "offset0": int(self.offsets[0]),
                                    "step": self._weights_step if self.steps else -1}, "data": data}
