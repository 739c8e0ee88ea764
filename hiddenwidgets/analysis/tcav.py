"""Testing with Concept Activation Vectors (TCAV), after Kim et al. (2018), *Interpretability Beyond Feature
Attribution: Quantitative Testing with Concept Activation Vectors (TCAV)*, ICML.

A **concept** is a set of examples (indices into ``inputs``), e.g. the digits drawn with a closed loop. In a layer
``l``:

1. **CAV.** A linear classifier separates the layer's activations on the concept's examples from those on a
   random set of examples. The concept activation vector ``v_C`` is the unit normal of its decision boundary,
   pointing towards the concept. Its held-out accuracy is reported with it: a CAV whose classifier cannot beat
   chance (0.5) points nowhere in particular, and its TCAV scores mean nothing.
2. **Directional derivative.** For class ``k`` and input ``x``, ``S_{C,k,l}(x) = ∇h_l logit_k(x) · v_C``: how the
   class logit changes when the layer's activation moves towards the concept.
3. **TCAV score.** The fraction of class ``k``'s inputs with ``S > 0`` (a derivative of exactly 0 does not count).
4. **Significance.** A score from one CAV can be large by chance. :func:`tcav` trains ``m = random_sets`` CAVs
   of the concept, each against a different random set ``R_1 .. R_m`` (disjoint draws, without replacement, from
   ``random_pool``), and compares them with a random baseline, by one of three tests (two-sided p-values):

   - ``test="derivative"`` (the default): every random set ``R_j`` is itself a "random concept", with CAVs
     against the other ``m - 1`` (``m (m - 1) / 2`` classifiers per layer: the CAV of ``R_i`` against ``R_j`` is
     minus that of ``R_j`` against ``R_i``, the same classifier with the labels swapped). The statistic is a CAV's
     **mean directional derivative** over the class's inputs, ``mean_x S_{C,k,l}(x)`` (the class's mean gradient
     dotted with the CAV), averaged over a concept's CAVs: ``D_C`` for the concept, ``D_j`` for each random
     concept (over its ``m - 1`` CAVs). Under the null the concept set is one more draw like the random sets, and
     ``t = (D_C - mean D) / ((m - 1)/m · sd D · sqrt(1 + 1/m))`` has ``m - 1`` degrees of freedom. Exact when a
     CAV's derivative is ``(z_a - z_b) / r`` with normal ``z`` (a set's mean activation projected on the mean
     gradient, a mean over the set's examples); the ``(m - 1)/m`` undoes the spread a random concept gains from
     being compared with the others but not with itself (derivation in ``_derivative_ttest``).
   - ``test="random-concepts"`` (the default before): the same random concepts, statistic the mean TCAV score,
     ``t = (T_C - mean T) / (sd T · sqrt(1 + 1/m))``, ``m - 1`` degrees of freedom.
   - ``test="paper"`` (Kim et al.'s, as in their code): ``m`` CAVs of one more random set, the random "concept"
     ``R_0``, against the same ``R_1 .. R_m``; the two lists of ``m`` scores are compared by a two-sample t-test
     (``scipy.stats.ttest_ind``, equal variances). It treats the ``m`` scores of each list as independent draws,
     but every concept CAV shares the one concept set and every baseline CAV the one ``R_0``: the variation a
     different concept set (or ``R_0``) would bring is missing from both lists, so a concept that is just another
     random set is declared significant far more often than ``alpha``, the more so the larger ``m``. Read its
     p-values as a screening statistic, not as error rates.

   **Why the derivative.** The TCAV score keeps only the sign of ``S``. When a class's gradients all point the
   same way (a classifier sure of its class), every CAV, random ones too, scores about 0 or 1, and a set's scores
   only say on which side of the other sets it lies along the gradient: a concept scoring 1.000 ± 0.000 ties with
   the random set that lies furthest along it. No test of those scores can then give a p-value below about
   ``1 / (m + 1)`` (0.09 for ``m = 10``) however strong the concept; "random-concepts" gave median p-values of
   0.06-0.14 there, never significant after Bonferroni. The derivative keeps *how far*: a CAV along the gradient
   has a derivative of about ``|mean gradient|``, a random CAV about that over the square root of the layer's
   effective dimension. What a significant result then says: moving along the concept's direction changes the
   class logit more (or less) than moving along random concepts' directions, on average over the class's inputs;
   the sign of ``derivative`` says which way, the TCAV score for how many of the inputs. The t-test assumes each
   set's mean activation along the gradient is roughly normal (it is a mean over the set's examples): with sets
   of a handful of examples of a heavy-tailed layer, its p-values may be too small.

   **Measured** (``python benchmarks/tcav_power.py``, its docstring has the scenarios; seeds 0-39, digits 0-19;
   ``alpha = 0.05``, Bonferroni over every (concept, layer, class) of a run: 21-36 tests; ``m = 10``, in brackets
   ``m = 20`` with ``--m 20``). Size, over 480-960 null tests (concepts drawn like the random sets) per scenario:

   ================== ====================== ===================== ============================
   test               raw p < 0.05           Bonferroni-signif.    runs with a false positive
   ================== ====================== ===================== ============================
   derivative         4.0-5.6% (3.3-3.7%)    0-0.2% (0-0.2%)       0-5% (0-5%)
   random-concepts    0.2-1.5% (0.2-1.0%)    0 (0)                 0 (0)
   paper              20-30% (38-49%)        4.6-11% (19-27%)      53-80% (93-100%)
   ================== ====================== ===================== ============================

   Power (Bonferroni-significant, for the planted class): derivative / random-concepts / paper

   - digits CNN (100% training accuracy), 40 images of 0 as the concept, class 0, score 1.000 ± 0.000, 3 layers:
     100% / 0% / 45-65% (m = 20: 100% / 0% / 60-95%); the derivative's median p 5e-8 to 3e-6;
   - linear model (every input the same gradient, every CAV scoring 0 or 1), concept shifted 3 sd along the
     class's weights, score 1.000 ± 0.000: 85% / 0% / 35% (100% / 0% / 68%); shifted 1 sd: 42% / 0% / 35%
     (90% / 0% / 65%);
   - gradients varying by input (scores 0.99-1.00), shifts of 1 and 3 sd: 35%, 88% / 0%, 0% / 78%, 85%
     (85%, 100% / 0%, 0% / 97%, 100%); a random ReLU MLP, shift of 3 sd along the inputs' mean gradient: 30-35%
     / 0% / 28-78% (50-72% / 0-3% / 50-95%).

   "paper" finds some of these more often, but it also finds null concepts (above). Considered and not taken:
   exact permutation tests (the concept's score or derivative ranked among the ``m + 1`` sets; valid at any
   ``m``, but ``p >= 1 / (m + 1)``, so Bonferroni over ``K`` tests needs ``m + 1 > K / alpha``: 120 random sets
   for 6 tests, 1,800 for 3 concepts x 3 layers x 10 classes; measured: no Bonferroni-significant result at
   ``m = 10`` or 20); a "tie-aware" decision for scores of 1.0 (the permutation test is its exact form, with the
   same floor); Kim et al.'s test with a correction for the shared concept set (the missing variance is between
   concept sets, which one concept set and one ``R_0`` cannot estimate; estimating it takes random concepts, and
   comparing with one ``R_0`` instead of their mean then only adds variance); the derivative t without the
   ``(m - 1)/m`` (valid, but 3.1% raw size and less power).

   **m.** ``random_sets=20`` gives the t-test 19 degrees of freedom instead of 9 and roughly doubles the power
   for moderate effects (above, in brackets), at about 3 times the time (``m (m - 1) / 2`` random CAVs per layer:
   ``python benchmarks/concepts.py --no-browser``, figures ``tcav_3x3x10`` and ``tcav_3x3x20``) and twice the
   random pool. The default stays 10: it finds the strong effects (the issue's case) at a third of the
   cost; pass 20 for moderate effects or many tests.

Details:

- Features are the layer output flattened (``pool="flatten"``, the paper's choice) or its channel (token) means
  (``pool="mean"`` for conv (N, C, H, W) and sequence (N, T, D) layers). For ``"mean"``, the derivative is taken
  with respect to the channel means with the within-channel pattern held fixed (every position of channel ``c``
  moves by ``v_c``): the gradient summed over positions, dotted with ``v``. (N, D) layers are the same either way.
- The classifier is binary logistic regression, ``mean_i log(1 + exp(-s_i (w·x_i + b))) + l2/2 ||w||²`` (bias not
  penalised; scikit-learn's ``LogisticRegression(C=1 / (l2 · n_train))``), solved by Newton's method in the span of
  the training examples (where the minimiser lies; at most as many dimensions as examples, however wide the
  layer), on activations centred by their training mean and divided by **one** scalar, their root-mean-square, so
  that ``l2`` means the same in every layer while the CAV stays a direction in the layer's own geometry
  (per-feature standardisation would bend it). Wide layers usually separate any two sets of examples, so ``l2``
  must be > 0 for the CAV to be unique; larger ``l2`` moves it towards the difference of the two sets' means.
- Each side is split at random into training and held-out examples (a quarter held out, at least one), so every
  concept and random set needs at least ``MIN_EXAMPLES`` = 5 examples. ``accuracy`` is the *balanced* held-out
  accuracy (mean of the two sides' accuracies): 0.5 is chance whatever the set sizes.
- Multiple comparisons: every (concept, layer, class) is one test. With ``correction="bonferroni"`` (default)
  a result is significant when ``p · K < alpha``, ``K`` the number of tests; ``p_value`` is the raw p-value and
  ``p_corrected`` is ``min(1, p · K)``. ``correction=None`` compares the raw p-value with ``alpha``. When the
  t statistic is undefined (no variance in either list) ``p_value`` is 1 if the means are equal and 0 otherwise.
- Gradients are per example only if examples do not interact in the forward pass: the model runs in eval mode
  (batch norm uses its running statistics). Every module's mode and every parameter's ``requires_grad`` are
  restored afterwards, parameters' ``.grad`` is left alone (``torch.autograd.grad``), and the temporary hooks come
  off, also on errors.

Cost: one forward pass (no gradients) over the concept and random examples for all layers together, one
forward and one backward pass per tested class (all layers at once) over that class's examples; after that every
CAV is a small logistic regression and every TCAV score and mean derivative is a matrix product and a sign count
or a mean. Memory: the
activations of the concept and random examples and the gradients of the tested examples, float32, in the pooled
feature space (``pool="flatten"`` on a wide conv layer is large: examples x C x H x W x 4 bytes).

Why not ``captum.concept.TCAV``: Captum trains CAVs with scikit-learn's ``SGDClassifier`` and stores CAVs and
activations as files in a folder (``./cav/`` by default) keyed by concept and layer, which it reads back on the
next call. Here concepts are index sets into examples held in memory and TCAV is recomputed after each epoch of
training, when yesterday's CAV files would be stale; scikit-learn is not a dependency of hiddenwidgets.
"""

