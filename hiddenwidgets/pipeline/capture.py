"""Hooks on named layers that read outputs. The only other forward hooks in hiddenwidgets are the temporary ones
that *replace* an output for one call (``analysis.interventions.edit_outputs``) or read a CAM layer
(``methods._cam``), each removed in a ``finally``.

A :class:`Capture` resolves layer names against ``model.named_modules()``, picks one tensor out of each layer's
output (tuple, dict, dataclass, ``ModelOutput`` and ``PackedSequence`` outputs included), and hands it to a sink
while the layer is *armed*: **every** call of the layer, not only the first (a module called several times per
forward pass: weight sharing, a reused activation, a hand-unrolled recurrence), each with its call index.

Every call is also *counted*, armed or not, split into training calls (autograd on and the module in training
mode) and the others (validation under ``model.eval()`` or ``torch.no_grad()``), so a caller can tell a layer that
never runs from one that runs only outside training.

It never touches the model's mode or ``requires_grad``; its hooks come off on :meth:`Capture.detach`, on leaving a
``with`` block (exception and ``KeyboardInterrupt`` included), and never keep the sink's owner alive (a bound
method is held weakly). Hook bodies run outside ``torch.compile``'s graphs (``torch.compiler.disable``), so a
model compiled with the hooks on is neither broken into recompilations nor traced through the summaries.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from .listeners import weak_callback
from .model_state import model_device

__all__ = ["Call", "Capture", "CaptureError", "LayerError", "model_device", "resolve_layer_names", "select_tensor"]

Selector = int | str | Callable[[Any], torch.Tensor] | None
Sink = Callable[[str, torch.Tensor, "Call"], None]
GradSink = Callable[[str, torch.Tensor, "Call"], None]


class CaptureError(RuntimeError):
    """A layer's output could not be captured (it holds no tensor, or the selector does not match)."""


