"""How hiddenwidgets touches a user's model, and how work on another thread is kept from touching it.

- :func:`model_device`: where the model's inputs go.
- :func:`evaluation_mode`: eval mode for one block, every module's own mode and every parameter's
  ``requires_grad`` given back afterwards; if the weights changed meanwhile (another thread trained the model while
  it was in eval mode), the block's result is refused with :class:`ModelChangedError`.
- :class:`ModelSnapshot`: a private copy of the model for *background* work (the attribution explorer, the unit
  atlas). Work on a snapshot cannot change what the training thread sees: not its mode, not its hooks, not its
  gradients. The weights are copied at a training-step boundary when a monitor steps the model on another thread
  (so the copy is one consistent set of weights, never half of an optimizer step), else at once.
- :func:`model_for_work`: the model a foreground analysis should run on: the model itself, or, while one of our
  background jobs (``run_in_background``) or another thread's monitored loop trains it, a fresh snapshot.

Why a snapshot and not a lock: a lock only protects a training loop that takes it, and users' loops (their own,
Lightning's, the Hugging Face Trainer's) do not. A copy needs nothing from the training code. It costs the
model's parameter memory once (per model and background view), and a copy of the weights per refresh.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import time
import warnings
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["ModelChangedError", "ModelSnapshot", "SnapshotError", "evaluation_mode", "model_device",
           "model_for_work", "note_training_step"]

BUSY_SECONDS = 2.0  # a model stepped by another thread within this long is "being trained" there


class ModelChangedError(RuntimeError):
    """The model's weights changed while hiddenwidgets computed on it: another thread trains it."""


class SnapshotError(RuntimeError):
    """The model could not be copied for background work (the message says why and what to do)."""


def model_device(model: nn.Module) -> torch.device:
    """Where ``model``'s parameters live (CPU for a model without parameters): where its inputs go."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


@contextlib.contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode for the block and give each its own previous mode back afterwards.

    Raises :class:`ModelChangedError` at the end of the block when a parameter was modified in place meanwhile
    (by an optimizer step on another thread): what the block computed mixes two sets of weights, and that
    thread's steps ran in eval mode.
    """
    training = [m for m in model.modules() if m.training]
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    versions = [p._version for p in params]
    try:
        if training:  # (a model already in eval mode costs nothing here: attribute() is called per batch)
            model.eval()
        yield
    finally:
        for m in model.modules():  # eval() turned every module off; give back the ones that were on
            if m.training:
                m.training = False
        for m in training:
            m.training = True
        for p, flag in zip(params, flags, strict=True):
            if p.requires_grad != flag:
                p.requires_grad_(flag)
    if any(p._version != v for p, v in zip(params, versions, strict=True)):
        raise ModelChangedError(
            "the model's weights changed while hiddenwidgets computed on it in eval mode: another thread is "
            "training it. That result mixes two sets of weights, and the training steps taken meanwhile ran in "
            "eval mode. Train with monitor.run_in_background(...) (hiddenwidgets then computes on a copy), or "
            "pass a copy: hw.ModelSnapshot(model).model")


