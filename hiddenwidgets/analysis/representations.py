"""Layer representations: extract them (pooled to examples x features), record them through training, project
them to 2-D, and find an example's nearest neighbours in a layer's space.

Pooling (one vector per example):

- conv layers, (N, C, H, W): the mean over positions of each channel (global average pooling), so a layer has C
  features; ``pool="max"`` takes the maximum, ``pool="flatten"`` keeps every unit (C·H·W features).
- sequence layers, (N, T, D): the mean over the tokens the attention mask keeps (padding excluded), D features;
  ``pool="first"`` takes the first token (e.g. [CLS]), ``pool="tokens"`` keeps every unmasked token as its own
  row (for token-level probes; rows ordered by example, then position).
- (N, D): unchanged. Other shapes are flattened per example.

Extraction runs the model in eval mode under ``torch.no_grad()`` and gives every module its own mode back; its
hooks come off when it returns (also on errors).
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from ..pipeline.capture import Capture, Selector, model_device
from ..pipeline.checks import (
    check_bool,
    check_callable,
    check_choice,
    check_epoch,
    check_epochs,
    check_int,
    check_keywords,
    check_mapping,
    closest,
    keywords_checked,
)
from ..pipeline.listeners import Listeners
from ..pipeline.model_state import evaluation_mode, model_for_work
from ..pipeline.progress import reporter
from ..pipeline.rundir import RunMember
from ..pipeline.summaries import UNIT_LAYOUTS, units_of
from .matrices import RepresentationError, as_matrix

__all__ = [
    "POOLS",
    "RepresentationRecorder",
    "Representations",
    "available_projections",
    "layer_features",
    "nearest",
    "pool",
    "probe",
    "project",
]

POOLS = ("mean", "max", "flatten", "first", "tokens")
RECORDER_POOLS = ("mean", "max", "flatten", "first")  # one row per example
PROJECTIONS = ("pca", "umap", "tsne")
METRICS = ("euclidean", "cosine")


def _check_pool(how: Any, choices: tuple[str, ...] = POOLS) -> str:
    return check_choice(how, "pool", choices, RepresentationError)


def _check_batch_size(batch_size: Any) -> int:
    return check_int(batch_size, "batch_size", minimum=1, error=RepresentationError,
                     hint="try 256 (examples per forward pass)")


@keywords_checked
def pool(tensor: torch.Tensor, how: str = "mean", mask: torch.Tensor | None = None,
         axis: int | None = None) -> torch.Tensor:
    """One row per example (per token for ``how="tokens"``) from a layer's output; see the module docstring.

    ``axis`` is the axis of the layer's units (see :func:`hiddenwidgets.pipeline.summaries.units_of`): "mean"
    and "max" reduce over every other axis but the batch. By default, axis 1 for 4-D and 5-D outputs (N, C, ...)
    and the last axis for 3-D ones (N, T, D); a channels-last (N, H, W, C) output needs ``axis=3``.
    """
    _check_pool(how)
    if not isinstance(tensor, torch.Tensor):
        raise RepresentationError(f"pool takes a layer's output tensor; got {type(tensor).__name__}")
    if tensor.is_complex():
        raise RepresentationError(f"the layer's output is complex ({tensor.dtype}, shape {tuple(tensor.shape)}); "
                                  "pooling it to real features would drop the imaginary part: select a real tensor, "
                                  "or pool x.real / x.abs() yourself")
    if axis is not None:
        axis = check_int(axis, "axis", minimum=-max(tensor.ndim, 1), maximum=max(tensor.ndim, 1) - 1,
                         error=RepresentationError, hint=f"an axis of the {tuple(tensor.shape)} output")
    t = tensor.detach()
    if t.ndim == 2:
        return t
    if t.ndim == 1:
        return t.reshape(-1, 1)
    if how == "flatten":
        return t.reshape(t.shape[0], -1)
    if axis is None:
        axis = 1 if t.ndim >= 4 else t.ndim - 1
    axis %= t.ndim
    if axis == 0:
        raise RepresentationError(f"axis 0 is the batch; the units of a {tuple(t.shape)} output are on another axis")
    sequence = t.ndim == 3 and axis == 2  # (N, T, D): tokens, with the attention mask
    if not sequence:
        if how in ("first", "tokens"):
            raise RepresentationError(f"pool={how!r} is for sequence layers (N, T, D); this layer gives "
                                      f"{tuple(t.shape)} with units on axis {axis}: use 'mean', 'max' or 'flatten'")
        positions = tuple(d for d in range(1, t.ndim) if d != axis)
        return t.mean(dim=positions) if how == "mean" else t.amax(dim=positions)
    keep = None
    if mask is not None:
        keep = mask.to(t.device).bool()
        if keep.shape != t.shape[:2]:
            raise RepresentationError(f"the attention mask has shape {tuple(mask.shape)} but the layer gives "
                                      f"{tuple(t.shape)}; it must be (N, T) for (N, T, D) outputs")
    if how == "first":
        return t[:, 0]
    if how == "tokens":
        return t[keep] if keep is not None else t.reshape(-1, t.shape[-1])
    if how == "max":
        return (t.masked_fill(~keep[..., None], -math.inf) if keep is not None else t).amax(dim=1)
    if keep is None:
        return t.mean(dim=1)
    w = keep.to(t.dtype)[..., None]
    return (t * w).sum(dim=1) / w.sum(dim=1).clamp(min=1)


_pool = pool  # layer_features' keyword argument ``pool`` shadows the function


def _batches(inputs: Any, batch_size: int) -> Iterable[tuple[Any, torch.Tensor | None]]:
    """(batch, attention mask or None) from a tensor, or from a mapping of tensors (a tokenizer's output)."""
    if isinstance(inputs, Mapping):
        n = len(next(iter(inputs.values())))
        for start in range(0, n, batch_size):
            batch = {k: v[start:start + batch_size] for k, v in inputs.items()}
            yield batch, batch.get("attention_mask")
    else:
        for start in range(0, len(inputs), batch_size):
            yield inputs[start:start + batch_size], None


def _count(inputs: Any) -> int:
    """The number of examples in ``inputs`` (a tensor or a mapping of tensors); refuses empty and complex ones."""
    if isinstance(inputs, Mapping):
        if not inputs:
            raise RepresentationError("inputs is an empty dict; pass a tensor (N, ...) or a mapping of tensors such "
                                      "as a tokenizer's output")
        sizes = {k: len(v) if hasattr(v, "__len__") else None for k, v in inputs.items()}
        if len(set(sizes.values())) != 1:
            raise RepresentationError(f"the input tensors have different numbers of examples: {sizes}; every "
                                      "entry of inputs needs one row per example")
        n = next(iter(sizes.values()))
        if n is None:
            raise RepresentationError(f"the entries of inputs must be tensors with one row per example; got "
                                      f"{ {k: type(v).__name__ for k, v in inputs.items()} }")
        tensors = [v for v in inputs.values() if isinstance(v, torch.Tensor)]
    elif isinstance(inputs, torch.Tensor):
        n = len(inputs) if inputs.ndim else 0
        tensors = [inputs]
    else:
        raise RepresentationError(f"inputs must be a tensor (N, ...) or a mapping of tensors such as a tokenizer's "
                                  f"output; got {type(inputs).__name__}: pass torch.as_tensor(inputs)")
    if any(t.is_complex() for t in tensors):
        raise RepresentationError("inputs are complex; the layers' features would lose the imaginary part: pass "
                                  "real inputs (e.g. torch.view_as_real(x))")
    if not n:
        raise RepresentationError("inputs holds 0 examples; pass at least one example (N >= 1) along the first "
                                  "dimension")
    return n


def _check_units(units: Any) -> None:
    values = units.values() if isinstance(units, Mapping) else [units]
    for value in values:
        if value is None or value in UNIT_LAYOUTS:
            continue
        if isinstance(value, str):
            raise RepresentationError(f"units must be 'channels_first', 'channels_last' or an axis index; got "
                                      f"{value!r}{closest(value, UNIT_LAYOUTS)}")
        check_int(value, "units", error=RepresentationError, hint="'channels_first', 'channels_last' or an axis")


@keywords_checked
def layer_features(model: nn.Module, inputs: Any, layers: Iterable[str] | Mapping[str, Selector], *,
                   pool: str = "mean", batch_size: int = 256,
                   forward: Callable[[nn.Module, Any], Any] | None = None,
                   eval_mode: bool = True, calls: str | int | None = None,
                   units: str | int | Mapping[str, str | int] | None = None) -> dict[str, torch.Tensor]:
    """Each layer's pooled outputs on ``inputs``: ``{layer: (N, features) float32 CPU tensor}``.

    ``inputs``: a tensor, or a mapping of tensors (``input_ids``, ``attention_mask``...) passed as keyword
    arguments; its ``attention_mask`` masks padding when pooling sequence layers. ``forward(model, batch)``
    overrides how a batch is run. Layers are module names (or a mapping to selectors for tuple outputs, as in
    :class:`~hiddenwidgets.Capture`). ``eval_mode=False`` runs the model in its current mode.

    ``calls``: which call to take from a layer that runs several times in one forward pass (a shared ALBERT
    layer, a reused activation, an unrolled recurrence): ``"first"``, ``"last"`` or a 0-based index. By default
    such a layer is refused with an error that says how many times it ran, since no single call is *the*
    layer's representation.

    ``units``: which axis of an output holds the layer's units, for "mean" and "max" pooling (one value for all
    layers or a mapping per layer; ``"channels_first"``, ``"channels_last"`` or an index). By default it is
    decided from the layer as the monitor does (a ``Linear`` or ``LayerNorm`` on a channels-last ConvNeXt or
    Swin map has its units last), so channel means are means over positions whatever the layout.

    A layer whose output is complex is refused (real features would drop the imaginary part), as are empty
    inputs; see :mod:`hiddenwidgets.pipeline.checks` for the rules on argument types.
    """
    model = model_for_work(model)  # a copy of the weights while another thread trains the model
    _check_batch_size(batch_size)
    _check_pool(pool)
    if calls is not None and not (isinstance(calls, str) and calls in ("first", "last")):
        if isinstance(calls, str):
            raise RepresentationError(f"calls must be 'first', 'last', a call index (int) or None; got "
                                      f"{calls!r}{closest(calls, ('first', 'last'))}")
        check_int(calls, "calls", error=RepresentationError, hint="'first', 'last', a call index or None")
    check_bool(eval_mode, "eval_mode", RepresentationError)
    check_callable(forward, "forward", RepresentationError)
    _check_units(units)
    n = _count(inputs)
    capture = Capture(model, layers, grad_only=False, unpack=True)
    chunks: dict[str, list[torch.Tensor]] = {name: [] for name in capture.taps}
    batch_calls: dict[str, list[torch.Tensor]] = {name: [] for name in capture.taps}
    current: dict[str, torch.Tensor | None] = {"mask": None}
    refused: list[RepresentationError] = []
    how = pool

    def sink(name: str, tensor: torch.Tensor, call: Any) -> None:
        if tensor.is_complex():  # raised after the forward pass (an exception here would become a CaptureError)
            refused.append(RepresentationError(
                f"layer {name!r} gives a complex output ({tensor.dtype}, shape {tuple(tensor.shape)}); real features "
                "would drop its imaginary part: choose a layer with a real output, or a selector that returns "
                "x.real or x.abs()"))
            return
        mask = current["mask"]
        if call.lengths is not None:  # a PackedSequence, padded: pool each sequence over its own steps
            mask = torch.arange(tensor.shape[1])[None, :] < call.lengths[:, None]
        axis = None
        if how in ("mean", "max") and tensor.ndim >= 3:
            choice = units.get(name) if isinstance(units, Mapping) else units
            axis, _ = units_of(tensor, capture.taps[name].module, model=model, units=choice)
        # a copy: an in-place op after the layer (ReLU(inplace=True)) would change a view of its output
        batch_calls[name].append(_pool(tensor, how, mask, axis).to("cpu", torch.float32, copy=True))

    device = model_device(model)
    capture.attach(sink)
    try:
        with evaluation_mode(model) if eval_mode else contextlib.nullcontext(), torch.no_grad():
            for batch, mask in _batches(inputs, batch_size):
                current["mask"] = mask
                capture.arm(this_thread_only=True)
                if isinstance(batch, Mapping):
                    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
                    _ = forward(model, batch) if forward else model(**batch)
                else:
                    batch = batch.to(device)
                    _ = forward(model, batch) if forward else model(batch)
                capture.disarm()
                if refused:
                    raise refused[0]
                errors = capture.take_errors()
                if errors:
                    raise errors[0]
                for name, got in batch_calls.items():
                    chunks[name].append(_one_call(name, got, calls))
                    got.clear()
    finally:
        capture.detach()
    out = {name: torch.cat(parts) for name, parts in chunks.items()}
    if how != "tokens":
        for name, t in out.items():
            if len(t) != n:
                raise RepresentationError(f"layer {name!r} gave {len(t)} rows for {n} examples")
    return out


def _one_call(name: str, got: list[torch.Tensor], calls: str | int | None) -> torch.Tensor:
    if not got:
        raise RepresentationError(f"layer {name!r} did not run in the forward pass; choose a layer the model calls "
                                  "(a module the forward skips, or one a fused kernel replaces, never runs)")
    if len(got) == 1 and calls in (None, "first", "last", 0, -1):
        return got[0]
    if calls is None:
        raise RepresentationError(f"layer {name!r} ran {len(got)} times in one forward pass (a shared or reused "
                                  "module); pass calls='first', 'last' or a call index to choose one")
    index = 0 if calls == "first" else -1 if calls == "last" else int(calls)
    if not -len(got) <= index < len(got):
        raise RepresentationError(f"calls={calls!r}, but layer {name!r} ran {len(got)} times per forward pass "
                                  f"(valid indices 0..{len(got) - 1})")
    return got[index]


# ------------------------------------------------------------------------------------------------------------------
# projections
def available_projections() -> list[str]:
    """Projection methods usable here: "pca" always; "umap" with umap-learn, "tsne" with scikit-learn installed."""
    out = ["pca"]
    try:
        import umap  # noqa: F401

        out.append("umap")
    except ImportError:
        pass
    try:
        import sklearn.manifold  # noqa: F401

        out.append("tsne")
    except ImportError:
        pass
    return out


def _gram_t(a: np.ndarray) -> np.ndarray:
    """``a.T @ a`` (numpy recognises the transposed operand and uses the symmetric kernel)."""
    return a.T @ a


def _pca(x: torch.Tensor, dims: int, seed: int = 0) -> torch.Tensor:
    n, f = x.shape
    offset = None
    if f <= 4096 and x.device.type == "cpu":
        # Tall and thin, on the CPU: numpy's ``a.T @ a``, which BLAS runs as a symmetric rank-k update (half the
        # multiplications of torch's general product). Where every feature's mean is small beside its spread
        # (mean² <= 99 × variance), the covariance is XᵀX - n·mean·meanᵀ and the coordinates X·W - mean·W, as
        # scikit-learn's covariance solver does: no centred copy of the data. The float32 sums of XᵀX then lose at
        # most ~100x their rounding to the subtraction. Otherwise (a layer with a large offset, or a constant
        # non-zero unit) the data is centred first, where that subtraction would lose every digit.
        data = x.numpy()
        mean = data.mean(axis=0, dtype=np.float64)
        gram = _gram_t(data)
        second = np.diagonal(gram).astype(np.float64) / n
        if bool(np.all(mean * mean <= 0.99 * second)):
            cov = torch.from_numpy(gram.astype(np.float64) - n * np.outer(mean, mean))
            offset = mean
        else:
            x = torch.from_numpy(data - mean.astype(data.dtype))
            cov = torch.from_numpy(_gram_t(x.numpy()))
    else:
        x = x - x.mean(dim=0)
        cov = x.T @ x if f <= 4096 else None
    if cov is not None:  # (F, F): one pass over the data, then a small symmetric eigenproblem
        _, vecs = torch.linalg.eigh(cov.double())
        comps = vecs[:, -dims:].flip(1).to(x.dtype)
    elif n <= 4096:  # wide layer, few examples: the (N, N) Gram matrix has the same non-zero spectrum
        _, vecs = torch.linalg.eigh((x @ x.T).double())
        comps = torch.nn.functional.normalize(x.T @ vecs[:, -dims:].flip(1).to(x.dtype), dim=0)
    else:  # randomised range finder with its own generator: the user's random stream is never touched
        g = torch.Generator().manual_seed(seed)
        q = min(dims + 8, n, f)
        basis = torch.linalg.qr(x @ torch.randn(f, q, generator=g, dtype=x.dtype)).Q
        for _ in range(4):
            basis = torch.linalg.qr(x @ (x.T @ basis)).Q
        _, _, vt = torch.linalg.svd(basis.T @ x, full_matrices=False)
        comps = vt[:dims].T
    # sign convention: each component's largest loading (in absolute value) is positive, so the picture does not
    # flip between runs on the same data
    largest = comps[comps.abs().argmax(dim=0), torch.arange(dims)]
    comps = comps * torch.where(largest < 0, -1.0, 1.0)
    if x.device.type == "cpu":
        w = comps.numpy()
        xy = x.numpy() @ w  # numpy's product of (N, F) by (F, 2) took half the time of torch's
        if offset is not None:
            xy -= (offset @ w.astype(np.float64)).astype(xy.dtype)
        return torch.from_numpy(xy)
    return x @ comps


def project(features: Any, method: str = "pca", *, dims: int = 2, seed: int = 0, **options: Any) -> np.ndarray:
    """(N, features) -> (N, dims) float32 coordinates by PCA, UMAP or t-SNE (``options`` go to UMAP / t-SNE; PCA
    takes none, so options given with "pca" are refused rather than ignored)."""
    check_choice(method, "method (the projection)", PROJECTIONS, RepresentationError)
    dims = check_int(dims, "dims", minimum=1, error=RepresentationError, hint="try 2 (the number of coordinates)")
    seed = check_int(seed, "seed", minimum=0, error=RepresentationError)
    if method == "pca" and options:
        raise TypeError(f"project(method='pca') takes no options; got {', '.join(map(repr, options))}. Options "
                        "are for method='umap' (umap.UMAP's) or method='tsne' (sklearn's TSNE)")
    x = as_matrix(features, "features", dtype=torch.float32)
    if x.shape[1] < dims:
        raise RepresentationError(f"a layer with {x.shape[1]} feature(s) cannot be projected to {dims}-D; choose a "
                                  "wider layer or pool='flatten'")
    if method == "pca":
        return _pca(x, dims, seed).numpy()
    if method not in available_projections():
        extra = "umap-learn" if method == "umap" else "scikit-learn"
        raise RepresentationError(f"projection {method!r} needs {extra}: pip install {extra} (or use 'pca')")
    data = x.numpy()
    if method == "umap":
        import umap

        return umap.UMAP(n_components=dims, random_state=seed, **options).fit_transform(data).astype(np.float32)
    from sklearn.manifold import TSNE

    opts = {"init": "pca", "random_state": seed, "perplexity": min(30.0, (len(data) - 1) / 3), **options}
    return TSNE(n_components=dims, **opts).fit_transform(data).astype(np.float32)


def align(reference: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """``xy`` rotated/reflected (orthogonal Procrustes) and moved onto ``reference``'s centroid, to match it best,
    so consecutive epochs of one layer do not spin, flip or drift on screen. Distances are unchanged."""
    a = reference - reference.mean(axis=0)
    b = xy - xy.mean(axis=0)
    u, _, vt = np.linalg.svd(b.T @ a)
    return (b @ (u @ vt) + reference.mean(axis=0)).astype(np.float32)


@keywords_checked
def nearest(features: Any, index: int, k: int = 8, metric: str = "euclidean") -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` examples nearest to example ``index`` in a layer's space (itself excluded): (indices, distances).

    ``metric``: "euclidean" or "cosine" (1 - cosine similarity). ``k`` is at most the number of other examples
    (N - 1); a larger ``k`` is refused rather than shortened.
    """
    index = check_int(index, "index", error=RepresentationError)
    k = check_int(k, "k (the number of neighbours)", minimum=1, error=RepresentationError)
    check_choice(metric, "metric", METRICS, RepresentationError)
    x = as_matrix(features, "features", dtype=torch.float32)
    n = len(x)
    if not 0 <= index < n:
        raise RepresentationError(f"index {index} is out of range: there are {n} examples (0..{n - 1})")
    if k > n - 1:
        raise RepresentationError(f"k={k} neighbours asked for, but example {index} has only {n - 1} others; pass "
                                  f"k <= {n - 1}")
    if metric == "euclidean":
        d = (x - x[index]).pow(2).sum(dim=1).sqrt()
    else:
        unit = torch.nn.functional.normalize(x, dim=1)
        d = 1 - unit @ unit[index]
    d[index] = math.inf
    dist, idx = torch.topk(d, k, largest=False)
    return idx.numpy().astype(np.int64), dist.numpy().astype(np.float32)


# ------------------------------------------------------------------------------------------------------------------
# a set of representations: (epoch, layer) -> features
class Representations:
    """Pooled features of a fixed set of examples, per layer and (optionally) per recorded epoch.

    Build one with :meth:`from_model` (now) or let a :class:`RepresentationRecorder` fill one during training.
    Listeners registered with :meth:`subscribe` are called with ``(epoch, layer names)`` after each addition (from
    the thread that added it). Thread-safe.
    """

    @keywords_checked
    def __init__(self, n: int | None = None):
        self.n = None if n is None else check_int(n, "n (the number of examples)", minimum=2,
                                                  error=RepresentationError)
        self._features: dict[tuple[int | None, str], torch.Tensor] = {}
        self._lock = threading.Lock()
        self._listeners = Listeners()

    @classmethod
    def from_model(cls, model: nn.Module, inputs: Any, layers: Iterable[str] | Mapping[str, Selector], **kw: Any
                   ) -> Representations:
        """The layers' features on ``inputs`` now (see :func:`layer_features` for ``pool``, ``batch_size``)."""
        reps = cls()
        reps.add(layer_features(model, inputs, layers, **kw))
        return reps

    @classmethod
    @keywords_checked
    def from_features(cls, features: Mapping[str, Any], epoch: int | None = None) -> Representations:
        """Wrap features you computed yourself: ``{layer: (N, features)}``."""
        reps = cls()
        reps.add(features, epoch)
        return reps

    @keywords_checked
    def add(self, features: Mapping[str, Any], epoch: int | None = None) -> None:
        """Add ``{layer: (N, features)}`` at ``epoch`` (a non-negative int, or None for representations taken once);
        a layer and epoch added again replaces the earlier features."""
        check_mapping(features, "features", "layer name -> (examples, features)", RepresentationError)
        epoch = check_epoch(epoch, "epoch", RepresentationError)
        checked = {}
        for name, value in features.items():
            if not isinstance(name, str):
                raise RepresentationError(f"each layer name must be a string; got {type(name).__name__} {name!r}: "
                                          f"use {str(name)!r}")
            x = as_matrix(value, f"layer {name!r}", dtype=torch.float32)
            if self.n is None:
                self.n = len(x)
            if len(x) != self.n:
                raise RepresentationError(f"layer {name!r} has {len(x)} examples but this set has {self.n}; every "
                                          "layer and epoch must describe the same examples")
            checked[name] = x
        if not checked:
            raise RepresentationError("no layers given: pass {layer name: (N, features)}")
        with self._lock:
            for name, x in checked.items():
                self._features[(epoch, name)] = x
        self._listeners.call(epoch, list(checked))

    def subscribe(self, listener: Callable[[int | None, list[str]], None]) -> Callable[[], None]:
        """Call ``listener(epoch, layers)`` after each addition; returns the function that stops it."""
        return self._listeners.add(listener)

    @property
    def layers(self) -> list[str]:
        with self._lock:
            return list(dict.fromkeys(name for _, name in self._features))

    @property
    def epochs(self) -> list[int]:
        """Recorded epochs, ascending (empty for representations taken once)."""
        with self._lock:
            return sorted({e for e, _ in self._features if e is not None})

    def get(self, layer: str, epoch: int | None = None) -> torch.Tensor:
        """The (N, features) float32 tensor of ``layer`` at ``epoch`` (default: the latest)."""
        epoch = check_epoch(epoch, "epoch", RepresentationError)
        with self._lock:
            if epoch is None and (None, layer) not in self._features:
                epochs = [e for e, name in self._features if name == layer and e is not None]
                epoch = max(epochs) if epochs else None
            found = self._features.get((epoch, layer))
            known = sorted({name for _, name in self._features})
        if found is None:
            where = f" at epoch {epoch}" if epoch is not None else ""
            hint = closest(layer, known) if layer not in known else ""
            raise RepresentationError(f"no features for layer {layer!r}{where}{hint}; recorded layers: {known}, "
                                      f"epochs: {self.epochs or 'none'}")
        return found

    def __len__(self) -> int:
        return self.n or 0


class RepresentationRecorder(RunMember):
    """Records the pooled features of ``layers`` on a fixed set of examples at chosen epochs of training.

    Call :meth:`end_epoch` after each epoch; it records when the epoch is in ``epochs`` (default: every epoch).
    The recorded :attr:`representations` feed :class:`~hiddenwidgets.Projector`, :func:`hiddenwidgets.probe` and
    :func:`hiddenwidgets.similarity.cka_matrix`; a projector showing them updates while training runs.

    ``logdir``: also append each recorded epoch's features to this run directory (created, or shared with the
    other recorders of this process given the same ``logdir``; written on the run writer's thread, durable after
    :meth:`flush`), so that
    ``ActivationMonitor.follow(logdir)`` in a notebook shows them in a projector, live. :meth:`close` (or the end
    of a ``with`` block, or of the process) ends the run with its last recorder. A write error stops the
    recording, never the training (a warning says why, once).
    """

    @keywords_checked
    def __init__(self, model: nn.Module, layers: Iterable[str] | Mapping[str, Selector], inputs: Any, *,
                 epochs: Iterable[int] | None = None, pool: str = "mean", batch_size: int = 256,
                 logdir: Any = None):
        Capture(model, layers)  # checks the names now, with the usual error
        check_choice(pool, "pool", RECORDER_POOLS, RepresentationError,
                     hint="a recorder keeps one row per example" + (" ('tokens' gives one per token)"
                                                                     if pool == "tokens" else ""))
        batch_size = _check_batch_size(batch_size)
        self.model, self.layers, self.inputs = model, layers, inputs
        self.n = _count(inputs)
        if self.n < 2:
            raise RepresentationError("inputs holds 1 example; a representation needs at least 2 (examples are "
                                      "compared with each other)")
        self.schedule = None if epochs is None else set(check_epochs(epochs, "epochs", RepresentationError))
        self.pool, self.batch_size = pool, batch_size
        self.representations = Representations(self.n)
        self._epoch = -1
        self.run_writer = None
        if logdir is not None:
            self._join_run(logdir, "representations", {"n": self.n, "pool": pool, "schedule":
                                                       None if self.schedule is None else sorted(self.schedule)}, {})

    def end_epoch(self, epoch: int | None = None) -> bool:
        """Record now if ``epoch`` (default: one more than the last) is scheduled; returns whether it recorded."""
        epoch = check_epoch(epoch, "epoch", RepresentationError)
        self._epoch = self._epoch + 1 if epoch is None else epoch
        if self.schedule is not None and self._epoch not in self.schedule:
            return False
        feats = layer_features(self.model, self.inputs, self.layers, pool=self.pool, batch_size=self.batch_size)
        self.representations.add(feats, self._epoch)
        if self.run_writer is not None:
            names = list(feats)
            self.run_writer.submit("representations", {"what": "epoch", "epoch": self._epoch, "layers": names},
                                   {f"feat:{name}": self.representations.get(name, self._epoch).numpy()
                                    for name in names})
        return True


def apply_representation_record(reps: Representations | None, meta: dict[str, Any],
                                arrays: Mapping[str, np.ndarray]) -> Representations | None:
    """Apply one ``representations`` record of a run directory (a :class:`RepresentationRecorder` of another
    process) to ``reps`` (None before its first record): the same features, number for number. Returns it."""
    if meta.get("what") == "start":
        return reps if reps is not None else Representations(int(meta["n"]))
    if meta.get("what") == "epoch":
        reps = reps if reps is not None else Representations()
        reps.add({name: torch.from_numpy(np.array(arrays[f"feat:{name}"])) for name in meta["layers"]},
                 int(meta["epoch"]))
    return reps


def probe(source: Any, data: Any = None, labels: Any = None, *, layers: Iterable[str] | None = None,
          pool: str = "mean", batch_size: int = 256, **options: Any) -> list:
    """Linear probes (:func:`hiddenwidgets.probes.linear_probe`, with the Hewitt & Liang control task) per layer.

    - ``probe(model, inputs, labels, layers=[...])``: the layers' pooled features on ``inputs`` now.
    - ``probe(representations, labels)``: every layer at every recorded epoch (results carry ``epoch``), or a
      dict ``{layer: (N, features)}``.

    ``options`` go to the probe (``groups``, ``control``, ``test_fraction``, ``l2``, ``seed``, ``max_classes``,
    ``progress``...). Returns a list of :class:`~hiddenwidgets.probes.ProbeResult`, one per layer (and epoch); show
    them with :class:`~hiddenwidgets.ProbeChart`. ``layers`` may be one name (a string), as in
    :class:`~hiddenwidgets.Capture`.
    """
    from .probes import PROBE_OPTIONS, probe_layers

    check_keywords("probe()", options, ["layers", "pool", "batch_size", *PROBE_OPTIONS])
    if isinstance(layers, str):
        layers = [layers]
    if isinstance(source, (Representations, Mapping)):
        if "epoch" in options:
            raise TypeError("probe(representations, labels) takes each result's epoch from the representations; "
                            "drop epoch= (it is for probe(model, inputs, labels, layers=...))")
        labels = data if labels is None else labels
        reps = source if isinstance(source, Representations) else Representations.from_features(source)
        names = list(layers) if layers is not None else reps.layers
        epochs = reps.epochs or [None]
        out = []
        with reporter(options.pop("progress", None), "probes", unit="eval", error=RepresentationError) as report:
            for k, epoch in enumerate(epochs):
                feats = {name: reps.get(name, epoch) for name in names}
                # one count over every epoch: each epoch's probes cost the same at most
                options["progress"] = lambda done, total, k=k: report(k * total + done, len(epochs) * total)
                out.extend(probe_layers(feats, labels, epoch=epoch, **options))
        return out
    if not isinstance(source, nn.Module):
        raise RepresentationError(f"probe takes a model and its inputs, Representations, or {{layer: features}}; "
                                  f"got {type(source).__name__}")
    if layers is None:
        raise RepresentationError("name the layers to probe: probe(model, inputs, labels, layers=[...])")
    if labels is None:
        raise RepresentationError("probe(model, inputs, labels, layers=...) needs labels: one per input")
    return probe_layers(layer_features(source, data, layers, pool=pool, batch_size=batch_size), labels, **options)