from __future__ import annotations

import contextlib
import math
import threading
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .._optional import require
from ..pipeline.capture import CaptureError
from ..pipeline.concepts import ConceptError
from ..pipeline.model_state import evaluation_mode, model_for_work
from ..pipeline.progress import check_progress, reporter
from ..pipeline.summaries import units_of
from .interventions import (
    check_batch_size,
    check_inputs,
    edit_outputs,
    logits_of,
    model_device,
    pooled_gradient,
    resolve_layer,
)
from .matrices import RepresentationError, as_labels
from .representations import layer_features

__all__ = ["CAV", "MIN_EXAMPLES", "ConceptError", "TCAVResult", "cav", "directional_derivatives", "tcav", "watch"]

MIN_EXAMPLES = 5  # per side of a CAV's classifier: 4 to train on and 1 held out, at the least
TEST_FRACTION = 0.25
MAX_ITER = 50  # Newton steps; a handful suffice
POOLS = ("flatten", "mean")
CORRECTIONS = ("bonferroni", None)


# -- who is told that a TCAV computation is running (a view shows it as busy; see ConceptScores) ----------------
_watchers: list[Any] = []  # weak references to callbacks
_watch_lock = threading.Lock()


def watch(callback: Callable[[dict[str, Any]], Any]) -> Callable[[], None]:
    """Call ``callback(event)`` about every :func:`tcav` computation in this process, from the thread that runs it.

    Events: ``{"state": "running", "done": int, "total": int, ...}`` when one starts and as it progresses (after
    each pass over the model and each CAV fitted); then ``{"state": "finished", ...}`` or ``{"state": "failed",
    "error": "<type>: <message>", ...}``. Each also carries ``epoch``, ``concepts`` and ``layers`` of the call.
    A bound method is held weakly (its object is not kept alive by this). A callback that raises is ignored: it
    never stops TCAV. Returns the function that stops the calls.
    """
    if not callable(callback):
        raise TypeError(f"watch needs a callable callback(event); got {type(callback).__name__}")
    try:  # a Python bound method: held weakly; anything else (a function, a builtin's method): held as it is
        ref: Any = weakref.WeakMethod(callback)  # type: ignore[arg-type]
    except TypeError:
        ref = lambda: callback  # noqa: E731
    with _watch_lock:
        _watchers.append(ref)

    def stop() -> None:
        with _watch_lock:
            if ref in _watchers:
                _watchers.remove(ref)

    return stop