# ------------------------------------------------------------------------------------------------------------------
# who trains which model
@dataclass
class _Use:
    thread: int | None = None
    stepped_at: float = 0.0
    jobs: list[threading.Thread] = field(default_factory=list)  # threads of our background jobs training it
    step: int | None = None
    requests: list[_Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class _Request:
    snapshot: ModelSnapshot
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


_USES: weakref.WeakKeyDictionary[nn.Module, _Use] = weakref.WeakKeyDictionary()
_USES_LOCK = threading.Lock()


def _use(model: nn.Module) -> _Use:
    use = _USES.get(model)
    if use is None:
        with _USES_LOCK:
            use = _USES.get(model)
            if use is None:
                use = _USES[model] = _Use()
    return use


def note_training_step(model: nn.Module, step: int | None = None) -> None:
    """Called by monitors after each training step, on the training thread: the model is between two steps, so
    pending snapshot requests are served here, from one consistent set of weights."""
    use = _use(model)
    use.thread, use.stepped_at, use.step = threading.get_ident(), time.monotonic(), step
    if use.requests:
        with use.lock:
            requests, use.requests = use.requests, []
        for request in requests:
            try:
                request.snapshot._copy_weights(model)
            except BaseException as err:  # reported to the thread that asked; never to the training loop
                request.error = err
            request.snapshot.step = step
            request.done.set()


@contextlib.contextmanager
def training_job(model: nn.Module, thread: threading.Thread) -> Iterator[None]:
    """Mark ``model`` as trained by a background job of ours on ``thread`` for the block (enter it before the
    thread starts, so that nothing can run on the model in between)."""
    use = _use(model)
    with use.lock:
        use.jobs.append(thread)
    try:
        yield
    finally:
        with use.lock:
            use.jobs.remove(thread)


def trained_elsewhere(model: nn.Module) -> bool:
    """Whether another thread is training ``model``: one of our background jobs, or a monitored loop that
    stepped within the last ``BUSY_SECONDS`` on a thread other than this one."""
    use = _USES.get(model)
    if use is None:
        return False
    me = threading.current_thread()
    if any(thread is not me for thread in use.jobs):
        return True
    return use.thread not in (None, me.ident) and time.monotonic() - use.stepped_at < BUSY_SECONDS


# ------------------------------------------------------------------------------------------------------------------
# snapshots
_KEPT_HOOK_MODULES = ("torch.nn.utils",)  # weight_norm, spectral_norm, pruning: part of what the model computes
_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


def tensor_versions(model: nn.Module) -> tuple[int, ...]:
    """The version counters of every parameter and buffer of ``model``: any in-place change (an optimizer step, a
    norm layer's running statistics) bumps one."""
    return tuple(t._version for t in (*model.parameters(), *model.buffers()))


class ModelSnapshot:
    """A private copy of ``model`` for work on another thread; see the module docstring.

    ``snapshot.model`` has the same architecture, parameters, buffers and mode as the model had when the weights
    were copied; no gradients; none of the model's forward/backward hooks except those of ``torch.nn.utils``
    (weight norm, spectral norm, pruning), which are part of its computation (``dropped_hooks`` counts the
    others: a user's logging hook must not fire for work the user did not run). :meth:`refresh` copies the current
    weights again. ``taken_at`` (``time.time()``) and ``step`` (the monitor's step, if one steps the model) say
    which weights these are; ``versions`` holds the live tensors' version counters read with the copy (any
    optimizer step or statistics update changes one), to tell later whether the weights changed since.
    """

    def __init__(self, model: nn.Module):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self._live = weakref.ref(model)
        self.versions = tensor_versions(model)
        self.model = self._private_copy(model)
        self.taken_at = time.time()
        self.step: int | None = _USES[model].step if model in _USES else None
        self._lock = threading.Lock()

    def _private_copy(self, model: nn.Module) -> nn.Module:
        source = getattr(model, "_orig_mod", model)  # a torch.compile'd model: copy the module it wraps
        memo = {id(p.grad): None for p in source.parameters() if p.grad is not None}  # no copies of gradients
        try:
            with torch.no_grad():
                twin = copy.deepcopy(source, memo)
        except Exception as err:
            raise SnapshotError(
                f"cannot copy the model for background work ({type(err).__name__}: {err}). Background views compute "
                "on a copy so that they never change what your training sees; pass a copy you made yourself, or "
                "compute in the cell (hw.attribute(...)) while nothing trains") from err
        self.dropped_hooks = 0
        for module in twin.modules():
            for name in _HOOK_DICTS:
                hooks = getattr(module, name, None)
                if not hooks:
                    continue
                for key, hook in list(hooks.items()):
                    owner = type(hook).__module__ if not callable(getattr(hook, "__func__", None)) else ""
                    if getattr(hook, "__hiddenwidgets__", False) or not owner.startswith(_KEPT_HOOK_MODULES):
                        del hooks[key]
                        self.dropped_hooks += 0 if getattr(hook, "__hiddenwidgets__", False) else 1
        for p in twin.parameters():
            p.grad = None
        return twin

    def _copy_weights(self, model: nn.Module) -> None:
        source = getattr(model, "_orig_mod", model)
        self.versions = tensor_versions(source)  # read with the copy, on the thread that changes the weights
        with torch.no_grad():
            ours = [*self.model.parameters(), *self.model.buffers()]
            theirs = [*source.parameters(), *source.buffers()]
            if len(ours) != len(theirs) or any(a.shape != b.shape for a, b in zip(ours, theirs, strict=True)):
                self.model = self._private_copy(model)  # the architecture changed (a new head): copy it anew
            else:
                for a, b in zip(ours, theirs, strict=True):
                    a.copy_(b)
            for a, b in zip(self.model.modules(), source.modules(), strict=False):
                a.training = b.training
        self.taken_at = time.time()

    def refresh(self, timeout: float = 2.0) -> ModelSnapshot:
        """Copy the live model's current weights into the snapshot.

        While a monitor steps the model on another thread, the copy is made by that thread right after its next
        ``step()`` (waiting at most ``timeout`` seconds; past that, it is made here). Returns ``self``.
        """
        model = self._live()
        if model is None:
            raise SnapshotError("the model this snapshot was taken from no longer exists")
        with self._lock:
            use = _USES.get(model)
            if use is not None and trained_elsewhere(model):
                request = _Request(self)
                with use.lock:
                    use.requests.append(request)
                if request.done.wait(timeout):
                    if request.error is not None:
                        raise SnapshotError(f"copying the weights failed: {request.error}") from request.error
                    return self
                with use.lock:
                    if request in use.requests:
                        use.requests.remove(request)
                if request.done.is_set():
                    return self
            self._copy_weights(model)
            self.step = use.step if use is not None else None
        return self

    def module(self, name: str) -> nn.Module:
        """The snapshot's module of that name (as in the live model's ``named_modules()``)."""
        modules = dict(self.model.named_modules())
        key = name[len("_orig_mod."):] if name.startswith("_orig_mod.") else name
        if key not in modules:
            raise KeyError(f"no module {name!r} in the snapshot")
        return modules[key]

    def describe(self) -> str:
        """Which weights these are, for a view's caption."""
        when = time.strftime("%H:%M:%S", time.localtime(self.taken_at))
        step = f" at training step {self.step}" if self.step is not None else ""
        return f"computed on a copy of the weights taken {when}{step}"


_WORK_SNAPSHOTS: weakref.WeakKeyDictionary[nn.Module, ModelSnapshot] = weakref.WeakKeyDictionary()
_WARNED: set[int] = set()


def model_for_work(model: nn.Module) -> nn.Module:
    """The model a foreground computation should run on: ``model`` itself, unless another thread is training it
    (one of our background jobs, or a monitored loop on another thread), then a fresh :class:`ModelSnapshot`'s
    copy, so that the computation cannot switch the training model to eval mode, add hooks to it, or read half
    of an optimizer step. Said once per model with a warning."""
    if not isinstance(model, nn.Module) or not trained_elsewhere(model):
        return model
    snap = _WORK_SNAPSHOTS.get(model)
    if snap is None:
        snap = _WORK_SNAPSHOTS[model] = ModelSnapshot(model)
    snap.refresh()
    if id(model) not in _WARNED:
        _WARNED.add(id(model))
        warnings.warn("the model is training on another thread: hiddenwidgets computes on a copy of its weights "
                      f"({snap.describe()}), so that your training is not disturbed", stacklevel=3)
    return snap.model
