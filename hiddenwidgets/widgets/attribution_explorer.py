"""AttributionExplorer: methods x inputs, side by side, with faithfulness metrics under each cell."""

from __future__ import annotations

import queue
import threading
import time
import traceback
from typing import Any

import numpy as np
import torch
import traitlets

from ..methods import METHODS, AttributionError, attribute, conv_layers
from ..methods.metrics import deletion_insertion
from ..transport import encode
from ._base import HiddenWidget

__all__ = ["AttributionExplorer"]

DEFAULT_METHODS = ["saliency", "integrated_gradients", "input_x_gradient", "guided_backprop", "grad_cam",
                   "grad_cam_plus_plus", "layer_cam", "score_cam", "occlusion"]


class AttributionExplorer(HiddenWidget):
    """Compare attribution methods on a gallery of inputs, with deletion/insertion AUC and run time per cell.

    Choose methods, the target (predicted, true or any class) and the layer for layer methods in the view or in
    Python (``explorer.selected_methods = [...]``). Results are computed on a background thread, one method at a
    time, with progress and a cancel button, and cached: switching back is instant. A method that fails shows
    its error in its cells; the others go on.

    Parameters
    ----------
    model : an image classifier (N, C, H, W) -> (N, classes); never changed (see ``hw.attribute``).
    inputs : (N, C, H, W) tensor, at most 16 images.
    labels : optional true classes; class_names : optional names, shown as text.
    methods : names offered in the view (default: all of ``hw.available_methods()``); selected : shown first.
    layer : the layer for CAMs and layer methods (default: the last conv-like layer).
    metrics : compute deletion/insertion AUC per cell (default True).
    """

    _view_file = "attribution_explorer"

    methods = traitlets.List(traitlets.Unicode(), help="Method names offered (read-only).").tag(sync=True)
    method_labels = traitlets.Dict(help="name -> label and whether it needs a layer (read-only).").tag(sync=True)
    selected_methods = traitlets.List(traitlets.Unicode(), help="Methods shown, in order.").tag(sync=True)
    target = traitlets.Unicode("predicted", help="'predicted', 'true' or a class index as text.").tag(sync=True)
    layer = traitlets.Unicode("", help="Layer for CAMs and layer methods.").tag(sync=True)
    layers = traitlets.List(traitlets.Unicode(), help="Conv-like layers to choose from (read-only).").tag(sync=True)
    opacity = traitlets.Float(0.6, help="Overlay opacity, 0..1. Default 0.6.").tag(sync=True)
    title = traitlets.Unicode("Attributions", help="Heading of the view.").tag(sync=True)
    status = traitlets.Unicode("", help="What is being computed (read-only).").tag(sync=True)
    progress = traitlets.Float(1.0, help="Progress of the current computation, 0..1 (read-only).").tag(sync=True)
    _gallery = traitlets.Dict(help="Images, labels and predictions, {header, data}.").tag(sync=True)
    _results = traitlets.Dict(help="Computed cells, {header, data}.").tag(sync=True)

    def __init__(self, model: torch.nn.Module, inputs: torch.Tensor, labels: Any = None, *,
                 class_names: list[str] | None = None, methods: list[str] | None = None,
                 selected: list[str] | None = None, layer: str | None = None, metrics: bool = True,
                 title: str = "Attributions"):
        if not isinstance(inputs, torch.Tensor) or inputs.ndim != 4:
            raise AttributionError(f"inputs must be images (N, C, H, W); got "
                                   f"{tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs)}")
        if len(inputs) > 16:
            raise AttributionError(f"the explorer shows at most 16 inputs; got {len(inputs)} (pass inputs[:16])")
        offered = list(methods or METHODS)
        unknown = [m for m in offered + list(selected or []) if m not in METHODS]
        if unknown:
            raise AttributionError(f"unknown method(s) {unknown}; see hw.available_methods()")
        self.model, self.inputs = model, inputs.detach()
        self.labels = None if labels is None else torch.as_tensor(labels).long().reshape(-1)
        self.class_names = class_names
        self.compute_metrics = metrics
        self._cache: dict[tuple, dict[str, Any]] = {}
        self._jobs: queue.Queue = queue.Queue()
        self._cancel = threading.Event()
        self._state_lock = threading.RLock()
        layers = conv_layers(model)
        with torch.no_grad():
            was = model.training
            model.eval()
            try:
                self.probs = torch.softmax(model(self.inputs), dim=1)
            finally:
                model.train(was)
        super().__init__(
            methods=offered, layers=layers, layer=layer or (layers[-1] if layers else ""),
            method_labels={n: {"label": METHODS[n].label, "needs_layer": METHODS[n].needs_layer,
                               "paper": METHODS[n].paper} for n in offered},
            selected_methods=[m for m in (selected or DEFAULT_METHODS) if m in offered], title=title)
        self._gallery = self._gallery_state()
        self._worker = threading.Thread(target=self._work, name="hiddenwidgets-attribution", daemon=True)
        self._worker.start()
        self.on_msg(self._on_custom)
        self._request()

    # -- computing ---------------------------------------------------------------------------------------------
    def _targets(self) -> torch.Tensor:
        if self.target == "predicted":
            return self.probs.argmax(1)
        if self.target == "true":
            if self.labels is None:
                raise AttributionError("no true labels were given: pass labels=... or choose 'predicted'")
            return self.labels
        return torch.full((len(self.inputs),), int(self.target), dtype=torch.long)

    def _key(self, method: str) -> tuple:
        return (method, self.target, self.layer if METHODS[method].needs_layer else "")

    def _request(self) -> None:
        self._cancel.clear()
        self._jobs.put([m for m in self.selected_methods if self._key(m) not in self._cache])
        self._publish()

    def _work(self) -> None:
        while True:
            methods = self._jobs.get()
            if methods is None:
                return
            for i, method in enumerate(methods):
                if self._cancel.is_set():
                    break
                key = self._key(method)
                if key in self._cache:
                    continue
                self._set(status=f"computing {METHODS[method].label} ({i + 1} of {len(methods)})",
                          progress=i / max(len(methods), 1))
                self._cache[key] = self._compute(method)
                self._publish()
            self._set(status="cancelled" if self._cancel.is_set() else "", progress=1.0)
            self._publish()

    def _set(self, **traits: Any) -> None:
        with self._state_lock, self.hold_sync():
            for name, value in traits.items():
                setattr(self, name, value)

    def _compute(self, method: str) -> dict[str, Any]:
        layer = self.layer if METHODS[method].needs_layer else None
        cell: dict[str, Any] = {"maps": None, "error": None, "ms": [], "deletion": [], "insertion": []}
        try:
            targets = self._targets()
            maps = []
            for i in range(len(self.inputs)):  # one input at a time: cancel and progress between them
                if self._cancel.is_set():
                    raise RuntimeError("cancelled")
                x = self.inputs[i : i + 1]
                t0 = time.perf_counter()
                a = attribute(self.model, x, method, targets[i : i + 1], layer=layer)
                cell["ms"].append(1000 * (time.perf_counter() - t0))
                m = a.sum(dim=1) if a.ndim == 4 else a  # input methods: channels summed into one map
                maps.append(m[0].float())
                if self.compute_metrics:
                    di = deletion_insertion(self.model, x, m, targets[i : i + 1], steps=16)
                    cell["deletion"].append(float(di["deletion"][0]))
                    cell["insertion"].append(float(di["insertion"][0]))
            cell["maps"] = torch.stack(maps).numpy().astype(np.float32)
        except Exception as err:  # shown in this method's cells; the others go on
            cell["error"] = f"{type(err).__name__}: {err}" if isinstance(err, (AttributionError, RuntimeError)) \
                else "".join(traceback.format_exception_only(err)).strip()
        return cell

    # -- state for the view --------------------------------------------------------------------------------------
    def _gallery_state(self) -> dict[str, Any]:
        x = self.inputs.float()
        lo = x.amin(dim=(1, 2, 3), keepdim=True)
        hi = x.amax(dim=(1, 2, 3), keepdim=True)
        shown = ((x - lo) / (hi - lo).clamp(min=1e-12)).numpy().astype(np.float32)
        arrays = {"images": shown, "probs": self.probs.numpy().astype(np.float32)}
        if self.labels is not None:
            arrays["labels"] = self.labels.numpy().astype(np.int32)
        index, data = encode(arrays)
        return {"header": {"index": index, "class_names": self.class_names, "n": len(x)}, "data": data}

    def _publish(self) -> None:
        cells, arrays = [], {}
        for method in self.selected_methods:
            cell = self._cache.get(self._key(method))
            head = {"method": method, "label": METHODS[method].label, "ready": cell is not None}
            if cell is not None:
                head.update(error=cell["error"], ms=cell["ms"], deletion=cell["deletion"], insertion=cell["insertion"])
                if cell["maps"] is not None:
                    arrays[f"maps:{method}"] = cell["maps"]
                    head["array"] = f"maps:{method}"
            cells.append(head)
        index, data = encode(arrays)
        with self._state_lock:
            self._results = {"header": {"index": index, "cells": cells, "target": self.target, "layer": self.layer},
                             "data": data}

    @traitlets.observe("selected_methods", "target", "layer")
    def _settings_changed(self, change: dict) -> None:
        if hasattr(self, "_worker"):
            self._request()

    @traitlets.validate("target")
    def _valid_target(self, proposal: dict) -> str:
        value = str(proposal["value"])
        classes = self.probs.shape[1] if hasattr(self, "probs") else None
        if value in ("predicted", "true") or (value.isdigit() and (classes is None or int(value) < classes)):
            return value
        raise traitlets.TraitError(f"target must be 'predicted', 'true' or a class 0..{(classes or 1) - 1}; "
                                   f"got {value!r}")

    def _on_custom(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "cancel":
            self._cancel.set()

    def cancel(self) -> None:
        """Stop the computation in progress (finished methods stay cached)."""
        self._cancel.set()

    def wait(self, timeout: float = 300.0) -> None:
        """Block until every selected method is computed (or cancelled)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._jobs.empty() and all(self._key(m) in self._cache for m in self.selected_methods):
                return
            if self._cancel.is_set() and self._jobs.empty() and not self.status.startswith("computing"):
                return
            time.sleep(0.05)
        raise TimeoutError(f"attributions not finished after {timeout} s: {self.status}")

    def metrics(self) -> list[dict[str, Any]]:
        """One row per (method, input): deletion and insertion AUC, milliseconds, error."""
        rows = []
        for method in self.selected_methods:
            cell = self._cache.get(self._key(method))
            if cell is None:
                continue
            for i in range(len(self.inputs)):
                rows.append({"method": method, "input": i,
                             "deletion": cell["deletion"][i] if i < len(cell["deletion"]) else None,
                             "insertion": cell["insertion"][i] if i < len(cell["insertion"]) else None,
                             "ms": cell["ms"][i] if i < len(cell["ms"]) else None, "error": cell["error"]})
        return rows

    def to_altair(self):
        """The metrics table as an Altair chart: mean deletion and insertion AUC per method."""
        import altair as alt

        rows = [dict(r, metric=k, value=r[k]) for r in self.metrics() for k in ("deletion", "insertion")
                if r[k] is not None]
        return alt.Chart(alt.Data(values=rows)).mark_bar().encode(
            x=alt.X("mean(value):Q", title="AUC"), y=alt.Y("method:N", sort="-x"), color="metric:N",
            row="metric:N").properties(title="Deletion (lower is better) and insertion (higher) AUC", width=320)

    def close(self) -> None:
        """Stop the background worker."""
        self._cancel.set()
        self._jobs.put(None)