class _Announced:
    """Tells the watchers (see :func:`watch`) that a computation runs, how far it is, and how it ended."""

    def __init__(self, total: int, **about: Any):
        self.about = {"total": total, **about}

    def _tell(self, **event: Any) -> None:
        with _watch_lock:
            refs = list(_watchers)
        for ref in refs:
            callback = ref()
            if callback is None:
                with _watch_lock:
                    if ref in _watchers:
                        _watchers.remove(ref)
                continue
            with contextlib.suppress(Exception):  # a view's trouble never stops the computation
                callback({**self.about, **event})

    def progress(self, done: int) -> None:
        self._tell(state="running", done=done)

    def __enter__(self) -> _Announced:
        self.progress(0)
        return self

    def __exit__(self, kind: Any, error: Any, tb: Any) -> None:
        if error is None:
            self._tell(state="finished", done=self.about["total"])
        else:
            self._tell(state="failed", error=f"{type(error).__name__}: {error}".rstrip(": "))


@dataclass(frozen=True, eq=False)
class CAV:
    """A concept activation vector: the unit normal (float32, pooled feature space of ``layer``) of a linear
    classifier separating the concept's activations from a random set's, pointing towards the concept.

    ``accuracy`` is the classifier's balanced held-out accuracy (0.5 is chance); ``n_concept`` and ``n_random``
    the sizes of the two sides.
    """

    layer: str
    concept: str
    vector: torch.Tensor
    accuracy: float
    pool: str
    n_concept: int
    n_random: int
    selector: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "concept": self.concept, "vector": self.vector.tolist(),
                "accuracy": self.accuracy, "pool": self.pool, "n_concept": self.n_concept,
                "n_random": self.n_random}


