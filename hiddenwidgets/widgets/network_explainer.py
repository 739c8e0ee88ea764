"""NetworkExplainer: CNN Explainer (Wang et al., IEEE VIS 2020) for the learner's own model, in the notebook.

Every layer of the model for one input, as columns in forward order; a click on a unit shows its arithmetic (from
:mod:`hiddenwidgets.analysis.explainer`, computed in Python from the recorded tensors and the weights: the view
only displays it). The input comes from a gallery or is drawn on a canvas; each change runs one forward pass in
the kernel. Browser requests travel as custom messages, which the base class routes to JupyterLab's widget
subshell, so they are answered while a training cell runs.

While the model trains (in a background job of a monitor, or in a cell: ``refresh=`` seconds, or
:meth:`NetworkExplainer.follow`), the overview follows the training: at the chosen rate, if the weights changed, a
private copy of them (:class:`~hiddenwidgets.pipeline.model_state.ModelSnapshot`, copied by the training thread
at its next ``monitor.step()``, between two optimizer steps) is explained and the view updated, which says the
step and time of the weights it shows. The training model itself is never run, hooked, or switched to eval mode
for this. The updates travel as the monitor's frames do: binary buffers (``transport.encode``), sent from one
sender thread that holds the view weakly, within the kernel-wide message budget (``SHARED_BUDGET``), and each
publish forgets the kernel's reply route (``HiddenWidget._send``) so clicks are still answered during a busy cell.

``save_html`` embeds the overview and the arithmetic of every unit for the chosen inputs (``static_inputs``):
the numbers in the page are the ones Python computed from the model. Recomputing them in JavaScript from
embedded weights would be a second implementation of every layer (and of PyTorch's padding and pooling rules)
whose numbers could differ from the model's; embedding the recorded arithmetic cannot. Drawing needs the model,
so the static page says so instead.
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import traitlets
from torch import nn

from ..analysis.explainer import ExplainerError, NetworkTrace, explain_network
from ..pipeline.checks import check_int, check_names, keywords_checked, what
from ..pipeline.model_state import ModelSnapshot, tensor_versions
from ..pipeline.transport import SHARED_BUDGET, encode
from ._base import HiddenWidget

__all__ = ["NetworkExplainer"]

MAP_PAGE = 32  # feature maps per column page: a layer with thousands of channels is shown a page at a time
STATIC_UNITS = 16384  # a step with more units than this keeps its arithmetic out of static pages (size, export time)
SNAPSHOT_WAIT = 2.0  # seconds a refresh waits for the training thread's next step() to copy the weights


def _jsonable(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    return value


def encode_unit(unit: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    """A unit's arithmetic for the wire: scalars as JSON (non-finite ones as null), arrays in one binary buffer."""
    arrays, header = {}, {}
    for key, value in unit.items():
        if isinstance(value, np.ndarray):
            arrays[key] = value if value.dtype in (np.float32, np.int32, np.uint8) else value.astype(np.float32)
        else:
            header[key] = _jsonable(value)
    index, data = encode(arrays)
    header["arrays"] = index
    return header, data


