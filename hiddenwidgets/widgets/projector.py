"""Projector: a layer's representations in 2-D, coloured by label, prediction or any array, with hover, lasso and
box selection mirrored to Python, k-nearest-neighbour prototypes, and layer / epoch / method switches.

Transport: coordinates travel as one float32 buffer per (layer, epoch, method), computed once and cached on both
sides; colour arrays once, at construction. Examples (image thumbnails, texts, table rows) are fetched by the
view in pages of 256 when the pointer first needs them, so 50,000 points cost 400 KB of coordinates, not 40 MB
of images. A static page (``save_html``) carries every layer's projection, the thumbnails (up to
``static_budget`` bytes) and each point's neighbours in the shown layer, so it works without a kernel.
"""

from __future__ import annotations

import math
import queue
import threading
import traceback
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import traitlets

from .._optional import require
from ..analysis.matrices import RepresentationError, as_labels
from ..analysis.representations import (
    METRICS,
    Representations,
    align,
    available_projections,
    layer_features,
    nearest,
    project,
)
from ..pipeline.capture import model_device, select_tensor
from ..pipeline.checks import check_choice, check_int, check_names, closest, keywords_checked, show, what
from ..pipeline.model_state import model_for_work
from ..pipeline.transport import encode
from ._base import HiddenWidget, names

__all__ = ["Projector"]

PAGE = 256
THUMB = 48  # largest thumbnail side in pixels
MAX_CATEGORIES = 24