# ------------------------------------------------------------------------------------------------------------------
# input checks
def _indices(value: Any, n: int, what: str, minimum: int = 1) -> np.ndarray:
    """Example indices (1-D int64, in the given order) from ints or a boolean mask over the ``n`` inputs."""
    if value is None:
        raise ConceptError(f"{what} is None; pass example indices into inputs (ints, or a boolean mask of length {n})")
    arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if arr.ndim != 1:
        raise ConceptError(f"{what} must be a 1-D list of example indices into inputs; got shape {arr.shape}")
    if arr.dtype == bool:
        if len(arr) != n:
            raise ConceptError(f"{what} is a boolean mask of length {len(arr)} but there are {n} inputs; pass one "
                               "flag per input, or example indices")
        arr = np.flatnonzero(arr)
    elif len(arr) and arr.dtype.kind not in "iu":
        raise ConceptError(f"{what} must hold integer example indices into inputs; got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if len(arr) == 0:
        raise ConceptError(f"{what} is empty; give it at least {minimum} example indices into inputs")
    bad = arr[(arr < 0) | (arr >= n)]
    if len(bad):
        raise ConceptError(f"{what} has index {bad[0]}, out of range: there are {n} inputs (indices 0..{n - 1})")
    uniq, counts = np.unique(arr, return_counts=True)
    if (counts > 1).any():
        raise ConceptError(f"{what} lists example {uniq[counts > 1][0]} more than once; list each example once")
    if len(arr) < minimum:
        raise ConceptError(f"{what} has {len(arr)} example(s); a CAV needs at least {minimum} per side "
                           f"({minimum - 1} to train on, 1 held out to measure its accuracy): add examples")
    return arr


def _layer_specs(model: nn.Module, layers: Any) -> dict[str, Any]:
    if isinstance(layers, str):
        specs: dict[str, Any] = {layers: None}
    elif isinstance(layers, Mapping):
        specs = dict(layers)
    elif isinstance(layers, Iterable):
        specs = dict.fromkeys(layers)
    else:
        raise ConceptError(f"layers must be a module name, a list of names, or a mapping name -> selector; got "
                           f"{type(layers).__name__}")
    if not specs:
        raise ConceptError("layers is empty: name at least one layer from model.named_modules()")
    for name in specs:
        resolve_layer(model, name, ConceptError)
    return specs


def _check_pool(pool: Any) -> str:
    if pool not in POOLS:
        raise ConceptError(f"pool must be one of {POOLS} for TCAV; got {pool!r} (the directional derivative needs "
                           "a feature space it can differentiate in: every unit, or channel means)")
    return pool


def _check_l2(l2: Any) -> float:
    try:
        l2 = float(l2)
    except (TypeError, ValueError):
        raise ConceptError(f"l2 must be a number > 0; got {l2!r}: try 1e-2") from None
    if not (math.isfinite(l2) and l2 > 0):
        raise ConceptError(f"l2 must be a finite number > 0 (wide layers usually separate a concept perfectly, and "
                           f"only the penalty then makes the CAV unique); got {l2}: try 1e-2")
    return l2


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConceptError(f"seed must be a non-negative int; got {seed!r}")
    return int(seed)


# ------------------------------------------------------------------------------------------------------------------
# activations and gradients
def _activations(model: nn.Module, inputs: torch.Tensor, idx: np.ndarray, specs: dict[str, Any], pool: str,
                 batch_size: int) -> dict[str, torch.Tensor]:
    """{layer: (len(idx), features) float32 CPU} for the inputs at ``idx``: :func:`~hiddenwidgets.layer_features`
    (one no-grad pass for all layers, copies of the outputs), with its errors as ConceptError."""
    try:
        return layer_features(model, inputs[torch.as_tensor(idx)], specs, pool=pool, batch_size=batch_size)
    except (RepresentationError, CaptureError) as err:
        raise ConceptError(str(err)) from None


def _gradients(model: nn.Module, inputs: torch.Tensor, idx: np.ndarray, targets: list[int] | None,
               specs: dict[str, Any], pool: str, batch_size: int) -> dict[int, dict[str, torch.Tensor]]:
    """{class: {layer: (len(idx), features) float32 CPU}}: gradients of each class logit with respect to each
    layer's pooled features; one forward pass per batch and one backward pass per class and batch, all layers
    together.

    ``targets=None``: every class the model outputs.
    """
    names = list(specs)
    leaves: dict[str, torch.Tensor] = {}
    axes: dict[str, int | None] = {}  # each layer's unit axis, decided as layer_features decides it
    modules = dict(model.named_modules())

    def tap(name: str, h: torch.Tensor) -> torch.Tensor:
        if name in leaves:
            raise ConceptError(f"layer {name!r} ran twice in one forward pass; TCAV needs a layer the model calls once")
        if pool == "mean" and h.ndim >= 3 and name not in axes:
            axes[name] = units_of(h, modules.get(name), model=model)[0]
        # A tensor no parameter or input upstream requires grad for becomes a leaf; either way the model receives a
        # copy, so an in-place op after the layer (ReLU(inplace=True)) cannot change the tensor we differentiate by.
        src = h if h.requires_grad else h.detach().requires_grad_(True)
        leaves[name] = src
        return src.clone()

    out: dict[int, dict[str, list[torch.Tensor]]] = {}
    device = model_device(model)
    with edit_outputs(model, specs, tap, ConceptError), torch.enable_grad():
        for start in range(0, len(idx), batch_size):
            leaves.clear()
            logits = logits_of(model(inputs[torch.as_tensor(idx[start:start + batch_size])].to(device)), ConceptError)
            missing = [name for name in names if name not in leaves]
            if missing:
                raise ConceptError(f"layer(s) {missing} did not run in the forward pass; choose layers the model calls")
            classes = logits.shape[1]
            if targets is None:
                targets = list(range(classes))
            bad = [k for k in targets if not 0 <= k < classes]
            if bad:
                raise ConceptError(f"target class {bad[0]} is out of range: the model outputs {classes} classes "
                                   f"(valid targets 0..{classes - 1})")
            if not logits.requires_grad:
                raise ConceptError("the model's logits carry no gradient from the layer(s); does the model detach its "
                                   "output or run under torch.no_grad()?")
            for j, k in enumerate(targets):
                grads = torch.autograd.grad(logits[:, k].sum(), [leaves[n] for n in names],
                                            retain_graph=j < len(targets) - 1, allow_unused=True)
                for name, g in zip(names, grads, strict=True):
                    if g is None:
                        raise ConceptError(f"logit {k} does not depend on layer {name!r}; choose a layer on the path "
                                           "from the input to the output")
                    row = pooled_gradient(g, pool, ConceptError, name, axes.get(name)).to("cpu", torch.float32)
                    out.setdefault(k, {}).setdefault(name, []).append(row)
    return {k: {name: torch.cat(parts) for name, parts in per.items()} for k, per in out.items()}


# ------------------------------------------------------------------------------------------------------------------
# the classifier
def _split(n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    n_test = max(1, round(TEST_FRACTION * n))
    perm = torch.as_tensor(rng.permutation(n))
    return perm[n_test:], perm[:n_test]


def _fit_binary_logistic(x: torch.Tensor, y: torch.Tensor, l2: float, max_iter: int = MAX_ITER,
                         tol: float = 1e-12) -> tuple[torch.Tensor, float]:
    """(w, b) minimising ``mean_i log(1 + exp(-s_i (w·x_i + b))) + l2/2 ||w||²``, ``s_i = ±1`` for ``y_i = 1 / 0``.

    Newton's method with backtracking (Armijo) line search, in float64. When there are more features than
    examples the minimiser lies in the span of the examples (the gradient of every term does), so the problem is
    solved in an orthonormal basis of that span (of dimension at most the number of examples) and mapped back.
    Stops (after one last full step) when half the squared Newton decrement, the predicted decrease of the
    objective, is below ``tol``.
    """
    x = x.double()
    n, f = x.shape
    basis = None
    if f > n:  # orthonormal basis of the examples' span from the eigenvectors of the (n, n) Gram matrix
        evals, evecs = torch.linalg.eigh(x @ x.T)
        keep = evals > evals[-1] * 1e-12  # singular values above 1e-6 of the largest
        root = evals[keep].sqrt()
        basis = (x.T @ evecs[:, keep]) / root  # (F, r)
        x = evecs[:, keep] * root  # the examples' coordinates in that basis
    r = x.shape[1]
    xa = torch.cat([x, torch.ones(n, 1, dtype=x.dtype)], dim=1)  # bias as the last coordinate
    sign = y.double() * 2 - 1
    reg = torch.full((r + 1,), l2, dtype=x.dtype)
    reg[-1] = 0.0  # the bias is not penalised

    def objective(theta: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.softplus(-sign * (xa @ theta)).mean() + 0.5 * l2 * theta[:-1].pow(2).sum()

    theta = torch.zeros(r + 1, dtype=x.dtype)
    value = objective(theta)
    for _ in range(max_iter):
        wrong = torch.sigmoid(-sign * (xa @ theta))  # probability given to the other side
        grad = -(xa.T @ (sign * wrong)) / n + reg * theta
        hess = (xa.T * (wrong * (1 - wrong))) @ xa / n + torch.diag(reg)
        hess[-1, -1] += 1e-12  # keeps the bias row invertible if every example is classified with certainty
        step = torch.linalg.solve(hess, -grad)
        slope = float(grad @ step)
        if -slope / 2 < tol:  # converged: one last full step is free and squares the remaining error
            theta = theta + step
            break
        t = 1.0
        while True:
            candidate = objective(theta + t * step)
            if candidate <= value + 0.25 * t * slope or t < 1e-10:
                break
            t /= 2
        theta, value = theta + t * step, candidate
    w = theta[:-1] if basis is None else basis @ theta[:-1]
    return w, float(theta[-1])


def _train_cav(pos: torch.Tensor, neg: torch.Tensor, l2: float, rng: np.random.Generator,
               what: str) -> tuple[torch.Tensor, float]:
    """(unit normal pointing towards ``pos``, balanced held-out accuracy) of a logistic regression pos vs neg."""
    pos, neg = pos.double(), neg.double()
    ptr, pte = _split(len(pos), rng)
    ntr, nte = _split(len(neg), rng)
    x = torch.cat([pos[ptr], neg[ntr]])
    y = torch.cat([torch.ones(len(ptr)), torch.zeros(len(ntr))])
    mean = x.mean(dim=0)
    scale = (x - mean).pow(2).mean().sqrt()
    if not scale > 0:
        raise ConceptError(f"{what}: the layer's activations are identical on every training example (a dead "
                           "layer?), so no direction separates them; choose another layer")
    normal, bias = _fit_binary_logistic((x - mean) / scale, y, l2)
    norm = torch.linalg.vector_norm(normal)
    if not norm > 0:
        raise ConceptError(f"{what}: the classifier's weights are all zero; lower l2 (e.g. 1e-3)")

    def says_concept(h: torch.Tensor) -> torch.Tensor:
        return ((h - mean) / scale) @ normal + bias > 0

    accuracy = 0.5 * (says_concept(pos[pte]).double().mean() + (~says_concept(neg[nte])).double().mean())
    return normal / norm, float(accuracy)


def cav(model: nn.Module, inputs: torch.Tensor, concept: Any, random: Any, layer: str, *, pool: str = "flatten",
        l2: float = 1e-2, seed: int = 0, name: str = "concept", selector: int | str | None = None,
        batch_size: int = 256) -> CAV:
    """The CAV of one concept against one random set in ``layer``.

    Parameters
    ----------
    model
        the network (only read; its modes and ``requires_grad`` are restored).
    inputs
        tensor of all examples (N, ...).
    concept, random
        example indices into ``inputs`` (ints or a boolean mask), at least ``MIN_EXAMPLES`` each.
    layer
        a module name from ``model.named_modules()``; ``selector`` picks the tensor of a tuple output.
    pool
        "flatten" or "mean" (see the module docstring).
    l2
        L2 penalty of the logistic regression (on activations scaled to unit root-mean-square).
    seed
        fixes the train / held-out split.
    name
        the concept's name, carried into the CAV.

    Raises
    ------
    ConceptError
        unknown layer, bad indices, too few examples, bad options.
    """
    model = model_for_work(model)  # a copy of the weights while another thread trains the model
    check_inputs(inputs, ConceptError)
    specs = _layer_specs(model, {layer: selector} if isinstance(layer, str) else layer)
    if len(specs) != 1:
        raise ConceptError(f"cav trains on one layer; got {list(specs)}: use tcav for several")
    pool, l2, seed = _check_pool(pool), _check_l2(l2), _check_seed(seed)
    batch_size = check_batch_size(batch_size, ConceptError)
    n = len(inputs)
    pos = _indices(concept, n, f"concept {name!r}", MIN_EXAMPLES)
    neg = _indices(random, n, "the random set", MIN_EXAMPLES)
    needed = np.unique(np.concatenate([pos, neg]))
    with evaluation_mode(model):
        acts = _activations(model, inputs, needed, specs, pool, batch_size)
    (layer_name, x), = acts.items()
    rows = torch.as_tensor(np.searchsorted(needed, pos)), torch.as_tensor(np.searchsorted(needed, neg))
    v, acc = _train_cav(x[rows[0]], x[rows[1]], l2, np.random.default_rng([seed, 1]),
                        f"concept {name!r} in layer {layer_name!r}")
    return CAV(layer=layer_name, concept=name, vector=v.float(), accuracy=acc, pool=pool, n_concept=len(pos),
               n_random=len(neg), selector=specs[layer_name])


def directional_derivatives(model: nn.Module, inputs: torch.Tensor, cav: CAV, target: int, *,
                            batch_size: int = 256) -> torch.Tensor:
    """``S(x) = ∇h logit_target(x) · cav.vector`` for every input: a float64 CPU tensor (N,).

    The TCAV score of ``cav`` for class ``target`` on these inputs is ``(S > 0).float().mean()``.
    """
    model = model_for_work(model)  # a copy of the weights while another thread trains the model
    check_inputs(inputs, ConceptError)
    if not isinstance(cav, CAV):
        raise ConceptError(f"cav must be a CAV (from hiddenwidgets.tcav.cav); got {type(cav).__name__}")
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)):
        raise ConceptError(f"target must be a class index (int); got {target!r}")
    specs = _layer_specs(model, {cav.layer: cav.selector})
    batch_size = check_batch_size(batch_size, ConceptError)
    with evaluation_mode(model):
        grads = _gradients(model, inputs, np.arange(len(inputs)), [int(target)], specs, cav.pool, batch_size)
    g = grads[int(target)][cav.layer]
    if g.shape[1] != cav.vector.numel():
        raise ConceptError(f"the CAV has {cav.vector.numel()} entries but layer {cav.layer!r} gives {g.shape[1]} "
                           f"features with pool={cav.pool!r}; was the CAV trained on another model?")
    return g.double() @ cav.vector.double()


# ------------------------------------------------------------------------------------------------------------------
# the test
def _ttest(a: Any, b: Any) -> float:
    """Two-sided p-value of Student's two-sample t-test (equal variances); see the module docstring for ties."""
    from scipy import stats

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return 1.0 if a[0] == b[0] else 0.0
    with warnings.catch_warnings():  # scipy warns about a constant list ("catastrophic cancellation"); var is 0
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_ind(a, b).pvalue)