def pack_units(units: list[dict[str, Any]]) -> tuple[dict[str, Any], bytes]:
    """Every unit of one step in one message, for static pages: what all units share once (``common``), each
    per-unit number or array stacked along a first axis of ``len(units)`` (``index`` holds each unit's index).
    Per-unit scalars become float32 (int32 when all whole): the shown numbers keep float32's precision, the
    precision the model computed in. Returns ``(header, data)`` (see js/network_explainer.js: unpackUnit)."""
    first = units[0]
    common: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {"index": np.array([u["index"] for u in units], dtype=np.int32)}
    for key, value in first.items():
        if key in ("index", "then"):
            continue
        column = [u[key] for u in units]
        if isinstance(value, np.ndarray):
            dtype = value.dtype if value.dtype in (np.int32, np.uint8) else np.float32
            if all(v.shape == value.shape and np.array_equal(v, value) for v in column):
                arrays[f"common:{key}"] = value.astype(dtype)  # e.g. a linear layer's input: the same for all
            else:
                arrays[key] = np.stack(column).astype(dtype)
        elif all(_same_json(v, value) for v in column):
            common[key] = _jsonable(value)
        elif all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in column):
            arrays[key] = np.array(column, dtype=np.int32)
        elif all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in column):
            arrays[key] = np.array(column, dtype=np.float32)
        elif all(isinstance(v, list) and all(isinstance(i, int) for i in v) for v in column):
            arrays[key] = np.array(column, dtype=np.int32)
        else:
            raise ValueError(f"cannot pack {key!r}: the units differ in kind")  # a programming error
    then = first.get("then") or []
    template = []
    for j, t in enumerate(then):
        template.append({k: _jsonable(v) for k, v in t.items() if not isinstance(v, float)})
        for k, v in t.items():
            if isinstance(v, float):
                arrays[f"then:{j}:{k}"] = np.array([u["then"][j][k] for u in units], dtype=np.float32)
    index, data = encode(arrays)
    return {"common": common, "then": template, "arrays": index, "count": len(units)}, data


def _same_json(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, float) and isinstance(b, float) and (a == b or (math.isnan(a) and math.isnan(b)))
    return type(a) is type(b) and a == b


def _float32(t: torch.Tensor) -> np.ndarray:
    """A recorded CPU tensor as a float32 numpy array (no copy when it is one already)."""
    return t.numpy() if t.dtype == torch.float32 else t.float().numpy()


