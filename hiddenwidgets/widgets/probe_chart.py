"""ProbeChart: held-out accuracy of linear probes per layer, with the control task and chance, over training."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import traitlets

from ..analysis.matrices import RepresentationError
from ..analysis.probes import ProbeResult
from ..charts import offline_chart
from ..pipeline.checks import keywords_checked, show
from ._base import HiddenWidget, names

__all__ = ["ProbeChart"]


class ProbeChart(HiddenWidget):
    """Plot :class:`~hiddenwidgets.probes.ProbeResult` s: accuracy, control accuracy and chance per layer at one
    epoch (a slider picks it), and accuracy per layer and epoch as a heatmap when several epochs were probed.

    ``chart.add(results)`` appends results (e.g. after each epoch of training); the view follows. ``results``:
    a list of :class:`~hiddenwidgets.probes.ProbeResult` (what ``hw.probe`` returns) or a single one.
    """

    _view_file = "probe_chart"

    title = traitlets.Unicode("Linear probes").tag(sync=True)
    description = traitlets.Unicode("").tag(sync=True)
    records = traitlets.List(traitlets.Dict(), help="One dict per (layer, epoch) result (read-only).").tag(sync=True)

    def _describe(self) -> str:
        return (f"linear-probe accuracy per layer against a control task (Hewitt & Liang 2019): {len(self.records)} "
                f"results for layers {names(dict.fromkeys(r.get('layer') for r in self.records))}")

    @keywords_checked
    def __init__(self, results: Iterable[ProbeResult] = (), *, title: str = "Linear probes", description: str = ""):
        super().__init__(title=title, description=description)
        self.add(results)

    def add(self, results: Iterable[ProbeResult]) -> None:
        """Append results; a result for a (layer, epoch) already shown replaces it."""
        if isinstance(results, ProbeResult):
            results = [results]
        if isinstance(results, (str, bytes, dict)) or not isinstance(results, Iterable):
            raise RepresentationError(f"results must be a list of ProbeResult (from hw.probe or "
                                      f"hiddenwidgets.probes.linear_probe); got {type(results).__name__} "
                                      f"{show(results)}")
        new = []
        for r in results:
            if not isinstance(r, ProbeResult):
                raise RepresentationError(f"ProbeChart takes ProbeResult objects (from hw.probe or "
                                          f"hiddenwidgets.probes.linear_probe); got {type(r).__name__}")
            new.append(r.to_dict())
        keys = {(r["layer"], r["epoch"]) for r in new}
        with self._state_lock:
            self.records = [r for r in self.records if (r["layer"], r["epoch"]) not in keys] + new

    def results(self) -> list[dict[str, Any]]:
        """The results shown, as dicts (one per layer and epoch)."""
        return [dict(r) for r in self.records]

    @offline_chart
    def to_altair(self):
        """Accuracy, control accuracy and chance per layer (one line per epoch) as an Altair chart."""
        import altair as alt

        rows = [{"layer": r["layer"], "epoch": r["epoch"], "measure": m, "value": r[k]} for r in self.records
                for m, k in (("probe", "accuracy"), ("control", "control_accuracy"), ("chance", "chance"))
                if r[k] is not None]
        order = list(dict.fromkeys(r["layer"] for r in self.records))
        return alt.Chart(alt.Data(values=rows)).mark_line(point=True).encode(
            x=alt.X("layer:N", sort=order),
            y=alt.Y("value:Q", title="held-out accuracy", scale=alt.Scale(domain=[0, 1])),
            color="measure:N", detail="epoch:O").properties(title=self.title, width=360)