def _new_observation_ttest(value: float, sample: Any) -> float:
    """Two-sided p-value of ``value`` as one more draw from the normal population ``sample`` came from:
    ``t = (value - mean) / (sd · sqrt(1 + 1/m))`` with ``m - 1`` degrees of freedom (sd with ddof=1)."""
    from scipy import stats

    sample = np.asarray(sample, dtype=np.float64)
    m = len(sample)
    sd = float(sample.std(ddof=1))
    if sd == 0:
        return 1.0 if value == sample[0] else 0.0
    t = (value - sample.mean()) / (sd * math.sqrt(1 + 1 / m))
    return float(2 * stats.t.sf(abs(t), m - 1))


def _derivative_ttest(value: float, sample: Any) -> float:
    """Two-sided p-value of the concept's mean directional derivative ``value`` against the ``m`` random concepts'
    ``sample`` (each random set's mean derivative against the other ``m - 1``), ``m - 1`` degrees of freedom:
    ``t = (value - mean) / ((m - 1) / m · sd · sqrt(1 + 1/m))`` (sd with ddof=1).

    Why ``(m - 1) / m``: if the derivative of the CAV of set ``a`` against set ``b`` is ``(z_a - z_b) / r`` (``z_a``
    the projection of set ``a``'s mean activation on the class's mean gradient, ``r`` the distance the unit CAV
    normalises away), a random concept's mean derivative is ``m / (m - 1) · (z_j - mean z) / r`` (its own ``z_j``
    is missing from the mean it is compared with) while the concept's is ``(z_C - mean z) / r``. Scaled back, the
    statistic is the t of one new normal draw ``z_C`` against ``z_1 .. z_m``: exactly Student's t with ``m - 1``
    degrees of freedom under the null when the ``z`` are normal (means of a set's examples).
    """
    from scipy import stats

    sample = np.asarray(sample, dtype=np.float64)
    m = len(sample)
    sd = float(sample.std(ddof=1))
    if sd == 0:
        return 1.0 if value == sample[0] else 0.0
    t = (value - sample.mean()) / ((m - 1) / m * sd * math.sqrt(1 + 1 / m))
    return float(2 * stats.t.sf(abs(t), m - 1))


