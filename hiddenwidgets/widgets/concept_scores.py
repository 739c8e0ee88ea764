"""ConceptScores: TCAV scores per concept, layer and class with their random baseline, and over training."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any

import traitlets

from ..charts import offline_chart
from ..pipeline.checks import check_names, keywords_checked, show
from ..pipeline.concepts import ConceptError
from ._base import HiddenWidget

REQUIRED = ("concept", "layer", "target")  # what identifies a row; the view shows the rest

__all__ = ["ConceptScores"]


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class ConceptScores(HiddenWidget):
    """Show :func:`hiddenwidgets.tcav.tcav` results: for a chosen concept, bars of the TCAV score per target class
    and layer (± one standard deviation over its CAVs), the random baseline, significance; with results from
    several epochs (``add`` after each), the concept's score over training per layer for a chosen class.

    While a :func:`~hiddenwidgets.tcav.tcav` computation runs in this kernel, the view says so, with its progress
    (``activity``); if it fails, the view says that it failed and why, and keeps the scores it had.
    """

    _view_file = "concept_scores"

    title = traitlets.Unicode("TCAV").tag(sync=True)
    description = traitlets.Unicode("").tag(sync=True)
    class_names = traitlets.List().tag(sync=True)
    records = traitlets.List(traitlets.Dict(), help="One dict per concept, layer, target, epoch (read-only)."
                             ).tag(sync=True)
    activity = traitlets.Dict(help="What TCAV is doing now (read-only): {'state': 'running' | 'failed' | '', "
                              "'text': words for the view}.").tag(sync=True)

    PROGRESS_INTERVAL = 0.25  # seconds between progress updates sent to the view (a state change goes at once)

    def _describe(self) -> str:
        return (f"TCAV scores (Kim et al. 2018) per target class and layer, with the random baseline: "
                f"{len(self.records)} results")

    @keywords_checked
    def __init__(self, results: Any = (), *, class_names: list[str] | None = None, title: str = "TCAV",
                 description: str = ""):
        class_names = check_names(class_names, "class_names", ConceptError)
        super().__init__(title=title, description=description, class_names=list(class_names or []),
                         activity={"state": "", "text": ""})
        self.add(results)
        from ..analysis.tcav import watch

        self._activity_at = 0.0
        self._unwatch = watch(self._on_tcav)  # held weakly: a view nobody holds is still collected

    def _on_tcav(self, event: dict[str, Any]) -> None:
        """A :func:`~hiddenwidgets.tcav.tcav` computation started, progressed, finished or failed."""
        state = event.get("state")
        about = f" for epoch {event['epoch']}" if event.get("epoch") is not None else ""
        what = (f"concept{'s' if len(event.get('concepts') or ()) != 1 else ''} "
                f"{', '.join(map(str, event.get('concepts') or ()))} in "
                f"{', '.join(map(str, event.get('layers') or ()))}")
        now = time.monotonic()
        if state == "running":
            if self.activity.get("state") == "running" and now - self._activity_at < self.PROGRESS_INTERVAL:
                return
            new = {"state": "running", "text": f"computing TCAV{about}: step {event.get('done', 0)} of "
                                               f"{event.get('total', '?')} ({what})…"}
        elif state == "failed":
            new = {"state": "failed", "text": f"the TCAV computation{about} failed: {event.get('error', '')} "
                                              "(the scores shown are from before it)"}
        else:
            new = {"state": "", "text": ""}
        self._activity_at = now
        with self._state_lock:
            self.activity = new

    def close(self) -> None:
        """Stop following TCAV computations, and close the view."""
        unwatch = getattr(self, "_unwatch", None)
        if unwatch is not None:
            unwatch()
        super().close()

    def add(self, results: Any) -> None:
        """Append a TCAV result (or a list of them, or records); rows for a (concept, layer, target, epoch) shown
        already are replaced."""
        batch: Iterable[Any] = results if isinstance(results, (list, tuple)) else [results]
        rows = []
        for item in batch:
            if hasattr(item, "records"):
                rows.extend(item.records())
            elif isinstance(item, dict):
                missing = [k for k in REQUIRED if k not in item]
                if missing:
                    raise ConceptError(f"a TCAV record needs the keys {', '.join(REQUIRED)}; this one lacks "
                                       f"{', '.join(missing)} ({show(item)}): pass the result of "
                                       "hiddenwidgets.tcav.tcav or its records()")
                rows.append(item)
            else:
                raise ConceptError(f"ConceptScores takes TCAV results (hiddenwidgets.tcav.tcav) or their records; "
                                   f"got {type(item).__name__}")
        clean = [{k: _plain(v) for k, v in r.items()} for r in rows]
        key = lambda r: (r["concept"], r["layer"], r["target"], r.get("epoch"))  # noqa: E731
        new = {key(r) for r in clean}
        with self._state_lock:
            self.records = [r for r in self.records if key(r) not in new] + clean

    @offline_chart
    def to_altair(self):
        """TCAV score per class, one panel per concept, coloured by layer, as an Altair chart."""
        import altair as alt

        return alt.Chart(alt.Data(values=self.records)).mark_bar().encode(
            x=alt.X("layer:N", title=None), y=alt.Y("mean(score):Q", scale=alt.Scale(domain=[0, 1]), title="TCAV"),
            color="layer:N", column=alt.Column("target:O", title="class"), row="concept:N",
            opacity=alt.condition("datum.significant", alt.value(1.0), alt.value(0.35)),
        ).properties(title=self.title, width=60, height=120)
