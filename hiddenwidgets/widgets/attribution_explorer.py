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

from ..charts import offline_chart
from ..methods import METHODS, AttributionError, attribute, conv_layers, probe
from ..methods.metrics import _spearman, deletion_insertion, infidelity, sensitivity
from ..pipeline.capture import _unknown_layer_message
from ..pipeline.checks import check_names, check_whole_labels, closest, keywords_checked, show
from ..pipeline.model_state import ModelSnapshot, evaluation_mode
from ..pipeline.transport import encode
from ._base import HiddenWidget, model_name, names

__all__ = ["AttributionExplorer"]

METRICS = {
    "deletion": "deletion AUC (RISE; lower is better)",
    "insertion": "insertion AUC (RISE; higher is better)",
    "infidelity": "infidelity (Yeh et al.; lower is better)",
    "sanity": "Spearman correlation with the map of a model whose top layer is randomised (Adebayo et al.; "
              "lower is better: the map depends on the model)",
    "sensitivity": "max sensitivity (Yeh et al.; lower is better; costs 5 more attributions per input)",
}
DEFAULT_METRICS = ("deletion", "insertion", "infidelity", "sanity")

DEFAULT_METHODS = ["saliency", "integrated_gradients", "input_x_gradient", "guided_backprop", "grad_cam",
                   "grad_cam_plus_plus", "layer_cam", "score_cam", "occlusion"]


def _one_per_output(model: Any, layers: list[str], keep: str | None = None) -> list[str]:
    """The layer menu without the only child of a listed ``nn.Sequential`` (``conv1.0`` under ``conv1``): the two
    give the same output, so the menu shows the container once. ``keep`` (the layer asked for) always stays."""
    modules = dict(model.named_modules()) if isinstance(model, torch.nn.Module) else {}
    listed = set(layers)
    drop = set()
    for name in layers:
        m = modules.get(name)
        if isinstance(m, torch.nn.Sequential) and len(m) == 1:
            child = f"{name}.{next(iter(m._modules))}"
            if child in listed and child != keep:
                drop.add(child)
    return [n for n in layers if n not in drop]