@dataclass
class TCAVResult:
    """TCAV scores per (concept, layer, target class) with the random baseline and its test.

    ``cavs[(concept, layer)]``: the concept's CAVs, one per random set ``R_1 .. R_m``. ``random_cavs[layer]``: the
    baseline's: ``R_0`` against each ``R_i`` (``test="paper"``), or each ``R_j`` against every other ``R_i``, in
    the order (j, i) (``"derivative"``, ``"random-concepts"``). ``scores[(concept, layer, target)]``: the TCAV
    score of each of the concept's CAVs; ``random_scores[(layer, target)]``: the score of each baseline CAV
    ("paper") or each random concept's mean score (``"derivative"``, ``"random-concepts"``). ``derivatives`` and
    ``random_derivatives``: the same for the mean directional derivative over the class's inputs,
    ``mean_x S_{C,k,l}(x)``, stored whatever the test. ``random_sets_drawn``: the random sets' example indices.
    """

    rows: list[dict[str, Any]]
    cavs: dict[tuple[str, str], list[CAV]]
    random_cavs: dict[str, list[CAV]]
    scores: dict[tuple[str, str, int], np.ndarray]
    random_scores: dict[tuple[str, int], np.ndarray]
    test: str
    alpha: float
    correction: str | None
    set_size: int
    random_sets: int
    pool: str
    epoch: int | None = None
    random_sets_drawn: list[np.ndarray] = field(default_factory=list, repr=False)
    derivatives: dict[tuple[str, str, int], np.ndarray] = field(default_factory=dict, repr=False)
    random_derivatives: dict[tuple[str, int], np.ndarray] = field(default_factory=dict, repr=False)

    def records(self) -> list[dict[str, Any]]:
        """One dict per (concept, layer, target): concept, layer, target, score (mean over the concept's CAVs),
        score_std, random_score and random_std (mean and standard deviation of ``random_scores``; standard
        deviations with ddof=1), derivative, derivative_std, random_derivative and random_derivative_std (the same
        for the mean directional derivatives), test, p_value, p_corrected, significant, cav_accuracy (mean held-out
        accuracy of the concept's CAVs), random_accuracy (the same for the baseline's CAVs), examples (inputs of the
        target class), epoch.
        """
        return [dict(row) for row in self.rows]

    def to_dataframe(self) -> Any:
        """:meth:`records` as a pandas DataFrame (needs pandas)."""
        return require("pandas", "TCAVResult.to_dataframe (or use records())").DataFrame(self.records())


def _check_targets(targets: Any) -> list[int] | None:
    if targets is None:
        return None
    arr = targets.detach().cpu().numpy() if isinstance(targets, torch.Tensor) else np.asarray(targets)
    arr = arr.reshape(-1)
    if len(arr) == 0 or arr.dtype.kind not in "iu":
        raise ConceptError(f"targets must be one or more class indices (ints); got {targets!r}")
    if (arr < 0).any():
        raise ConceptError(f"target classes are indices >= 0; got {arr[arr < 0][0]}")
    if len(np.unique(arr)) != len(arr):
        raise ConceptError(f"targets lists a class more than once: {arr.tolist()}")
    return [int(k) for k in arr]


def _random_sets(pool_idx: np.ndarray, draws: int, random_sets: int, set_size: Any, largest: int, paper: bool,
                 seed: int) -> list[np.ndarray]:
    """``draws`` disjoint random sets from ``pool_idx`` (see :func:`tcav` for the default size)."""
    what = (f"{draws} disjoint random sets ({random_sets} random_sets and 1 random 'concept' for the baseline)"
            if paper else f"{draws} disjoint random sets")
    fits = len(pool_idx) // draws
    hints = [f"set_size={fits} or less"] if fits >= MIN_EXAMPLES and set_size is not None else []
    most = len(pool_idx) // max(MIN_EXAMPLES, set_size or 0) - (1 if paper else 0)  # random_sets that would fit
    if 2 <= most < random_sets:
        hints.append(f"random_sets={most} or fewer")
    hint = ", ".join([*hints, "a larger random_pool"])
    if set_size is None:
        size = min(largest, fits)
        if size < MIN_EXAMPLES:
            raise ConceptError(f"the random pool has {len(pool_idx)} examples: too few for {what} of at least "
                               f"{MIN_EXAMPLES} each; pass {hint}")
    else:
        if isinstance(set_size, bool) or not isinstance(set_size, (int, np.integer)) or set_size < MIN_EXAMPLES:
            raise ConceptError(f"set_size must be an int >= {MIN_EXAMPLES} (a CAV needs {MIN_EXAMPLES - 1} examples "
                               f"to train on and 1 held out per side); got {set_size!r}")
        size = int(set_size)
        if draws * size > len(pool_idx):
            raise ConceptError(f"{what} of {size} examples need {draws * size} random examples; the pool has "
                               f"{len(pool_idx)}: pass {hint}")
    order = np.random.default_rng([seed, 0]).permutation(pool_idx)
    return [np.sort(order[i * size:(i + 1) * size]) for i in range(draws)]


