"""Hooks on named layers that read outputs. The only other forward hooks in hiddenwidgets are the temporary ones
that *replace* an output for one call (``interventions.edit_outputs``) or read a CAM layer (``methods._cam``), each
removed in a ``finally``.

A :class:`Capture` resolves layer names against ``model.named_modules()``, picks one tensor out of each layer's
output (tuple, dict, dataclass and ``ModelOutput`` outputs included), and hands it to a sink while it is *armed*.
It never touches the model's mode or ``requires_grad``, and its hooks come off on :meth:`Capture.detach`, on
leaving a ``with`` block (exception and ``KeyboardInterrupt`` included), never by garbage collection alone.
"""

from __future__ import annotations

import dataclasses
import difflib
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from .model_state import model_device

__all__ = ["Capture", "CaptureError", "LayerError", "model_device", "select_tensor"]

Selector = int | str | Callable[[Any], torch.Tensor] | None
Sink = Callable[[str, torch.Tensor], None]
GradSink = Callable[[str, torch.Tensor], None]


class CaptureError(RuntimeError):
    """A layer's output could not be captured (it holds no tensor, or the selector does not match)."""


class LayerError(KeyError):
    """A requested layer name is not in ``model.named_modules()``."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


def select_tensor(output: Any, selector: Selector = None) -> tuple[torch.Tensor, str]:
    """Pick the tensor to summarise from a layer's output and say which one it is.

    ``selector`` may be an index (tuples/lists), a key or attribute name (dicts, dataclasses, ``ModelOutput``),
    or a callable ``output -> Tensor``. With ``None``: the output itself if it is a tensor, else the *first*
    tensor found: first element of a tuple/list, first value of a mapping in insertion order, first field of a
    dataclass. Returns ``(tensor, description)``, e.g. ``(t, "output[0]")``.
    """
    if callable(selector):
        picked = selector(output)
        if not isinstance(picked, torch.Tensor):
            raise CaptureError(f"the selector {selector!r} returned {type(picked).__name__}, expected a Tensor")
        return picked, f"{getattr(selector, '__name__', 'selector')}(output)"
    if selector is not None:
        try:
            if isinstance(selector, int) or isinstance(output, Mapping):
                picked = output[selector]
            else:
                picked = getattr(output, selector)
        except (KeyError, IndexError, AttributeError, TypeError) as err:
            raise CaptureError(
                f"selector {selector!r} does not match the output ({_describe(output)}): {err}. "
                f"Pass an index for tuples, a key or attribute name for dicts/dataclasses, or a callable."
            ) from None
        if not isinstance(picked, torch.Tensor):
            raise CaptureError(f"output[{selector!r}] is {type(picked).__name__}, expected a Tensor")
        where = f"output[{selector}]" if isinstance(selector, int) else f"output[{selector!r}]"
        return picked, where
    if isinstance(output, torch.Tensor):
        return output, "output"
    for where, value in _candidates(output):
        if isinstance(value, torch.Tensor):
            return value, where
    raise CaptureError(
        f"the output holds no tensor ({_describe(output)}). Choose a layer that returns a tensor, "
        f"or pass a selector, e.g. layers={{'name': 0}} or layers={{'name': lambda out: out.hidden}}."
    )


def _candidates(output: Any) -> Iterable[tuple[str, Any]]:
    if isinstance(output, Mapping):
        return ((f"output[{k!r}]", v) for k, v in output.items())
    if dataclasses.is_dataclass(output) and not isinstance(output, type):
        return ((f"output.{f.name}", getattr(output, f.name)) for f in dataclasses.fields(output))
    if isinstance(output, (tuple, list)):
        return ((f"output[{i}]", v) for i, v in enumerate(output))
    return ()


def _describe(output: Any) -> str:
    if isinstance(output, torch.Tensor):
        return f"Tensor{tuple(output.shape)}"
    if isinstance(output, (tuple, list)):
        inner = ", ".join(_describe(v) for v in list(output)[:4])
        return f"{type(output).__name__}({inner}{', ...' if len(output) > 4 else ''})"
    if isinstance(output, Mapping):
        return f"{type(output).__name__} with keys {list(output)[:6]}"
    return type(output).__name__


@dataclasses.dataclass
class Tap:
    """One hooked layer."""

    name: str
    module: nn.Module
    selector: Selector = None
    source: str = ""  # which tensor of the output was picked, e.g. "output[0]"; set at first capture
    error: CaptureError | None = None


class Capture:
    """Forward (and optionally gradient) hooks on named layers of ``model``.

    Parameters
    ----------
    model : the network; it is only read, never changed (mode, ``requires_grad`` and parameters stay as given).
    layers : names from ``model.named_modules()``, or a mapping ``name -> selector`` (see :func:`select_tensor`).
    gradients : also capture ``d(loss)/d(output)`` of each layer on armed steps (a tensor hook on that step's
        output, which disappears with the autograd graph).
    grad_only : sample only forward passes run with autograd on (training), so a validation pass under
        ``torch.no_grad()`` between two steps is not mistaken for a training batch. Default True.

    A capture calls ``sink(name, tensor)`` only while armed (:meth:`arm`): each armed layer delivers its next
    output once. Unarmed hooks cost one attribute check per forward. Use it as a context manager, or call
    :meth:`attach` / :meth:`detach` yourself.
    """

    def __init__(self, model: nn.Module, layers: Iterable[str] | Mapping[str, Selector], *, gradients: bool = False,
                 grad_only: bool = True):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        specs = dict(layers) if isinstance(layers, Mapping) else {name: None for name in _as_names(layers)}
        if not specs:
            raise ValueError("layers is empty: name at least one layer from model.named_modules()")
        modules = dict(model.named_modules())
        self.taps: dict[str, Tap] = {}
        for name, selector in specs.items():
            if not isinstance(name, str):
                raise TypeError(f"layer names must be strings, got {name!r}")
            if name not in modules:
                raise LayerError(_unknown_layer_message(name, modules))
            self.taps[name] = Tap(name, modules[name], selector)
        self.model = model
        self.gradients = gradients
        self.grad_only = grad_only
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._pending: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        self._sink: Sink | None = None
        self._grad_sink: GradSink | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------
    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def attach(self, sink: Sink, grad_sink: GradSink | None = None) -> Capture:
        """Register one forward hook per layer. Idempotent."""
        with self._lock:
            self._sink, self._grad_sink = sink, grad_sink
            if not self._handles:
                for tap in self.taps.values():
                    self._handles.append(tap.module.register_forward_hook(self._hook_for(tap)))
        return self

    def detach(self) -> None:
        """Remove every hook this capture registered. Idempotent; safe from ``finally`` blocks."""
        with self._lock:
            handles, self._handles = self._handles, []
            self._pending = frozenset()
        for handle in handles:
            handle.remove()

    def __enter__(self) -> Capture:
        if not self._handles:
            raise RuntimeError("attach(sink) first, or use a monitor, which attaches its own sink")
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()

    # -- arming ----------------------------------------------------------------------------------------------
    def arm(self, names: Iterable[str] | None = None) -> None:
        """Deliver the next output of each named layer (all layers by default) to the sink, once."""
        self._pending = frozenset(self.taps if names is None else names)

    @property
    def armed(self) -> frozenset[str]:
        return self._pending

    def describe(self) -> dict[str, str]:
        """Layer name -> which tensor of its output is captured (known after the first armed forward)."""
        return {name: tap.source or "not captured yet" for name, tap in self.taps.items()}

    def _hook_for(self, tap: Tap):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if tap.name not in self._pending or (self.grad_only and not torch.is_grad_enabled()):
                return
            with self._lock:
                if tap.name not in self._pending:
                    return
                self._pending = self._pending - {tap.name}
            try:
                tensor, tap.source = select_tensor(output, tap.selector)
            except CaptureError as err:
                tap.error = CaptureError(f"layer {tap.name!r} ({type(module).__name__}): {err}")
                return  # reported by the monitor at its next step(); never raise inside the user's forward
            if self._sink is not None:
                try:
                    self._sink(tap.name, tensor)
                except Exception as err:  # a failing summary must never break the user's forward pass
                    tap.error = CaptureError(f"layer {tap.name!r}: summarising its output failed: "
                                             f"{type(err).__name__}: {err}")
                    return
            if self.gradients and self._grad_sink is not None and tensor.requires_grad and torch.is_grad_enabled():
                grad_sink, name = self._grad_sink, tap.name

                def on_grad(grad: torch.Tensor) -> None:  # returns None: the gradient flows on unchanged
                    grad_sink(name, grad)

                tensor.register_hook(on_grad)

        return hook

    def take_errors(self) -> list[CaptureError]:
        errors = [tap.error for tap in self.taps.values() if tap.error is not None]
        for tap in self.taps.values():
            tap.error = None
        return errors


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