class AttributionExplorer(HiddenWidget):
    """Compare attribution methods on a gallery of inputs, with deletion/insertion AUC and run time per cell.

    Choose methods, the target (predicted, true or any class) and the layer for layer methods in the view or in
    Python (``explorer.selected_methods = [...]``). Results are computed on a background thread, one method at a
    time, with progress and a cancel button, and cached: switching back is instant. A method that fails shows
    its error in its cells; the others go on.

    The background thread computes on a private copy of the model (:class:`~hiddenwidgets.ModelSnapshot`), never
    on the model itself: a training loop running meanwhile keeps its mode, its hooks and its gradients. The
    copy's weights are those of the moment the explorer was made (taken between two training steps when a
    monitor steps the model); the view says when, and :meth:`refresh` (the view's "use current weights" button)
    copies the current weights and recomputes. It costs the model's parameter memory once.

    Parameters
    ----------
    model : an image classifier (N, C, H, W) -> (N, classes); never changed (see ``hw.attribute``).
    inputs : (N, C, H, W) images or (N, features) table rows, at most 16; rows are drawn as bars (feature values
        in the gallery, attributions in the cells; ``feature_names`` label them). Deletion and insertion are
        image metrics and are skipped for rows.
    labels : optional true classes; class_names : optional names, shown as text.
    methods : names offered in the view (default: all of ``hw.available_methods()``); selected : shown first.
    layer : the layer for CAMs and layer methods (default: the last conv-like layer).
    metrics : per cell, any of ``METRICS`` (default: deletion, insertion, infidelity, sanity; ``False``: none).
    """

    _view_file = "attribution_explorer"

    methods = traitlets.List(traitlets.Unicode(), help="Method names offered (read-only).").tag(sync=True)
    method_labels = traitlets.Dict(help="name -> label and whether it needs a layer (read-only).").tag(sync=True)
    selected_methods = traitlets.List(traitlets.Unicode(), help="Methods shown, in order.").tag(sync=True)
    target = traitlets.Unicode(
        "predicted", help="'predicted', 'true', 'top2', 'top3'... or a class index as text.").tag(sync=True)
    layer = traitlets.Unicode("", help="Layer for CAMs and layer methods.").tag(sync=True)
    layers = traitlets.List(traitlets.Unicode(), help="Conv-like layers to choose from (read-only).").tag(sync=True)
    opacity = traitlets.Float(0.6, help="Overlay opacity, 0..1. Default 0.6.").tag(sync=True)
    colormap = traitlets.Enum(
        ["auto", "viridis", "diverging", "heat"], "auto",
        help="Overlay colours; 'auto': diverging for signed maps, viridis otherwise.").tag(sync=True)
    title = traitlets.Unicode("Attributions", help="Heading of the view.").tag(sync=True)
    status = traitlets.Unicode("", help="What is being computed (read-only).").tag(sync=True)
    weights = traitlets.Unicode("", help="Which weights the maps were computed with (read-only).").tag(sync=True)
    progress = traitlets.Float(1.0, help="Progress of the current computation, 0..1 (read-only).").tag(sync=True)
    _gallery = traitlets.Dict(help="Images, labels and predictions, {header, data}.").tag(sync=True)
    _results = traitlets.Dict(help="Computed cells, {header, data}.").tag(sync=True)

    def _describe(self) -> str:
        return (f"attribution maps of {names(self.selected_methods)} for {len(self.inputs)} inputs of "
                f"{model_name(self.model)}, with deletion/insertion AUC per cell ({len(self.methods)} methods offered)")

    @keywords_checked
    def __init__(self, model: torch.nn.Module, inputs: torch.Tensor, labels: Any = None, *,
                 class_names: list[str] | None = None, methods: list[str] | None = None,
                 selected: list[str] | None = None, layer: str | None = None, metrics: Any = True,
                 feature_names: list[str] | None = None, title: str = "Attributions"):
        if not isinstance(inputs, torch.Tensor) or inputs.ndim not in (2, 4):
            raise AttributionError(f"inputs must be images (N, C, H, W) or table rows (N, features); got "
                                   f"{tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs)}")
        if len(inputs) == 0:
            raise AttributionError(f"inputs holds 0 examples (shape {tuple(inputs.shape)}); pass 1 to 16 inputs")
        if inputs.is_complex():
            raise AttributionError(f"inputs are complex ({inputs.dtype}); attributions and the gallery are real "
                                   "images or rows, and converting would drop the imaginary part: pass real inputs")
        class_names = check_names(class_names, "class_names", AttributionError)
        feature_names = check_names(feature_names, "feature_names", AttributionError)
        for arg, value in (("methods", methods), ("selected", selected)):
            check_names(value, arg, AttributionError)
            unknown = [m for m in value or [] if m not in METHODS]
            if unknown:
                raise AttributionError(f"{arg}: unknown method(s) {unknown}{closest(unknown[0], METHODS)}; see "
                                       "hw.available_methods()")
        if isinstance(metrics, str):
            raise AttributionError(f"metrics must be True, False or a list of metric names; got the string "
                                   f"{metrics!r}: pass [{metrics!r}]")
        if layer is not None:
            if not isinstance(layer, str):
                raise AttributionError(f"layer must be a module name (a string); got {type(layer).__name__} "
                                       f"{show(layer)}")
            modules = dict(model.named_modules()) if isinstance(model, torch.nn.Module) else {}
            if modules and layer not in modules:
                raise AttributionError(f"layer: {_unknown_layer_message(layer, modules)}")
        self.tabular = inputs.ndim == 2
        if feature_names is not None and (not self.tabular or len(feature_names) != inputs.shape[1]):
            raise AttributionError(f"feature_names needs one name per column of (N, features) inputs; got "
                                   f"{len(feature_names)} names for inputs of shape {tuple(inputs.shape)}")
        self.feature_names = feature_names
        if len(inputs) > 16:
            raise AttributionError(f"the explorer shows at most 16 inputs; got {len(inputs)} (pass inputs[:16])")
        offered = list(methods or METHODS)
        labels = None if labels is None else _labels(labels, len(inputs))
        self.model, self.inputs = model, inputs.detach()
        self._snapshot = ModelSnapshot(model).refresh()  # the worker's own copy: training is never disturbed
        self.labels = labels
        self.class_names = class_names
        chosen = DEFAULT_METRICS if metrics is True else () if metrics is False else tuple(metrics)
        bad = [m for m in chosen if m not in METRICS]
        if bad:
            raise AttributionError(f"unknown metric(s) {bad}; choose from {', '.join(METRICS)}")
        image_only = ("deletion", "insertion")
        self.metric_names = tuple(m for m in chosen if not (inputs.ndim == 2 and m in image_only))
        self._randomised: torch.nn.Module | None = None
        self._cache: dict[tuple, dict[str, Any]] = {}
        self._jobs: queue.Queue = queue.Queue()
        self._cancel = threading.Event()
        self._refreshed = threading.Event()
        self._state_lock = threading.RLock()
        layers = _one_per_output(model, conv_layers(model), keep=layer)
        work = self._snapshot.model
        with evaluation_mode(work):
            self.probs = torch.softmax(probe(work, self.inputs), dim=1)  # a clear error for inputs it cannot take
        classes = self.probs.shape[1]
        if labels is not None and len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < classes:
            bad = int(labels[(labels < 0) | (labels >= classes)][0])
            raise AttributionError(f"labels has class {bad}, but the model outputs {classes} classes (0.."
                                   f"{classes - 1}): pass the true class index of each input")
        super().__init__(
            methods=offered, layers=layers, layer=layer or (layers[-1] if layers else ""),
            method_labels={n: {"label": METHODS[n].label, "needs_layer": METHODS[n].needs_layer,
                               "paper": METHODS[n].paper} for n in offered},
            selected_methods=[m for m in (selected or DEFAULT_METHODS) if m in offered], title=title,
            weights=self._snapshot.describe())
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
        if self.target.startswith("top"):  # the k-th most probable class
            k = int(self.target[3:])
            return self.probs.topk(k, dim=1).indices[:, k - 1]
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
            if methods == "refresh":
                self._refresh_now()
                continue
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
        layer = (self.layer or None) if METHODS[method].needs_layer else None
        cell: dict[str, Any] = {"maps": None, "error": None, "ms": [], "metrics": {m: [] for m in self.metric_names}}
        try:
            targets = self._targets()
            maps = []
            for i in range(len(self.inputs)):  # one input at a time: cancel and progress between them
                if self._cancel.is_set():
                    raise RuntimeError("cancelled")
                x, t = self.inputs[i : i + 1], targets[i : i + 1]
                t0 = time.perf_counter()
                a = attribute(self._snapshot.model, x, method, t, layer=layer)
                cell["ms"].append(1000 * (time.perf_counter() - t0))
                m = a.sum(dim=1) if a.ndim == 4 else a  # input methods: channels summed into one map
                maps.append(m[0].float())
                for name, value in self._metrics(method, layer, x, t, a, m).items():
                    cell["metrics"][name].append(value)
            cell["maps"] = torch.stack(maps).numpy().astype(np.float32)
        except Exception as err:  # shown in this method's cells; the others go on
            cell["error"] = f"{type(err).__name__}: {err}" if isinstance(err, (AttributionError, RuntimeError)) \
                else "".join(traceback.format_exception_only(err)).strip()
        return cell

    def _metrics(self, method: str, layer: str | None, x: torch.Tensor, t: torch.Tensor, a: torch.Tensor,
                 m: torch.Tensor) -> dict[str, float]:
        out: dict[str, float] = {}
        names = self.metric_names
        model = self._snapshot.model
        if "deletion" in names or "insertion" in names:
            di = deletion_insertion(model, x, m, t, steps=16)
            out.update({k: float(di[k][0]) for k in ("deletion", "insertion") if k in names})
        if "infidelity" in names:
            full = a if a.shape == x.shape else m.unsqueeze(1).expand_as(x)  # a map counts for every channel
            out["infidelity"] = float(infidelity(model, x, full, t)[0])
        if "sanity" in names:
            again = attribute(self._randomised_model(), x, method, t, layer=layer)
            again = again.sum(dim=1) if again.ndim == 4 else again
            out["sanity"] = float(_spearman(m.abs(), again.abs())[0])
        if "sensitivity" in names:
            out["sensitivity"] = float(sensitivity(model, x, method, t, layer=layer)[0])
        return out

    def _randomised_model(self) -> torch.nn.Module:
        """A copy of the model with its top parameterised layer re-initialised (the user's model is untouched)."""
        if self._randomised is None:
            import copy

            self._randomised = copy.deepcopy(self._snapshot.model)
            top = [m for m in self._randomised.modules() if any(True for _ in m.parameters(recurse=False))][-1]
            torch.manual_seed(0)
            if hasattr(top, "reset_parameters"):
                top.reset_parameters()
        return self._randomised

    # -- state for the view --------------------------------------------------------------------------------------
    def _gallery_state(self) -> dict[str, Any]:
        x = self.inputs.float()
        if self.tabular:
            shown = x.numpy().astype(np.float32)  # rows: the values themselves, drawn as bars
        else:
            lo = x.amin(dim=(1, 2, 3), keepdim=True)
            hi = x.amax(dim=(1, 2, 3), keepdim=True)
            shown = ((x - lo) / (hi - lo).clamp(min=1e-12)).numpy().astype(np.float32)
        arrays = {"images": shown, "probs": self.probs.numpy().astype(np.float32)}
        if self.labels is not None:
            arrays["labels"] = self.labels.numpy().astype(np.int32)
        index, data = encode(arrays)
        return {"header": {"index": index, "class_names": self.class_names, "n": len(x), "tabular": self.tabular,
                           "feature_names": self.feature_names}, "data": data}

    def _publish(self) -> None:
        cells, arrays = [], {}
        for method in self.selected_methods:
            cell = self._cache.get(self._key(method))
            head = {"method": method, "label": METHODS[method].label, "ready": cell is not None}
            if cell is not None:
                head.update(error=cell["error"], ms=cell["ms"], metrics=cell["metrics"])
                if cell["maps"] is not None:
                    arrays[f"maps:{method}"] = cell["maps"]
                    head["array"] = f"maps:{method}"
            cells.append(head)
        index, data = encode(arrays)
        with self._state_lock:
            self._results = {"header": {"index": index, "cells": cells, "target": self.target, "layer": self.layer,
                                        "metric_help": {k: METRICS[k] for k in self.metric_names}}, "data": data}

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
        if value.startswith("top") and value[3:].isdigit() and 1 <= int(value[3:]) <= (classes or 1):
            return value
        raise traitlets.TraitError(f"target must be 'predicted', 'true', 'topK' (K-th most probable class) or a "
                                   f"class 0..{(classes or 1) - 1}; got {value!r}")

    def _on_custom(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "cancel":
            self._cancel.set()
        elif isinstance(content, dict) and content.get("type") == "refresh":
            self.refresh(wait=False)

    def refresh(self, wait: bool = True) -> None:
        """Copy the model's current weights (between two training steps, if a monitor steps it) and recompute
        the selected methods with them; earlier results are dropped."""
        self._refreshed.clear()
        self._cancel.set()
        self._jobs.put("refresh")
        if wait:
            self._refreshed.wait(300)
            self.wait()

    def _refresh_now(self) -> None:
        self._cancel.clear()
        self._snapshot.refresh()
        self._randomised = None
        work = self._snapshot.model
        with evaluation_mode(work):
            probs = torch.softmax(probe(work, self.inputs), dim=1)
        with self._state_lock:
            self.probs = probs
            self._cache.clear()
            self._gallery = self._gallery_state()
        self._set(weights=self._snapshot.describe())
        self._jobs.put([m for m in self.selected_methods if self._key(m) not in self._cache])
        self._refreshed.set()

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
        """One row per (method, input): each metric, milliseconds, error."""
        rows = []
        for method in self.selected_methods:
            cell = self._cache.get(self._key(method))
            if cell is None:
                continue
            for i in range(len(self.inputs)):
                row = {"method": method, "input": i, "ms": cell["ms"][i] if i < len(cell["ms"]) else None,
                       "error": cell["error"]}
                row.update({k: (v[i] if i < len(v) else None) for k, v in cell["metrics"].items()})
                rows.append(row)
        return rows

    @offline_chart
    def to_altair(self):
        """The metrics table as an Altair chart: the mean of each metric per method."""
        import altair as alt

        rows = [{"method": r["method"], "metric": k, "value": r[k]} for r in self.metrics() for k in self.metric_names
                if r.get(k) is not None]
        return alt.Chart(alt.Data(values=rows)).mark_bar().encode(
            x=alt.X("mean(value):Q", title="mean over inputs"), y=alt.Y("method:N"), color="metric:N",
            row=alt.Row("metric:N", title=None)).properties(title="Faithfulness per method", width=320)

    def close(self) -> None:
        """Stop the background worker. Idempotent; safe on a half-constructed explorer (ipywidgets' __del__)."""
        if hasattr(self, "_cancel"):
            self._cancel.set()
            self._jobs.put(None)


def _labels(labels: Any, n: int) -> torch.Tensor:
    """One true class index per input (whole-number floats accepted exactly; see hiddenwidgets.pipeline.checks)."""
    arr = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    arr = arr.reshape(-1) if arr.ndim == 2 and 1 in arr.shape else arr
    if arr.ndim != 1 or len(arr) != n:
        raise AttributionError(f"labels has {arr.size if arr.ndim else 1} entries (shape {arr.shape}) for {n} inputs; "
                               "pass one true class index per input")
    return torch.as_tensor(check_whole_labels(arr, "labels", AttributionError, strings=False).astype(np.int64))