TESTS = ("derivative", "random-concepts", "paper")


def tcav(model: nn.Module, inputs: torch.Tensor, concepts: Mapping[str, Any], layers: Any, *, labels: Any = None,
         targets: Any = None, class_examples: Any = None, random_sets: int = 10, random_pool: Any = None,
         set_size: int | None = None, pool: str = "flatten", test: str = "derivative", alpha: float = 0.05,
         correction: str | None = "bonferroni", l2: float = 1e-2, seed: int = 0, batch_size: int = 256,
         epoch: int | None = None, progress: Any = None) -> TCAVResult:
    """TCAV of each concept in each layer for each target class, tested against random CAVs.

    Parameters
    ----------
    model
        a classifier returning logits (N, classes); only read, and left as found.
    inputs
        tensor of all examples (N, ...); every set below indexes into it.
    concepts
        ``{name: example indices (or boolean mask)}``, at least ``MIN_EXAMPLES`` examples each.
    layers
        a module name, a list of names, or a mapping name -> selector for tuple outputs.
    labels
        class index per input; class ``k`` is tested on the inputs labelled ``k``. Needed unless
        ``class_examples`` is given.
    targets
        classes to test (default: every class present in ``labels``, or every class the model outputs
        when ``class_examples`` is given).
    class_examples
        indices of the inputs every class is tested on (instead of each class's own inputs).
    random_sets
        number ``m`` of random sets ``R_1 .. R_m`` (CAVs per concept), at least 2.
    random_pool
        indices the random sets are drawn from (default: every input in no concept). The sets are
        disjoint: the pool must hold ``(m + 1) · set_size`` examples for ``test="paper"`` (one more set, the
        random "concept" ``R_0``), ``m · set_size`` otherwise.
    set_size
        examples per random set (default: the largest concept's size, reduced to what the pool holds).
    pool
        "flatten" (default, the paper) or "mean" (channel / token means); see the module docstring.
    test
        "derivative" (default: the concept's mean directional derivative against random concepts'),
        "random-concepts" (its TCAV score against random concepts') or "paper" (Kim et al.'s two-sample
        t-test of TCAV scores); see the module docstring for what each controls and misses.
    alpha
        significance level; correction: "bonferroni" (default) or None.
    l2
        L2 penalty of the CAV classifiers. seed: fixes the random sets and the train / held-out splits.
    batch_size
        examples per forward pass. epoch: carried into the result and its records.
    progress
        None (default): a progress bar if the test lasts over a second; True: a bar; False: silent; or
        ``progress(done, total)`` called after each pass over the model and each CAV fitted.

    Raises
    ------
    ConceptError
        empty or too small concepts, indices out of range, unknown layers, too few random examples,
        missing labels, bad options.
    """
    check_progress(progress, "progress", ConceptError)
    model = model_for_work(model)  # a copy of the weights while another thread trains the model
    check_inputs(inputs, ConceptError)
    n = len(inputs)
    if not isinstance(concepts, Mapping) or not concepts:
        raise ConceptError("concepts must be a non-empty dict {name: example indices}; got "
                           + (type(concepts).__name__ if not isinstance(concepts, Mapping) else "an empty dict"))
    members = {str(name): _indices(idx, n, f"concept {name!r}", MIN_EXAMPLES) for name, idx in concepts.items()}
    specs = _layer_specs(model, layers)
    pool, l2, seed = _check_pool(pool), _check_l2(l2), _check_seed(seed)
    batch_size = check_batch_size(batch_size, ConceptError)
    if isinstance(random_sets, bool) or not isinstance(random_sets, (int, np.integer)) or random_sets < 2:
        raise ConceptError(f"random_sets must be an int >= 2 (the test compares lists of scores); got "
                           f"{random_sets!r}: try 10")
    m = int(random_sets)
    if test not in TESTS:
        raise ConceptError(f"test must be one of {TESTS}; got {test!r}")
    if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        raise ConceptError(f"alpha must be a number between 0 and 1; got {alpha!r}: try 0.05")
    if correction not in CORRECTIONS:
        raise ConceptError(f"correction must be 'bonferroni' or None; got {correction!r}")
    want = _check_targets(targets)

    # the inputs each class is tested on
    if class_examples is not None and labels is not None:
        raise ConceptError("pass labels= (each class tested on its own inputs) or class_examples= (every class "
                           "tested on the same inputs), not both")
    if class_examples is not None:
        tested = {None: _indices(class_examples, n, "class_examples")}
    elif labels is None:
        raise ConceptError("pass labels= (the class of each input; class k is tested on the inputs labelled k) or "
                           "class_examples= (indices of the inputs to test every class on)")
    else:
        lab = as_labels(labels, n)
        if lab.dtype.kind not in "iu":
            raise ConceptError(f"labels must be integer class indices (the model's output columns); got dtype "
                               f"{lab.dtype}: map them to 0..classes-1 first")
        present = sorted(int(k) for k in np.unique(lab))
        if want is None:
            want = present
        absent = [k for k in want if k not in present]
        if absent:
            raise ConceptError(f"no input is labelled {absent[0]}, so class {absent[0]} has nothing to be tested on; "
                               "drop it from targets, or pass class_examples=")
        tested = {k: np.flatnonzero(lab == k) for k in want}

    # random sets: disjoint draws from the pool; "paper" draws R_0 too
    paper = test == "paper"
    in_concept = np.zeros(n, dtype=bool)
    for idx in members.values():
        in_concept[idx] = True
    pool_idx = np.flatnonzero(~in_concept) if random_pool is None else _indices(random_pool, n, "random_pool")
    randoms = _random_sets(pool_idx, m + 1 if paper else m, m, set_size, max(len(i) for i in members.values()),
                           paper, seed)
    size = len(randoms[0])
    negatives = randoms[1:] if paper else randoms  # R_1 .. R_m

    needed = np.unique(np.concatenate([*members.values(), *randoms]))

    def rows_of(idx: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.searchsorted(needed, idx))

    fits_per_layer = (m if paper else m * (m - 1) // 2) + len(members) * m
    total = 1 + len(tested) + len(specs) * fits_per_layer  # the passes over the model, then every CAV fitted
    # watchers (a ConceptScores view) are told it runs, how far it is, and how it ended (finished or failed)
    with _Announced(total, epoch=epoch, concepts=list(members), layers=list(specs)) as job:
        with reporter(progress, "TCAV", unit="step", total=total, error=ConceptError) as report:
            done = [0]

            def advance() -> None:
                done[0] += 1
                report(done[0], total)
                job.progress(done[0])

            with evaluation_mode(model):
                acts = _activations(model, inputs, needed, specs, pool, batch_size)
                advance()
                grads: dict[int, dict[str, torch.Tensor]] = {}
                for k, idx in tested.items():
                    grads.update(_gradients(model, inputs, idx, want if k is None else [k], specs, pool, batch_size))
                    advance()
            classes = list(grads)  # ordered as tested

            # CAVs, with the same train / held-out splits in every layer
            cavs: dict[tuple[str, str], list[CAV]] = {}
            random_cavs: dict[str, list[CAV]] = {}
            for name, x in acts.items():
                def fit(pos: np.ndarray, neg: np.ndarray, key: tuple[int, ...], concept: str, layer: str = name,
                        x: torch.Tensor = x) -> CAV:
                    v, acc = _train_cav(x[rows_of(pos)], x[rows_of(neg)], l2, np.random.default_rng([seed, 1, *key]),
                                        f"concept {concept!r} in layer {layer!r}")
                    advance()
                    return CAV(layer=layer, concept=concept, vector=v.float(), accuracy=acc, pool=pool,
                               n_concept=len(pos), n_random=len(neg), selector=specs[layer])

                if paper:
                    random_cavs[name] = [fit(randoms[0], negatives[i], (0, i), "random") for i in range(m)]
                else:  # R_i against R_j: the classifier of R_j against R_i, labels swapped (minus its CAV)
                    pairs = {}
                    for j in range(m):
                        for i in range(j + 1, m):
                            c = fit(negatives[j], negatives[i], (0, j, i), f"random {j}")
                            pairs[(j, i)] = c
                            pairs[(i, j)] = CAV(layer=name, concept=f"random {i}", vector=-c.vector,
                                                accuracy=c.accuracy, pool=pool, n_concept=size, n_random=size,
                                                selector=specs[name])
                    random_cavs[name] = [pairs[(j, i)] for j in range(m) for i in range(m) if i != j]
                for c, (concept, idx) in enumerate(members.items()):
                    cavs[(concept, name)] = [fit(idx, negatives[i], (c + 1, i), concept) for i in range(m)]

        # scores and mean directional derivatives: one matrix product per (layer, class)
        scores: dict[tuple[str, str, int], np.ndarray] = {}
        random_scores: dict[tuple[str, int], np.ndarray] = {}
        derivatives: dict[tuple[str, str, int], np.ndarray] = {}
        random_derivatives: dict[tuple[str, int], np.ndarray] = {}
        for name in acts:
            base = len(random_cavs[name])
            blocks = [random_cavs[name]] + [cavs[(concept, name)] for concept in members]
            vectors = torch.stack([c.vector.double() for block in blocks for c in block])
            for k in classes:
                along = grads[k][name].double() @ vectors.T  # (examples, CAVs): S(x) for every CAV
                frac = (along > 0).double().mean(dim=0).numpy()
                mean = along.mean(dim=0).numpy()
                for per, random_per, values in ((scores, random_scores, frac), (derivatives, random_derivatives, mean)):
                    random_per[(name, k)] = values[:base] if paper else values[:base].reshape(m, m - 1).mean(axis=1)
                    for c, concept in enumerate(members):
                        per[(concept, name, k)] = values[base + c * m:base + (c + 1) * m]

        tests = len(members) * len(acts) * len(classes)
        rows = []
        for concept in members:
            for name in acts:
                accuracy = float(np.mean([c.accuracy for c in cavs[(concept, name)]]))
                random_accuracy = float(np.mean([c.accuracy for c in random_cavs[name]]))
                for k in classes:
                    s, r = scores[(concept, name, k)], random_scores[(name, k)]
                    d, rd = derivatives[(concept, name, k)], random_derivatives[(name, k)]
                    if test == "paper":
                        p = _ttest(s, r)
                    elif test == "random-concepts":
                        p = _new_observation_ttest(float(s.mean()), r)
                    else:
                        p = _derivative_ttest(float(d.mean()), rd)
                    p_corr = min(1.0, p * tests) if correction == "bonferroni" else p
                    rows.append({"concept": concept, "layer": name, "target": k, "score": float(s.mean()),
                                 "score_std": float(s.std(ddof=1)), "random_score": float(r.mean()),
                                 "random_std": float(r.std(ddof=1)), "derivative": float(d.mean()),
                                 "derivative_std": float(d.std(ddof=1)), "random_derivative": float(rd.mean()),
                                 "random_derivative_std": float(rd.std(ddof=1)), "test": test, "p_value": p,
                                 "p_corrected": p_corr, "significant": bool(p_corr < alpha), "cav_accuracy": accuracy,
                                 "random_accuracy": random_accuracy, "examples": len(grads[k][name]), "epoch": epoch})
        return TCAVResult(rows=rows, cavs=cavs, random_cavs=random_cavs, scores=scores, random_scores=random_scores,
                          test=test, alpha=float(alpha), correction=correction, set_size=size, random_sets=m, pool=pool,
                          epoch=epoch, random_sets_drawn=randoms, derivatives=derivatives,
                          random_derivatives=random_derivatives)