def _images(x: torch.Tensor) -> np.ndarray:
    """uint8 thumbnails (N, H, W, C) of image inputs, on one scale over the gallery."""
    t = x.detach().float().cpu()
    lo, hi = float(t.min()), float(t.max())
    t = (t - lo) / (hi - lo if hi > lo else 1.0)
    return (t.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


class NetworkExplainer(HiddenWidget):
    """Every layer of ``model`` for one of ``inputs`` (a batch), and the arithmetic of any unit on click.

    ``inputs``: the gallery, a tensor (N, ...) of model inputs. ``class_names``: names of the output classes.
    ``draw``: offer a canvas to draw an input (images (N, C, H, W) only; default: when the inputs are images of
    one channel). ``draw_transform``: turns the drawing, a float array (H, W) of ink in [0, 1], into one model
    input; by default ink 0..1 is mapped to the gallery's range of values on every channel. ``static_inputs``:
    the gallery positions whose arithmetic ``save_html`` embeds (default: the selected one). ``refresh``:
    seconds between looks at the weights while the model trains (see :meth:`follow`); default None: the overview
    changes only when the input does.
    Implements the views of CNN Explainer (Wang et al., IEEE VIS 2020) for any model.
    """

    _view_file = "network_explainer"

    title = traitlets.Unicode("Network explainer", help="Title (str).").tag(sync=True)
    class_names = traitlets.List(help="Names of the output classes (list of str, default []).").tag(sync=True)
    layers = traitlets.List(traitlets.Dict(), help="One row per step (read-only).").tag(sync=True)
    groups = traitlets.List(traitlets.Dict(), help="Residual blocks: name, first, last, add (read-only).").tag(
        sync=True)
    notes = traitlets.List(traitlets.Unicode(), help="What the overview could not show (read-only).").tag(sync=True)
    graph = traitlets.Unicode("", help="Where the layout comes from: 'torch.fx' or 'execution order'.").tag(
        sync=True)
    selected = traitlets.Int(0, help="Gallery position shown; -1: the drawn input (read-only).").tag(sync=True)
    n = traitlets.Int(0).tag(sync=True)
    can_draw = traitlets.Bool(False).tag(sync=True)
    draw_shape = traitlets.List(traitlets.Int()).tag(sync=True)
    prediction = traitlets.Int(-1, help="The predicted class for the input shown (read-only).").tag(sync=True)
    status = traitlets.Unicode("", help="An error from the last request, else '' (read-only).").tag(sync=True)
    refresh = traitlets.Float(0.0, help="Seconds between looks at the weights while following; 0: not following "
                              "(read-only: set it with follow()).").tag(sync=True)
    weights = traitlets.Dict(help="Which weights the picture shows: step (the monitor's training step, or None), "
                             "time (when copied, seconds since the epoch), copy (a private copy), text (read-only)."
                             ).tag(sync=True)
    _gallery = traitlets.Dict().tag(sync=True)
    _overview = traitlets.Dict().tag(sync=True)
    _static = traitlets.Dict().tag(sync=True)

    @keywords_checked
    def __init__(self, model: nn.Module, inputs: torch.Tensor, *, class_names: Sequence[str] | None = None,
                 draw: bool | None = None, draw_transform: Callable[[np.ndarray], torch.Tensor] | None = None,
                 static_inputs: Sequence[int] | None = None, refresh: float | None = None,
                 title: str = "Network explainer"):
        if not isinstance(model, nn.Module):
            raise ExplainerError(f"model must be a torch.nn.Module; got {what(model)}")
        if not isinstance(inputs, torch.Tensor) or inputs.dim() < 2 or not inputs.is_floating_point() \
                or len(inputs) == 0:
            raise ExplainerError(f"inputs must be a non-empty floating-point batch (N, ...) of model inputs; got "
                                 f"{what(inputs)}")
        names = check_names(class_names, "class_names", ExplainerError)
        image = inputs.dim() == 4 and inputs.shape[1] in (1, 3)
        if draw is None:
            draw = image and inputs.shape[1] == 1
        if draw and not image:
            raise ExplainerError(f"draw=True needs image inputs (N, C, H, W) with C 1 or 3; got shape "
                                 f"{tuple(inputs.shape)}")
        if draw_transform is not None and not callable(draw_transform):
            raise ExplainerError(f"draw_transform must be a function (H, W) ink array -> input; got "
                                 f"{what(draw_transform)}")
        self.model = model
        self.inputs = inputs.detach()
        self._draw_transform = draw_transform
        self._lo, self._hi = float(inputs.min()), float(inputs.max())
        self._pages: dict[int, int] = {}
        self._drawn: torch.Tensor | None = None
        self.trace: NetworkTrace | None = None
        self._snapshot: ModelSnapshot | None = None  # the weights the picture shows while following
        self._spare: ModelSnapshot | None = None  # refreshed while the picture still reads the other one
        self._marker: tuple[int, ...] | None = None  # the live weights' versions when the snapshot was taken
        self._stop_follow = threading.Event()
        self._follower: threading.Thread | None = None
        self.refreshes = 0  # pictures made by following (for tests and benchmarks)
        self._static_inputs = [check_int(i, "static_inputs[]", minimum=0, maximum=len(inputs) - 1,
                                         error=ExplainerError) for i in (static_inputs or [])]
        gallery: dict[str, Any] = {}
        if image:
            index, data = encode({"images": _images(self.inputs)})
            gallery = {"header": {"index": index}, "data": data}
        super().__init__(title=title, class_names=list(names or []), n=len(inputs), can_draw=bool(draw),
                         draw_shape=list(inputs.shape[-2:]) if draw else [], _gallery=gallery)
        self.show(0)
        self.on_msg(self._on_custom)
        if refresh is not None:
            self.follow(refresh)

    def __repr__(self) -> str:
        shown = "a drawn input" if self.selected < 0 else f"input {self.selected} of {self.n}"
        reading = f", predicted class {self._class_name(self.prediction)}" if self.prediction >= 0 else ""
        weights = f", weights of {self.weights['text']}" if self.weights.get("text") else ""
        return (f"NetworkExplainer({self.title!r}: {len(self.layers)} steps of {type(self.model).__name__} for "
                f"{shown}{reading}{weights}; an interactive view: it needs a Jupyter front end with widgets, or "
                "save_html() for an offline page)")

    def _class_name(self, c: int) -> str:
        return str(self.class_names[c]) if c < len(self.class_names) else str(c)

    # -------------------------------------------------------------------------------------------------------
    def show(self, index: int) -> NetworkTrace:
        """Explain gallery input ``index`` (the view follows). Returns the trace."""
        index = check_int(index, "index", minimum=0, maximum=len(self.inputs) - 1, error=ExplainerError)
        return self._explain(self.inputs[index], index)

    def show_drawing(self, ink: np.ndarray) -> NetworkTrace:
        """Explain the input made from a drawing: ``ink`` (H, W) in [0, 1] (what the canvas sends)."""
        ink = np.asarray(ink, dtype=np.float32)
        if ink.shape != tuple(self.draw_shape):
            raise ExplainerError(f"the drawing has shape {ink.shape}; expected {tuple(self.draw_shape)}")
        if not np.all(np.isfinite(ink)):
            raise ExplainerError("the drawing holds NaN or inf")
        if self._draw_transform is not None:
            x = torch.as_tensor(self._draw_transform(ink))
        else:
            x = self._lo + torch.from_numpy(ink.clip(0, 1)) * (self._hi - self._lo)
            x = x.expand(self.inputs.shape[1], *ink.shape).to(self.inputs.dtype)
        if tuple(x.shape) != tuple(self.inputs.shape[1:]):
            raise ExplainerError(f"draw_transform returned shape {tuple(x.shape)}; the model's inputs have shape "
                                 f"{tuple(self.inputs.shape[1:])}")
        self._drawn = x
        return self._explain(x, -1)

    def unit(self, step: int | str, index: int | Sequence[int]) -> dict[str, Any]:
        """The arithmetic of a unit of the input shown (see :meth:`NetworkTrace.unit`)."""
        return self.trace.unit(step, index)  # type: ignore[union-attr]

    # -------------------------------------------------------------------------------------------------------
    def follow(self, every: float = 2.0) -> NetworkExplainer:
        """Follow the training: every ``every`` seconds, if the model's weights changed, explain the input shown
        again on a private copy of the current weights, and update the view (which says the training step and
        time of the weights it shows). Returns the view, so ``hw.NetworkExplainer(model, x).follow(1.0)`` shows it.

        The copy is made by the training thread right after its next ``monitor.step()`` (an
        :class:`~hiddenwidgets.ActivationMonitor` or recorder stepping the model, e.g. in ``run_in_background``):
        one consistent set of weights, between two optimizer steps; waiting at most 2 s, else (and for a loop
        that no monitor steps) it is made at once. Nothing of the training model changes: no hooks, no mode
        switch, no gradients; drawings and clicks are answered from the same copy, so every number shown belongs
        to the weights named in the view. :meth:`stop_following` (or ``close()``) ends it.
        """
        if isinstance(every, bool) or not isinstance(every, (int, float)) or not 0.05 <= every <= 3600:
            raise ExplainerError(f"every (refresh) must be a number of seconds in [0.05, 3600]; got {what(every)}")
        self.stop_following()
        if self._snapshot is None:
            self._snapshot = ModelSnapshot(self.model)
            self._spare = ModelSnapshot(self.model)
        self._marker = None
        self._stop_follow = threading.Event()
        with self._state_lock:
            self.refresh = float(every)
        self._refresh_once()  # the first picture from a copy now, not in `every` seconds
        self._follower = threading.Thread(target=_follow, args=(weakref.ref(self), self._stop_follow, float(every)),
                                          name="hiddenwidgets-explainer-follow", daemon=True)
        self._follower.start()
        return self

    def stop_following(self) -> None:
        """Stop following the training (the picture stays; later inputs are explained on the live model)."""
        stop = getattr(self, "_stop_follow", None)
        if stop is None or not hasattr(self, "_state_lock"):  # (close() of a view whose construction failed)
            return
        stop.set()
        thread, self._follower = self._follower, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(30)
        with self._state_lock:
            self.refresh = 0.0
            self._snapshot = self._spare = None
            self._marker = None

    @property
    def following(self) -> bool:
        """Whether the view follows the training (:meth:`follow`)."""
        return self._follower is not None and not self._stop_follow.is_set()

    def close(self) -> None:
        """Stop following (if it does) and close the widget."""
        self.stop_following()
        super().close()

    def _refresh_once(self) -> bool:
        """One look at the weights (the follower thread calls this every ``refresh`` seconds): if they changed
        since the picture's copy, copy them into the spare snapshot, explain the input shown on it, and swap.
        Returns whether a new picture was made."""
        marker = tensor_versions(self.model)
        spare = self._spare
        if spare is None or marker == self._marker:
            return False
        spare.refresh(SNAPSHOT_WAIT)  # by the training thread at its next step() when a monitor steps the model
        with self._state_lock:
            if self._spare is not spare:  # stopped or restarted meanwhile
                return False
            x, selected = self._current_input()
            trace = explain_network(spare.model, x)
            self._snapshot, self._spare = spare, self._snapshot
            # the weights the copy holds, read when it was made (the training thread may have stepped between
            # reading `marker` and making the copy: marking the picture with `marker` redrew it once more)
            self._marker = spare.versions
            self._publish(trace, selected)
            self.refreshes += 1
        return True

    def _current_input(self) -> tuple[torch.Tensor, int]:
        if self.selected < 0 and self._drawn is not None:
            return self._drawn, -1
        return self.inputs[max(self.selected, 0)], max(self.selected, 0)

    def _weights_info(self) -> dict[str, Any]:
        snap = self._snapshot
        if snap is None:  # the live model (unchanged from one picture to the next: not sent again)
            return {"step": None, "time": None, "copy": False, "text": ""}
        when = time.strftime("%H:%M:%S", time.localtime(snap.taken_at))
        return {"step": snap.step, "time": snap.taken_at, "copy": True,
                "text": f"{_weights_name(snap)} (copied {when}; following every {self.refresh:g} s)"}

    def _explain(self, x: torch.Tensor, selected: int) -> NetworkTrace:
        with self._state_lock:  # one picture at a time: a draw, a select and the follower never interleave
            snap = self._snapshot
            trace = explain_network(snap.model if snap is not None else self.model, x)
            self._publish(trace, selected)
        return trace

    def _publish(self, trace: NetworkTrace, selected: int) -> None:
        """The picture of ``trace`` into the view's state (under ``_state_lock``, in one message)."""
        self.trace = trace
        layers, header, data = self._overview_of(trace)
        logits = trace.steps[-1].output
        with self._state_lock, self.hold_sync():
            self.weights = self._weights_info()
            self.layers = layers
            self.groups = [{"name": g.name, "first": g.first, "last": g.last, "add": g.add,
                            "skip_from": g.skip_from} for g in trace.groups]
            self.notes = list(trace.notes)
            self.graph = trace.graph
            self.selected = selected
            self.prediction = int(logits.argmax()) if logits.dim() == 1 else -1
            self.status = ""
            self._overview = {"header": header, "data": data}

    def _overview_of(self, trace: NetworkTrace) -> tuple[list[dict[str, Any]], dict[str, Any], bytes]:
        # numpy from here on: a torch call releases the GIL, which a busy cell's loop then holds for up to 5 ms
        arrays: dict[str, np.ndarray] = {"input": _float32(trace.input)}
        layers = []
        for row, s in zip(trace.summary(), trace.steps, strict=True):
            full = _float32(s.output)
            out = full
            pages, page = 1, 0
            if out.ndim == 3 and out.shape[0] > MAP_PAGE:
                pages = math.ceil(out.shape[0] / MAP_PAGE)
                page = min(self._pages.get(s.index, 0), pages - 1)
                out = out[page * MAP_PAGE:(page + 1) * MAP_PAGE]
            arrays[f"s{s.index}"] = out
            row.update(page=page, pages=pages, channels=int(full.shape[0]) if full.ndim == 3 else 0,
                       lo=float(full.min()) if full.size else 0.0, hi=float(full.max()) if full.size else 0.0)
            layers.append(_jsonable(row))
        index, data = encode(arrays)
        return layers, {"index": index}, data

    # -------------------------------------------------------------------------------------------------------
    def _on_custom(self, _widget: Any, content: Any, buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        kind = content.get("type")
        try:
            if kind == "select":
                self.show(int(content.get("index", 0)))
                self.send({"type": "done", "seq": content.get("seq")})
            elif kind == "draw":
                shape = tuple(self.draw_shape)
                ink = np.frombuffer(bytes(buffers[0]), dtype="<f4").reshape(shape)
                self.show_drawing(ink)
                self.send({"type": "done", "seq": content.get("seq")})
            elif kind == "page":
                self._pages[int(content["step"])] = int(content["page"])
                with self._state_lock:
                    layers, header, data = self._overview_of(self.trace)  # type: ignore[arg-type]
                    with self.hold_sync():
                        self.layers, self._overview = layers, {"header": header, "data": data}
            elif kind == "unit":
                step, index = int(content["step"]), [int(i) for i in content["index"]]
                with self._state_lock:  # the trace and the weights it names, together
                    unit = self.unit(step, index)
                    unit["weights_step"] = self.weights.get("step")
                header, data = encode_unit(unit)
                self.send({"type": "unit", "key": content.get("key"), "header": header}, [data])
        except Exception as err:  # said in the view, never lost in the kernel's log
            with self._state_lock:
                self.status = f"{type(err).__name__}: {err}"
            self.send({"type": "done", "seq": content.get("seq"), "error": self.status})

    def static_state(self) -> dict[str, Any]:
        """For ``save_html``: the overview and every unit's arithmetic of each input in ``static_inputs`` (by
        default the selected one; the first when a drawing is shown: a drawing is not part of the gallery)."""
        chosen = self._static_inputs or [max(self.selected, 0)]
        inputs: dict[str, Any] = {}
        with self._state_lock:  # while following: the copy whose weights the view names
            snap = self._snapshot
            model = snap.model if snap is not None else self.model
            traces = {i: explain_network(model, self.inputs[i]) for i in chosen}
            # a page of a view that followed training says which step's weights its numbers come from
            if snap is None:
                weights = None
            else:
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(snap.taken_at))
                weights = {"step": snap.step, "text": f"{_weights_name(snap)} (copied {when})"}
        for i in chosen:
            trace = traces[i]
            layers, header, data = self._overview_of(trace)
            units, left_out = {}, []
            for s in trace.steps:
                shape = tuple(s.output.shape)
                if s.output.numel() > STATIC_UNITS:
                    left_out.append(s.label)
                    continue
                cells = [trace.unit(s.index, tuple(int(v) for v in np.unravel_index(flat, shape)))
                         for flat in range(s.output.numel())]
                try:
                    packed, buffer = pack_units(cells)
                    units[str(s.index)] = {"header": packed, "data": buffer}
                except ValueError:  # windows of different sizes (adaptive pooling): one entry per unit
                    units[str(s.index)] = {"header": {"count": len(cells), "single": True}, "cells": {
                        ",".join(map(str, c["index"])): dict(zip(("header", "data"), encode_unit(c), strict=True))
                        for c in cells}}
            inputs[str(i)] = {"layers": layers, "overview": {"header": header, "data": data}, "units": units,
                              "prediction": int(trace.steps[-1].output.argmax()), "left_out": left_out}
        return {"_static": {"inputs": inputs, "chosen": chosen, "weights": weights}}


def _weights_name(snap: ModelSnapshot) -> str:
    """How the view and its page name a copy's weights ("weights of …"; no monitor steps the model: no step)."""
    return f"training step {snap.step}" if snap.step is not None else "the model"


def _follow(ref: weakref.ref[NetworkExplainer], stop: threading.Event, every: float) -> None:
    """The follower thread: holds its view weakly (a view nobody holds is collected and this thread ends); one
    picture per ``every`` seconds at most, and only within the kernel-wide message budget."""
    while not stop.wait(every):
        view = ref()
        if view is None:
            return
        try:
            if tensor_versions(view.model) != view._marker and SHARED_BUDGET.try_take():
                view._refresh_once()
        except Exception as err:  # said in the view; following goes on (the next look may succeed)
            with view._state_lock:
                view.status = f"following the training: {type(err).__name__}: {err}"
        finally:
            del view
