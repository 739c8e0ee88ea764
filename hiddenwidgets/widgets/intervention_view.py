"""InterventionView: what an edit of a layer (a concept direction removed or clamped) does to each prediction."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import traitlets

from ..analysis.interventions import InterventionError, InterventionResult
from ..pipeline.checks import check_names, keywords_checked
from ..pipeline.transport import encode
from ._base import HiddenWidget, names
from .projector import Examples

__all__ = ["InterventionView"]


class InterventionView(HiddenWidget):
    """The inputs of one or more :func:`hiddenwidgets.interventions.intervene` results, each with its predicted
    class and probability before and after the edit; changed predictions first and marked.

    ``results``: one result, or ``{name: result}`` to compare edits (e.g. the concept's direction and a random
    one) on the same inputs; ``examples``: what to show for each input (images, rows or texts), in the order
    given to ``intervene``.
    """

    _view_file = "intervention_view"

    title = traitlets.Unicode("Intervention").tag(sync=True)
    class_names = traitlets.List().tag(sync=True)
    edits = traitlets.List(traitlets.Dict(), help="Per edit: name, layer, mode, value, summary (read-only).").tag(
        sync=True)
    n = traitlets.Int(0).tag(sync=True)
    example_kind = traitlets.Unicode("none").tag(sync=True)
    example_meta = traitlets.Dict().tag(sync=True)
    _data = traitlets.Dict(help="Per edit, predictions and probabilities before/after, {header, data}.").tag(
        sync=True)

    def _describe(self) -> str:
        return f"predictions before and after the edit(s) {names(self.results)} on {self.n} inputs, changed first"

    @keywords_checked
    def __init__(self, results: InterventionResult | Mapping[str, InterventionResult], examples: Any = None, *,
                 class_names: list[str] | None = None, title: str = "Intervention"):
        class_names = check_names(class_names, "class_names", InterventionError)
        named = dict(results) if isinstance(results, Mapping) else {"edit": results}
        if not named or not all(isinstance(r, InterventionResult) for r in named.values()):
            raise InterventionError("InterventionView takes the result of hiddenwidgets.interventions.intervene, or "
                                    "{name: result}")
        sizes = {name: len(r.target) for name, r in named.items()}
        if len(set(sizes.values())) != 1:
            raise InterventionError(f"the results must be on the same inputs; got {sizes} inputs")
        n = next(iter(sizes.values()))
        self.results = named
        self.examples = Examples(examples, n)
        arrays, edits = {}, []
        for k, (name, r) in enumerate(named.items()):
            rows = np.arange(n)
            pb, pa = r.predicted_before.numpy(), r.predicted_after.numpy()
            arrays[f"{k}:before"] = pb.astype(np.int32)
            arrays[f"{k}:after"] = pa.astype(np.int32)
            arrays[f"{k}:p_before"] = r.probs_before.numpy()[rows, pb].astype(np.float32)  # its own prediction
            arrays[f"{k}:p_after"] = r.probs_after.numpy()[rows, pa].astype(np.float32)
            arrays[f"{k}:p_was"] = r.probs_after.numpy()[rows, pb].astype(np.float32)  # the old class, after
            edits.append({"name": str(name), "layer": r.layer, "mode": r.mode, "value": r.value,
                          "summary": {k2: v for k2, v in r.summary().items() if isinstance(v, (int, float, str))}})
        index, data = encode(arrays)
        super().__init__(title=title, class_names=list(class_names or []), edits=edits, n=n,
                         example_kind=self.examples.kind, example_meta=self.examples.meta,
                         _data={"header": {"index": index}, "data": data})
        self.on_msg(self._on_custom)

    def _on_custom(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "examples":
            page = int(content.get("page", 0))
            header, data = self.examples.page(page)
            self.send({"type": "examples", "page": page, "header": header}, [data])

    def static_state(self) -> dict[str, Any]:
        pages = {}
        for number in range(self.examples.pages(self.n)):
            header, data = self.examples.page(number)
            pages[str(number)] = {"header": header, "data": data}
        return {"_static": {"pages": pages}}
