"""TokenFlow: the life of each token through depth: the residual's norm, its cosine to the token's input embedding
and to its final representation, and how decodable token identity is per layer, as lines over depth."""

from __future__ import annotations

from typing import Any

import torch
import traitlets

from ..analysis import transformers as T
from ..pipeline.checks import check_bool, keywords_checked
from ..pipeline.transport import encode
from ._base import model_name
from .logit_lens import TransformerView, _np32

__all__ = ["TokenFlow"]


class TokenFlow(TransformerView):
    """Per token of one text, lines over depth (:func:`~hiddenwidgets.analysis.transformers.token_flow`): the
    residual's norm, cosine to its layer-0 embedding and to its last layer. ``decodability=True`` adds a linear
    probe's held-out accuracy at predicting token identity from each layer, over all sequences of ``source``
    (:func:`~hiddenwidgets.analysis.transformers.token_decodability`; tokens seen once are left out, and counted).
    """

    _view_file = "token_flow"

    selected = traitlets.List(traitlets.Int(), [], help="Token positions highlighted (the view sets it).").tag(
        sync=True)

    def _describe(self) -> str:
        return (f"per token of one text, the residual stream of {model_name(self.model)} over depth (norm, cosine to "
                f"its embedding and its last layer)" + (f" ({self.status})" if self.status else ""))

    @keywords_checked
    def __init__(self, model: torch.nn.Module, source: Any, *, tokenizer: Any = None, tokens: Any = None,
                 sequence: int = 0, decodability: bool = False, every: int | None = None, overhead: float = 0.03,
                 title: str = "Token flow"):
        self.decodability = check_bool(decodability, "decodability", T.TransformerError)
        super().__init__(title=title, text=source if isinstance(source, str) else "",
                         editable=isinstance(source, str) and tokenizer is not None)
        self._setup(model, source, tokenizer, tokens, sequence, every, overhead, {"unembed": None})
        self.refresh()

    def _compute(self) -> dict:
        tr = self._trace()
        flow = T.token_flow(tr)
        s = min(self.sequence, tr.mask.shape[0] - 1)
        where = tr.mask[s].nonzero()[:, 0]
        arrays = {"norm": _np32(flow.norm[:, s][:, where]), "cos_in": _np32(flow.cos_to_input[:, s][:, where]),
                  "cos_out": _np32(flow.cos_to_final[:, s][:, where])}
        header: dict[str, Any] = {"layers": flow.layer_names, "tokens": [tr.tokens[s][j] for j in where.tolist()],
                                  "step": -1}
        note = ""
        if self.decodability:
            dec = T.token_decodability(tr)
            arrays["decodable"] = _np32(torch.tensor(dec.accuracy))
            header["chance"] = dec.chance
            note = (f" · identity probe on {dec.rows} positions of {dec.types} repeated tokens"
                    + (f" ({dec.left_out} positions of tokens seen once left out)" if dec.left_out else ""))
        index, data = encode(arrays)
        header["index"] = index
        self.status = f"{len(flow.layer_names)} layers × {len(where)} tokens{note}"
        return {"header": header, "data": data}