class LayerError(KeyError):
    """A requested layer name is not in ``model.named_modules()``."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


def select_tensor(output: Any, selector: Selector = None, *, keep_packed: bool = False
                  ) -> tuple[torch.Tensor | PackedSequence, str]:
    """Pick the tensor to summarise from a layer's output and say which one it is.

    ``selector`` may be an index (tuples/lists), a key or attribute name (dicts, dataclasses, ``ModelOutput``),
    or a callable ``output -> Tensor``. With ``None``: the output itself if it is a tensor, else the *first*
    tensor found: first element of a tuple/list, first value of a mapping in insertion order, first field of a
    dataclass. A ``PackedSequence`` (an RNN run on packed input) stands for its ``.data``: the steps of every
    sequence stacked, without padding, (total steps, features); with ``keep_packed`` the PackedSequence itself
    is returned (for callers that need one row per sequence). Returns ``(tensor, description)``, e.g.
    ``(t, "output[0]")`` or ``(t, "output[0].data")``.
    """
    if callable(selector) and not isinstance(selector, (int, str)):
        picked = _tensor_of(keep_packed, selector(output))
        if picked is None:
            raise CaptureError(f"the selector {selector!r} returned {type(selector(output)).__name__}, expected a "
                               "Tensor")
        return picked[0], f"{getattr(selector, '__name__', 'selector')}(output){picked[1]}"
    if selector is not None:
        try:
            if isinstance(selector, int) or isinstance(output, Mapping):
                value = output[selector]
            else:
                value = getattr(output, selector)
        except (KeyError, IndexError, AttributeError, TypeError) as err:
            raise CaptureError(
                f"selector {selector!r} does not match the output ({_describe(output)}): {err}. "
                f"Pass an index for tuples, a key or attribute name for dicts/dataclasses, or a callable."
            ) from None
        picked = _tensor_of(keep_packed, value)
        if picked is None:
            raise CaptureError(f"output[{selector!r}] is {type(value).__name__}, expected a Tensor")
        where = f"output[{selector}]" if isinstance(selector, int) else f"output[{selector!r}]"
        return picked[0], where + picked[1]
    direct = _tensor_of(keep_packed, output)
    if direct is not None:
        return direct[0], "output" + direct[1]
    for where, value in _candidates(output):
        picked = _tensor_of(keep_packed, value)
        if picked is not None:
            return picked[0], where + picked[1]
    raise CaptureError(
        f"the output holds no tensor ({_describe(output)}). Choose a layer that returns a tensor, "
        f"or pass a selector, e.g. layers={{'name': 0}} or layers={{'name': lambda out: out.hidden}}."
    )


def _tensor_of(keep_packed: bool, value: Any) -> tuple[Any, str] | None:
    """``(tensor, suffix)`` when ``value`` is a tensor or a PackedSequence (its ``.data``), else None."""
    if isinstance(value, torch.Tensor):
        return value, ""
    if isinstance(value, PackedSequence):
        return (value, "") if keep_packed else (value.data, ".data")
    return None


def _candidates(output: Any) -> Iterable[tuple[str, Any]]:
    if isinstance(output, Mapping):
        return ((f"output[{k!r}]", v) for k, v in output.items())
    if dataclasses.is_dataclass(output) and not isinstance(output, type):
        return ((f"output.{f.name}", getattr(output, f.name)) for f in dataclasses.fields(output))
    if isinstance(output, (tuple, list)) and not isinstance(output, PackedSequence):
        return ((f"output[{i}]", v) for i, v in enumerate(output))
    return ()


def _describe(output: Any) -> str:
    if isinstance(output, torch.Tensor):
        return f"Tensor{tuple(output.shape)}"
    if isinstance(output, PackedSequence):
        return f"PackedSequence(data={tuple(output.data.shape)})"
    if isinstance(output, (tuple, list)):
        inner = ", ".join(_describe(v) for v in list(output)[:4])
        return f"{type(output).__name__}({inner}{', ...' if len(output) > 4 else ''})"
    if isinstance(output, Mapping):
        return f"{type(output).__name__} with keys {list(output)[:6]}"
    return type(output).__name__


class Call(NamedTuple):
    """Which call of a layer a captured tensor comes from: ``index`` counts the layer's calls since it was armed
    (0 for the first); ``training`` is whether autograd was on and the module in training mode."""

    index: int
    training: bool
    lengths: torch.Tensor | None = None  # per sequence, when the output was a PackedSequence unpacked to (N, T, F)


@dataclasses.dataclass
class Tap:
    """One hooked layer and what its hook has seen."""

    name: str
    module: nn.Module
    selector: Selector = None
    source: str = ""  # which tensor of the output was picked, e.g. "output[0]"; set at first capture
    error: CaptureError | None = None
    training_calls: int = 0  # calls since the last reset_counts(), armed or not
    other_calls: int = 0
    armed_calls: int = 0  # training calls delivered since the layer was armed


def resolve_layer_names(model: nn.Module, names: Iterable[str]) -> dict[str, str]:
    """Map each requested layer name to the name ``model.named_modules()`` knows it by.

    Besides exact names this accepts names without the prefixes that wrappers add (``_orig_mod.`` from
    ``torch.compile``, ``module.`` from ``DataParallel``/``DistributedDataParallel``) and names with a prefix the
    model does not have (a name copied from the unwrapped model). Unknown names raise :class:`LayerError` with
    the closest names.
    """
    modules = dict(model.named_modules())
    prefixes = ("_orig_mod.", "module.", "_orig_mod.module.")
    out: dict[str, str] = {}
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"layer names must be strings, got {name!r}")
        found = name if name in modules else None
        if found is None:
            for prefix in prefixes:
                if prefix + name in modules:
                    found = prefix + name
                    break
                if name.startswith(prefix) and name[len(prefix):] in modules:
                    found = name[len(prefix):]
                    break
        if found is None:
            raise LayerError(_unknown_layer_message(name, modules))
        out[name] = found
    return out


class Capture:
    """Forward (and optionally gradient) hooks on named layers of ``model``.

    Parameters
    ----------
    model : the network; it is only read, never changed (mode, ``requires_grad`` and parameters stay as given).
    layers : names from ``model.named_modules()``, or a mapping ``name -> selector`` (see :func:`select_tensor`).
    gradients : also capture ``d(loss)/d(output)`` of each layer on armed training calls (a tensor hook on that
        call's output, which disappears with the autograd graph).
    grad_only : deliver only *training* calls (autograd on and the module in training mode), so a validation pass
        under ``torch.no_grad()`` or ``model.eval()`` is not mistaken for a training batch. Default True. With
        False every call counts as a training call (the layer's own mode and autograd are ignored).
    unpack : deliver a ``PackedSequence`` output padded to (N, T, features), with ``call.lengths``, instead of its
        ``.data`` (for per-sequence features; the monitor summarises ``.data``, which has no padding).

    While a layer is armed (:meth:`arm`, until :meth:`disarm`), the capture calls ``sink(name, tensor, call)`` for
    each of its training calls, ``call`` a :class:`Call`. :meth:`arm_other` arms the other calls (validation) the
    same way. Unarmed hooks only count calls. Use it as a context manager, or call :meth:`attach` /
    :meth:`detach` yourself.
    """

    def __init__(self, model: nn.Module, layers: Iterable[str] | Mapping[str, Selector], *, gradients: bool = False,
                 grad_only: bool = True, unpack: bool = False):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        specs = dict(layers) if isinstance(layers, Mapping) else {name: None for name in _as_names(layers)}
        if not specs:
            raise ValueError("layers is empty: name at least one layer from model.named_modules()")
        resolved = resolve_layer_names(model, specs)
        modules = dict(model.named_modules())
        self.taps: dict[str, Tap] = {name: Tap(name, modules[resolved[name]], selector)
                                     for name, selector in specs.items()}
        self.model = model
        self.gradients = gradients
        self.grad_only = grad_only
        self.unpack = unpack
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._armed: frozenset[str] = frozenset()
        self._armed_other: frozenset[str] = frozenset()
        self._thread: int | None = None
        self.has_errors = False  # set by a hook that recorded an error; take_errors() clears it
        self._lock = threading.Lock()
        self._sink: Callable[[], Sink | None] = weak_callback(None)
        self._grad_sink: Callable[[], GradSink | None] = weak_callback(None)

    # -- lifecycle -----------------------------------------------------------------------------------------
    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def attach(self, sink: Sink, grad_sink: GradSink | None = None) -> Capture:
        """Register one forward hook per layer. Idempotent. A bound-method sink is held weakly."""
        with self._lock:
            self._sink, self._grad_sink = weak_callback(sink), weak_callback(grad_sink)
            if not self._handles:
                handles = []
                try:
                    for tap in self.taps.values():
                        handles.append(tap.module.register_forward_hook(self._hook_for(tap)))
                finally:  # all or nothing, also when interrupted half-way
                    self._handles = handles
        return self

    def detach(self) -> None:
        """Remove every hook this capture registered. Idempotent; safe from ``finally`` blocks."""
        with self._lock:
            handles, self._handles = self._handles, []
            self._armed = self._armed_other = frozenset()
        for handle in handles:
            handle.remove()

    def release(self) -> None:
        """Detach and forget the model and its modules (a closed monitor keeps its history, not the model)."""
        self.detach()
        for tap in self.taps.values():
            tap.module = None  # type: ignore[assignment]
        self.model = None  # type: ignore[assignment]

    def __enter__(self) -> Capture:
        if not self._handles:
            raise RuntimeError("attach(sink) first, or use a monitor, which attaches its own sink")
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()

    # -- arming ----------------------------------------------------------------------------------------------
    def arm(self, names: Iterable[str] | None = None, *, this_thread_only: bool = False) -> None:
        """Deliver every training call of each named layer (all layers by default) until :meth:`disarm`.

        ``this_thread_only``: only calls made on the calling thread (an analysis that runs the model itself, so
        that another thread's forward passes on the same model never mix into its result)."""
        for tap in self.taps.values():
            tap.armed_calls = 0
        self._thread = threading.get_ident() if this_thread_only else None
        self._armed = frozenset(self.taps if names is None else names)

    def arm_other(self, names: Iterable[str] | None = None) -> None:
        """Deliver the non-training calls (validation) of the named layers too, until :meth:`disarm`."""
        self._armed_other = frozenset(self.taps if names is None else names)

    def disarm(self) -> None:
        self._armed = frozenset()

    @property
    def armed(self) -> frozenset[str]:
        return self._armed

    def reset_counts(self) -> dict[str, tuple[int, int]]:
        """``{layer: (training calls, other calls)}`` since the last reset; starts counting again."""
        counts = {}
        for name, tap in self.taps.items():
            counts[name] = (tap.training_calls, tap.other_calls)
            tap.training_calls = tap.other_calls = 0
        return counts

    def describe(self) -> dict[str, str]:
        """Layer name -> which tensor of its output is captured (known after the first armed forward)."""
        return {name: tap.source or "not captured yet" for name, tap in self.taps.items()}

    def _hook_for(self, tap: Tap):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if self._thread is not None and threading.get_ident() != self._thread:
                return  # another thread's forward pass on the same model: not ours to see
            training = not self.grad_only or (torch.is_grad_enabled() and module.training)
            if training:
                tap.training_calls += 1
                if tap.name not in self._armed:
                    return
                index = tap.armed_calls
                tap.armed_calls += 1
            else:
                tap.other_calls += 1
                if tap.name not in self._armed_other:
                    return
                index = tap.other_calls - 1
            try:
                tensor, tap.source = select_tensor(output, tap.selector, keep_packed=self.unpack)
            except CaptureError as err:
                tap.error = CaptureError(f"layer {tap.name!r} ({type(module).__name__}): {err}")
                self.has_errors = True
                return  # reported by the monitor at its next step(); never raise inside the user's forward
            lengths = None
            if isinstance(tensor, PackedSequence):
                tensor, lengths = nn.utils.rnn.pad_packed_sequence(tensor, batch_first=True)
            call = Call(index, training, lengths)
            sink = self._sink()
            if sink is not None:
                try:
                    sink(tap.name, tensor, call)
                except Exception as err:  # a failing summary must never break the user's forward pass
                    tap.error = CaptureError(f"layer {tap.name!r}: summarising its output failed: "
                                             f"{type(err).__name__}: {err}")
                    self.has_errors = True
                    return
            grad_sink = self._grad_sink()
            if (training and self.gradients and grad_sink is not None and tensor.requires_grad
                    and torch.is_grad_enabled()):
                sink_ref, name = self._grad_sink, tap.name

                def on_grad(grad: torch.Tensor) -> None:  # returns None: the gradient flows on unchanged
                    target = sink_ref()
                    if target is not None:
                        target(name, grad, call)

                tensor.register_hook(on_grad)

        hook.__hiddenwidgets__ = True  # type: ignore[attr-defined]  # a snapshot of the model drops these hooks
        return _outside_compiled_graphs(hook)

    def take_errors(self) -> list[CaptureError]:
        self.has_errors = False
        errors = [tap.error for tap in self.taps.values() if tap.error is not None]
        for tap in self.taps.values():
            tap.error = None
        return errors


def _outside_compiled_graphs(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` run eagerly even inside a ``torch.compile``d model: Dynamo neither traces it (which would guard on
    the monitor's Python state and recompile at every change of what is armed) nor inlines the summaries."""
    disable = getattr(getattr(torch, "compiler", None), "disable", None)
    if disable is None:
        return fn
    wrapped = disable(fn)
    with contextlib.suppress(AttributeError):
        wrapped.__hiddenwidgets__ = True
    return wrapped


def _as_names(layers: Iterable[str]) -> list[str]:
    if isinstance(layers, str):
        return [layers]
    return list(layers)


def _unknown_layer_message(name: str, modules: Mapping[str, nn.Module]) -> str:
    names = [n for n in modules if n]
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    msg = f"no layer named {name!r} in the model."
    if close:
        msg += f" Closest names: {', '.join(repr(c) for c in close)}."
    shown = names[:12]
    msg += f" Valid names come from model.named_modules(): {', '.join(repr(n) for n in shown)}"
    msg += f" (and {len(names) - len(shown)} more)." if len(names) > len(shown) else "."
    return msg