def _thumbnails(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) images -> (N, H', W', C') uint8 thumbnails, C' 1 or 3, scaled to [0, 255] over the set."""
    x = images.detach().float().cpu()
    if x.ndim == 3:
        x = x[:, None]
    if x.shape[1] not in (1, 3, 4) and x.shape[-1] in (1, 3, 4):
        raise RepresentationError(f"images must be (N, C, H, W); got {tuple(x.shape)}, which looks channel-last: "
                                  "pass images.permute(0, 3, 1, 2)")
    if x.shape[1] not in (1, 3):
        x = x[:, :1] if x.shape[1] < 3 else x[:, :3]
    h, w = x.shape[2:]
    if max(h, w) > THUMB:
        scale = THUMB / max(h, w)
        x = torch.nn.functional.interpolate(x, size=(max(1, round(h * scale)), max(1, round(w * scale))),
                                            mode="area")
    lo, hi = float(x.min()), float(x.max())
    x = (x - lo) / (hi - lo if hi > lo else 1.0)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


class Examples:
    """What hovering a point shows: image thumbnails, texts or table rows, served in pages."""

    def __init__(self, examples: Any, n: int, feature_names: list[str] | None = None):
        feature_names = check_names(feature_names, "feature_names", RepresentationError)
        self.kind, self.meta = "none", {}
        self.images: np.ndarray | None = None
        self.texts: list[str] | None = None
        self.rows: np.ndarray | None = None
        if examples is None:
            return
        if isinstance(examples, (list, tuple)) and all(isinstance(t, str) for t in examples):
            self.kind, self.texts = "text", list(examples)
            count = len(self.texts)
        else:
            t = examples if isinstance(examples, torch.Tensor) else torch.as_tensor(np.asarray(examples))
            if t.ndim in (3, 4):
                self.kind, self.images = "image", _thumbnails(t)
                self.meta = {"shape": list(self.images.shape[1:])}
            elif t.ndim == 2:
                self.kind, self.rows = "row", t.detach().float().cpu().numpy()
                cols = feature_names or [f"x{i}" for i in range(t.shape[1])]
                if len(cols) != t.shape[1]:
                    raise RepresentationError(f"feature_names has {len(cols)} names for {t.shape[1]} columns")
                self.meta = {"columns": list(cols)}
            else:
                raise RepresentationError(f"examples must be images (N, C, H, W), table rows (N, features) or a list "
                                          f"of strings; got shape {tuple(t.shape)}")
            count = len(t)
        if count != n:
            raise RepresentationError(f"examples has {count} entries but there are {n} points; pass one per example")

    def page(self, number: int) -> tuple[dict[str, Any], bytes]:
        lo, hi = number * PAGE, (number + 1) * PAGE
        if self.kind == "text":
            return {"texts": self.texts[lo:hi]}, b""
        arrays = {"images": self.images[lo:hi]} if self.kind == "image" else {"rows": self.rows[lo:hi]}
        index, data = encode(arrays) if self.kind in ("image", "row") else ({}, b"")
        return {"index": index}, data

    def pages(self, n: int) -> int:
        return 0 if self.kind == "none" else math.ceil(n / PAGE)


def _color_field(values: Any, n: int, name: str, class_names: list[str] | None) -> tuple[dict, np.ndarray]:
    """A colour field: categories (ints, strings, bools) or, for ``colors`` fields only, a colour scale (floats
    that are not all whole). ``labels`` and ``predictions`` are classes: continuous values are refused there."""
    arg = {"label": "labels", "prediction": "predictions"}.get(name)
    arr = as_labels(values, n, arg or f"colors[{name!r}]")
    if arg is not None and arr.dtype.kind == "f":  # NaN marks a missing label (drawn grey); others must be whole
        finite = arr[np.isfinite(arr)]
        if not np.all(finite == np.round(finite)):
            bad = finite[finite != np.round(finite)][0]
            raise RepresentationError(f"{arg} are classes, but {bad.item()!r} is not a whole number: pass integer or "
                                      f"string labels (NaN for a missing one), or colour by a continuous value with "
                                      f"colors={{'{name}': values}}")
    if arr.dtype.kind == "f" and not np.all(np.mod(arr[np.isfinite(arr)], 1) == 0):
        return {"kind": "value", "names": None}, arr.astype(np.float32)
    if arr.dtype.kind in "iub" or arr.dtype.kind == "f":
        missing = ~np.isfinite(arr.astype(np.float64))
        ints = np.where(missing, 0, arr).astype(np.int64)
        uniq = np.unique(ints[~missing])
        if len(uniq) > MAX_CATEGORIES and class_names is None:
            return {"kind": "value", "names": None}, arr.astype(np.float32)
        names = [str(class_names[u]) if class_names is not None and 0 <= u < len(class_names) else str(u)
                 for u in uniq]
        codes = np.where(missing, -1, np.searchsorted(uniq, ints))  # -1: missing, drawn grey
        return {"kind": "category", "names": names}, codes.astype(np.int32)
    uniq, codes = np.unique(arr.astype(str), return_inverse=True)
    return {"kind": "category", "names": [str(u) for u in uniq]}, codes.astype(np.int32)


class Projector(HiddenWidget):
    """A layer's representations in 2-D (PCA always; UMAP / t-SNE when installed).

    Parameters
    ----------
    representations : a :class:`~hiddenwidgets.Representations` (or the ``representations`` of a
        :class:`~hiddenwidgets.RepresentationRecorder`, to follow training live), or ``{layer: (N, features)}``.
        :meth:`from_model` builds one from a model and inputs.
    labels : optional true label per example (ints or strings); colours "label".
    predictions : optional predicted label per example; colours "prediction".
    colors : more colour fields, ``{name: array}``: integers/strings are categories, floats a colour scale.
    class_names : names for integer labels and predictions.
    examples : what hover shows: images (N, C, H, W), table rows (N, features) with ``feature_names``, or texts.
    method : "pca", "umap" or "tsne"; k : neighbours shown on click; metric : "euclidean" or "cosine".

    ``selection`` mirrors the points selected in the view (lasso, box, legend click) as a sorted int64 array; it
    updates while a cell runs. :meth:`select` sets it from Python; :meth:`selected_features` returns the
    selected rows of a layer.
    """

    _view_file = "projector"

    title = traitlets.Unicode("Projector").tag(sync=True)
    layers = traitlets.List(traitlets.Unicode(), help="Layers (read-only).").tag(sync=True)
    layer = traitlets.Unicode("", help="Layer shown.").tag(sync=True)
    epochs = traitlets.List(traitlets.Int(), help="Recorded epochs (read-only).").tag(sync=True)
    epoch = traitlets.Int(-1, help="Epoch shown; -1 follows the latest.").tag(sync=True)
    methods = traitlets.List(traitlets.Unicode(), help="Projection methods available (read-only).").tag(sync=True)
    method = traitlets.Unicode("pca", help="Projection method.").tag(sync=True)
    color_fields = traitlets.Dict(help="name -> {kind, names} (read-only).").tag(sync=True)
    color_by = traitlets.Unicode("", help="Colour field shown.").tag(sync=True)
    k = traitlets.Int(8, help="Neighbours shown when a point is clicked.").tag(sync=True)
    status = traitlets.Unicode("", help="What is being computed, or the last error (read-only).").tag(sync=True)
    example_kind = traitlets.Unicode("none").tag(sync=True)
    example_meta = traitlets.Dict().tag(sync=True)
    selection = traitlets.Any(read_only=True, help="Indices selected in the view, sorted (int64 array).")
    _points = traitlets.Dict(help="Coordinates shown, {header, data}.").tag(sync=True)
    _colors = traitlets.Dict(help="Colour arrays, {header, data}.").tag(sync=True)
    _selection = traitlets.Dict(help="The selection, {header, data} (int32).").tag(sync=True)

    def _describe(self) -> str:
        return (f"2-D projections ({self.method}) of the representations of {self.n} examples in layer {self.layer!r} "
                f"(layers: {names(self.layers)})")

    @keywords_checked
    def __init__(self, representations: Representations | Mapping[str, Any], labels: Any = None, *,
                 predictions: Any = None, colors: Mapping[str, Any] | None = None,
                 class_names: list[str] | None = None, examples: Any = None, feature_names: list[str] | None = None,
                 layer: str | None = None, method: str = "pca", k: int = 8, metric: str = "euclidean",
                 static_budget: int = 8 << 20, title: str = "Projector"):
        if not isinstance(representations, (Representations, Mapping)):
            raise RepresentationError(f"representations must be a Representations or a dict {{layer: (N, "
                                      f"features)}}; got {what(representations)}: "
                                      "pass {'layer name': features}")
        check_choice(metric, "metric", METRICS, RepresentationError)
        methods = available_projections()
        check_choice(method, "method", methods, RepresentationError,
                     hint="UMAP needs umap-learn, t-SNE scikit-learn" if method in ("umap", "tsne") else None)
        k = check_int(k, "k (neighbours shown on click)", minimum=1, error=RepresentationError)
        static_budget = check_int(static_budget, "static_budget", minimum=0, error=RepresentationError,
                                  hint="try 8 << 20 (bytes of thumbnails a static page may carry)")
        class_names = check_names(class_names, "class_names", RepresentationError)
        if colors is not None and not isinstance(colors, Mapping):
            raise RepresentationError(f"colors must be a dict {{name: one value per example}}; got "
                                      f"{what(colors)}")
        bad = [key for key in (colors or {}) if not isinstance(key, str) or key in ("label", "prediction")]
        if bad:
            raise RepresentationError(f"colors has the field name {bad[0]!r}; names must be strings other than "
                                      "'label' and 'prediction' (pass those as labels= and predictions=)")
        reps = representations if isinstance(representations, Representations) else \
            Representations.from_features(representations)
        if not reps.layers:
            raise RepresentationError("the representations are empty: record at least one epoch first, or pass "
                                      "{layer: (N, features)}")
        n = len(reps)
        self.reps, self.n, self.metric, self.static_budget = reps, n, metric, static_budget
        fields, arrays = {}, {}
        for name, values in (("label", labels), ("prediction", predictions), *(colors or {}).items()):
            if values is not None:
                fields[name], arrays[name] = _color_field(values, n, name, class_names)
        self._color_values = {name: (fields[name], arrays[name]) for name in fields}
        self.examples = Examples(examples, n, feature_names)
        self._state_lock = threading.RLock()
        self._cache: dict[tuple, np.ndarray] = {}
        self._version = 0
        self._points_stale = False
        self._jobs: queue.Queue = queue.Queue()
        self._selected = np.zeros(0, dtype=np.int64)
        if layer is not None and layer not in reps.layers:
            raise RepresentationError(f"layer: no layer {show(layer)}{closest(layer, reps.layers)}; layers: "
                                      f"{reps.layers}")
        index, data = encode(arrays)
        super().__init__(title=title, layers=reps.layers, layer=layer or reps.layers[-1], epochs=reps.epochs,
                         methods=methods, method=method, color_fields=fields, color_by=next(iter(fields), ""), k=k,
                         example_kind=self.examples.kind, example_meta=self.examples.meta,
                         _colors={"header": {"index": index}, "data": data})
        self.set_trait("selection", self._selected)
        self._worker = threading.Thread(target=self._work, name="hiddenwidgets-projector", daemon=True)
        self._worker.start()
        self._unsubscribe = reps.subscribe(self._recorded)
        self.on_msg(self._on_custom)
        self._request()

    @classmethod
    def from_model(cls, model: torch.nn.Module, inputs: Any, layers: Any, labels: Any = None, *,
                   pool: str = "mean", examples: Any = "inputs", **kw: Any) -> Projector:
        """Project ``layers`` of ``model`` on ``inputs``; colours by its predictions too when it is a classifier.
        ``examples="inputs"`` shows the inputs on hover when they are images or rows."""
        model = model_for_work(model)  # a copy of the weights while another thread trains the model
        feats = layer_features(model, inputs, layers, pool=pool)
        if "predictions" not in kw and isinstance(inputs, torch.Tensor):
            from ..pipeline.model_state import evaluation_mode

            with evaluation_mode(model), torch.no_grad():
                device = model_device(model)
                out = torch.cat([select_tensor(model(inputs[i:i + 256].to(device)))[0].cpu()
                                 for i in range(0, len(inputs), 256)])
            if out.ndim == 2 and out.shape[1] > 1:
                kw["predictions"] = out.argmax(1)
        if isinstance(examples, str) and examples == "inputs":
            examples = inputs if isinstance(inputs, torch.Tensor) and inputs.ndim in (2, 4) else None
        return cls(Representations.from_features(feats), labels, examples=examples, **kw)

    # -- projections ---------------------------------------------------------------------------------------------
    def _epoch_for(self, epoch: int) -> int | None:
        epochs = self.reps.epochs
        if not epochs:
            return None
        return epochs[-1] if epoch < 0 or epoch not in epochs else epoch

    def coordinates(self, layer: str | None = None, epoch: int | None = None, method: str | None = None
                    ) -> np.ndarray:
        """(N, 2) float32 coordinates of ``layer`` at ``epoch`` by ``method`` (defaults: what the view shows).
        Computed once and cached. PCA pictures of consecutive epochs are rotated/reflected onto each other
        (Procrustes), so a layer does not spin or flip as training goes on."""
        layer = layer or self.layer
        method = method or self.method
        ep = self._epoch_for(self.epoch if epoch is None else epoch)
        key = (layer, ep, method)
        if key in self._cache:
            return self._cache[key]
        chain = [ep]
        if method == "pca" and ep is not None:  # PCA of each epoch is aligned to the previous one: compute in order
            chain = [e for e in self.reps.epochs if e <= ep and (layer, e, method) not in self._cache]
        for e in chain:
            xy = project(self.reps.get(layer, e), method)
            if method == "pca" and e is not None:
                earlier = [p for p in self.reps.epochs if p < e]
                if earlier:
                    xy = align(self._cache[(layer, earlier[-1], method)], xy)
            self._cache[(layer, e, method)] = xy
        return self._cache[key]

    def _request(self) -> None:
        with self._state_lock:
            if self.status.startswith("error"):  # belongs to the previous request
                self.status = ""
        self._jobs.put((self.layer, self.epoch, self.method))

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            while not self._jobs.empty():  # only the latest request matters
                job = self._jobs.get()
                if job is None:
                    return
            layer, epoch, method = job
            try:
                ep = self._epoch_for(epoch)
                if (layer, ep, method) not in self._cache:
                    with self._state_lock:
                        self.status = f"projecting {layer} with {method}" + (f" (epoch {ep})" if ep is not None
                                                                              else "") + "…"
                xy = self.coordinates(layer, ep, method)
                with self._state_lock:
                    self._points = self._points_state(layer, ep, method, xy)
                    self.status = ""
            except Exception as err:  # shown in the view; the widget stays usable
                with self._state_lock:
                    self.status = f"error: {type(err).__name__}: {err}"
                if not isinstance(err, RepresentationError):
                    traceback.print_exc()

    def _points_state(self, layer: str, epoch: int | None, method: str, xy: np.ndarray) -> dict[str, Any]:
        index, data = encode({"xy": xy})
        self._version += 1
        self._points_stale = False
        return {"header": {"index": index, "key": f"{layer}|{epoch}|{method}", "layer": layer, "epoch": epoch,
                           "method": method, "n": self.n, "version": self._version}, "data": data}

    def _recorded(self, epoch: int | None, layers: list[str]) -> None:
        """A recorder added an epoch (training thread): update the epoch list. Nothing is projected here: a view
        that shows the new epoch asks for it ("points"), so a projector whose views are gone (its cell was run
        again) costs nothing per epoch. An epoch recorded again (a training cell run twice) drops its pictures and
        those aligned to it, and tells the views to ask again."""
        stale = [k for k in list(self._cache) if k[0] in layers and
                 (epoch is None or k[1] is None or k[1] >= epoch)]
        for key in stale:
            self._cache.pop(key, None)
        keys = [f"{layer}|{e}|{method}" for layer, e, method in stale]
        with self._state_lock:
            if self._points.get("header", {}).get("key") in keys:
                self._points_stale = True
            self.epochs = self.reps.epochs
            self.layers = self.reps.layers
        if keys:
            self.send({"type": "stale", "keys": keys})

    @traitlets.observe("layer", "epoch", "method")
    def _view_changed(self, change: dict) -> None:
        if hasattr(self, "_worker"):
            self._request()

    @traitlets.validate("method")
    def _valid_method(self, proposal: dict) -> str:
        value = proposal["value"]
        return check_choice(value, "method", available_projections(), traitlets.TraitError,
                            hint="UMAP needs umap-learn, t-SNE scikit-learn" if value not in ("pca",) else None)

    @traitlets.validate("layer")
    def _valid_layer(self, proposal: dict) -> str:
        value = proposal["value"]
        if hasattr(self, "reps") and value not in self.reps.layers:
            raise traitlets.TraitError(f"layer: no layer {value!r}{closest(value, self.reps.layers)}; layers: "
                                       f"{self.reps.layers}")
        return value

    @traitlets.validate("k")
    def _valid_k(self, proposal: dict) -> int:
        return check_int(proposal["value"], "k (neighbours shown on click)", minimum=1, error=traitlets.TraitError)

    @traitlets.validate("epoch")
    def _valid_epoch(self, proposal: dict) -> int:
        value = proposal["value"]
        if value != -1 and hasattr(self, "reps") and value not in self.reps.epochs:
            recorded = self.reps.epochs
            raise traitlets.TraitError(f"epoch {value} was not recorded; " + (
                f"recorded epochs: {recorded}: choose one of them, or -1 to follow the latest" if recorded else
                "these representations have no epochs (taken once): leave epoch at -1"))
        return value

    @traitlets.validate("color_by")
    def _valid_color_by(self, proposal: dict) -> str:
        value, fields = proposal["value"], proposal["owner"].color_fields
        if value not in fields and (fields or value != ""):
            raise traitlets.TraitError(f"color_by must be one of the colour fields {list(fields)}; got {value!r}"
                                       f"{closest(value, fields)}")
        return value

    def wait(self, timeout: float = 120.0) -> None:
        """Block until the view's current projection is computed and sent."""
        import time

        deadline = time.monotonic() + timeout
        want = f"{self.layer}|{self._epoch_for(self.epoch)}|{self.method}"
        if self._points.get("header", {}).get("key") != want or self._points_stale:
            self._request()  # (views ask for new epochs themselves; Python asks here)
        while time.monotonic() < deadline:
            want = f"{self.layer}|{self._epoch_for(self.epoch)}|{self.method}"
            if self._jobs.empty() and self._points.get("header", {}).get("key") == want and not self._points_stale:
                return
            if self.status.startswith("error"):
                raise RepresentationError(self.status)
            time.sleep(0.02)
        raise TimeoutError(f"projection not ready after {timeout} s: {self.status}")

    def flush(self) -> None:
        """Wait for the current projection (``save_html`` calls this before it reads the state)."""
        self.wait()

    def to_dataframe(self, layer: str | None = None, epoch: int | None = None, method: str | None = None):
        """The points as a pandas DataFrame: ``index``, ``x``, ``y`` (the projection shown, or of ``layer``,
        ``epoch``, ``method``), one column per colour field (``label``, ``prediction``, ``colors`` entries; classes
        as categoricals with their names, missing ones NaN) and ``selected`` (the view's selection).
        ``df[df.selected]`` is the selection; ``df.attrs`` says which projection the coordinates are."""
        pd = require("pandas", "Projector.to_dataframe")
        xy = self.coordinates(layer, epoch, method)
        data: dict[str, Any] = {"index": np.arange(self.n), "x": xy[:, 0], "y": xy[:, 1]}
        for name, (field, values) in self._color_values.items():
            column = name if name not in ("index", "x", "y", "selected") else f"color:{name}"
            if field["kind"] == "category":
                data[column] = pd.Categorical.from_codes(values.astype(np.int64), categories=field["names"])
            else:
                data[column] = values
        with self._state_lock:
            data["selected"] = np.isin(data["index"], self._selected)
        frame = pd.DataFrame(data)
        frame.attrs = {"layer": layer or self.layer, "epoch": self._epoch_for(self.epoch if epoch is None else epoch),
                       "method": method or self.method}
        return frame

    # -- selection and neighbours --------------------------------------------------------------------------------
    def select(self, indices: Any) -> None:
        """Set the selection from Python (shown in every view of this projector). ``indices`` are integer point
        indices (floats and booleans are refused: for a mask pass ``np.flatnonzero(mask)``)."""
        raw = indices.detach().cpu().numpy() if isinstance(indices, torch.Tensor) else np.asarray(indices)
        if raw.dtype.kind == "b":
            raise RepresentationError("indices is a boolean mask; pass the indices of the True entries, "
                                      "np.flatnonzero(mask)")
        if raw.size and raw.dtype.kind not in "iu":
            raise RepresentationError(f"indices must be integer point indices; got {raw.dtype} values "
                                      f"{show(raw.reshape(-1)[:4].tolist())}: convert with .astype(int) if they are "
                                      "whole numbers")
        idx = np.unique(raw.astype(np.int64).reshape(-1))
        if len(idx) and (idx[0] < 0 or idx[-1] >= self.n):
            bad = idx[0] if idx[0] < 0 else idx[-1]
            raise RepresentationError(f"index {bad} is out of range: there are {self.n} points (0..{self.n - 1})")
        self._set_selection(idx)

    def _set_selection(self, idx: np.ndarray) -> None:
        index, data = encode({"indices": idx.astype(np.int32)})
        with self._state_lock:
            self._selected = idx
            self.set_trait("selection", idx)
            self._selection = {"header": {"index": index, "count": len(idx)}, "data": data}

    def selected_features(self, layer: str | None = None, epoch: int | None = None) -> torch.Tensor:
        """The selected examples' features in ``layer`` (default: the one shown): (len(selection), features)."""
        if not len(self._selected):
            raise RepresentationError("nothing is selected: draw a lasso or a box in the view (or click a legend "
                                      "entry), or call projector.select([...])")
        return self.reps.get(layer or self.layer, self._epoch_for(self.epoch if epoch is None else epoch)
                             )[torch.as_tensor(self._selected)]

    def neighbours(self, index: int, k: int | None = None, layer: str | None = None,
                   epoch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest examples to ``index`` in the layer's full feature space (not the 2-D picture).

        ``k`` defaults to the widget's ``k``, capped at the number of other points (a ``k`` passed here that is
        larger is refused)."""
        index = check_int(index, "index", error=RepresentationError)
        if k is None:
            k = min(self.k, self.n - 1)
        feats = self.reps.get(layer or self.layer, self._epoch_for(self.epoch if epoch is None else epoch))
        return nearest(feats, index, k, self.metric)

    def _on_custom(self, _widget: Any, content: Any, buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        kind = content.get("type")
        if kind == "select":
            raw = bytes(buffers[0]) if buffers else b""
            idx = np.frombuffer(raw, dtype="<i4").astype(np.int64)
            if "count" in content and int(content["count"]) != len(idx):  # never replace a selection by a wrong one
                with self._state_lock:
                    self.status = (f"error: the view selected {content['count']} points but {len(idx)} indices "
                                   "arrived; the selection in Python is unchanged")
                return
            idx = np.unique(idx[(idx >= 0) & (idx < self.n)])
            self._set_selection(idx)
        elif kind == "examples":
            page = int(content.get("page", 0))
            header, data = self.examples.page(page)
            self.send({"type": "examples", "page": page, "header": header}, [data])
        elif kind == "points":  # a view shows a (layer, epoch, method) it has no points for
            layer, method = str(content.get("layer", "")), str(content.get("method", ""))
            if layer in self.reps.layers and method in available_projections():
                self._jobs.put((layer, int(content.get("epoch", -1)), method))
        elif kind == "neighbours":
            index = int(content.get("index", -1))
            try:
                idx, dist = self.neighbours(index)
                self.send({"type": "neighbours", "index": index, "key": content.get("key"),
                           "indices": idx.tolist(), "distances": dist.tolist()})
            except RepresentationError as err:
                self.send({"type": "neighbours", "index": index, "error": str(err)})

    # -- static pages --------------------------------------------------------------------------------------------
    def static_state(self) -> dict[str, Any]:
        """What a static page (:func:`~hiddenwidgets.save_html`) adds to the state, as ``_static``: every layer's
        projection at each recorded epoch (by the current method), example pages up to ``static_budget`` bytes,
        and the k nearest neighbours of every point in the layer shown (up to 20,000 points)."""
        self.wait()
        points = {}
        for layer in self.reps.layers:
            for ep in (self.reps.epochs or [None]):
                try:
                    xy = self.coordinates(layer, ep, self.method)
                except RepresentationError:  # e.g. a 1-feature layer: the page shows the others
                    continue
                state = self._points_state(layer, ep, self.method, xy)
                points[state["header"]["key"]] = state
        pages, spent = {}, 0
        for number in range(self.examples.pages(self.n)):
            header, data = self.examples.page(number)
            spent += len(data) + sum(len(t) for t in header.get("texts", []))
            if spent > self.static_budget:
                break
            pages[str(number)] = {"header": header, "data": data}
        neighbours = {}
        if self.n <= 20_000:
            feats = self.reps.get(self.layer, self._epoch_for(self.epoch)).float()
            k = min(self.k, self.n - 1)
            table = np.zeros((self.n, k), dtype=np.int32)
            for lo in range(0, self.n, 2048):
                chunk = feats[lo:lo + 2048]
                if self.metric == "cosine":
                    unit = torch.nn.functional.normalize(feats, dim=1)
                    d = 1 - unit[lo:lo + 2048] @ unit.T
                else:
                    d = torch.cdist(chunk, feats)
                d[torch.arange(len(chunk)), torch.arange(lo, lo + len(chunk))] = math.inf
                table[lo:lo + len(chunk)] = torch.topk(d, k, largest=False).indices.numpy()
            index, data = encode({"indices": table})
            neighbours = {"key": self._points["header"]["key"], "header": {"index": index}, "data": data}
        return {"_static": {"points": points, "pages": pages, "neighbours": neighbours}}

    def close(self) -> None:
        """Stop the worker and stop following the recorder. Idempotent."""
        if hasattr(self, "_jobs"):
            self._jobs.put(None)
        if hasattr(self, "_unsubscribe"):
            self._unsubscribe()
        super().close()
