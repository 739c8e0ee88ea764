"""Linear probes on layer representations, with control tasks for selectivity.

A probe is a multinomial logistic regression trained on a layer's representation (examples, features) to predict
a label; its held-out accuracy says how linearly decodable the label is from that layer.

High probe accuracy alone does not show that the layer *encodes* the label: a probe with enough capacity can also
memorise arbitrary labels. Hewitt & Liang (2019), *Designing and Interpreting Probes with Control Tasks*, compare
against a **control task**: every *type* (e.g. every word of the vocabulary, for a part-of-speech probe on token
representations) gets a fixed random label drawn from the empirical label distribution, and the same probe --
same split, features and hyper-parameters -- is trained on those labels. Control labels can only be predicted by
memorising the type from its representation, so

    selectivity = accuracy - control_accuracy

is the part of the accuracy that memorisation does not explain.

The types come from ``groups`` (one per example, e.g. the token id of each token). With ``groups=None`` every
example is its own type, so a held-out example's control label was never seen in training and the held-out
control accuracy is at chance by construction: selectivity is then only accuracy above chance, not accuracy above
a memorisation baseline. Pass ``groups`` that repeat across examples for the control of the paper.

Details (all deterministic given ``seed``):

- Split: stratified by the true label; each class keeps at least one training example, so a class is never
  seen only at test time. Every class therefore needs at least 2 examples.
- Features are standardised with the training mean and (population) standard deviation; a feature that is
  constant on the training set is set to 0 everywhere. A representation with no non-constant feature carries no
  information, so the probe predicts the majority training class and its accuracy equals ``chance``.
- The probe minimises ``mean cross-entropy + l2 / 2 * ||W||^2`` (bias not penalised) with full-batch L-BFGS and a
  strong-Wolfe line search, in float32. This is scikit-learn's ``LogisticRegression(C=1 / (l2 * n_train))``.
- ``chance`` is the test accuracy of always predicting the most frequent training class (ties: the first class
  in sorted label order).

Labels are class names or ids: ints, strings or bools; floats only when every value is a whole number (converted
to int64 exactly). Continuous values are refused rather than treated as thousands of one-example classes.

Cost and progress: each L-BFGS step evaluates ``n_train × classes`` logits, so the work grows with the number of
classes. Above ``max_classes`` (default :data:`MAX_CLASSES`, 1,000) a probe is refused with the estimate; pass
``max_classes=None`` to run it anyway. ``progress(done, total)`` is called after every L-BFGS function evaluation
(``total`` is the most there can be: most fits converge sooner, and ``done`` then jumps to the end of that fit);
returning False stops the probe with :class:`ProbeCancelled`. By default a probe that lasts over a second shows a
progress bar (``progress=False`` silences it). Ctrl+C also
stops it between two evaluations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from ..pipeline.checks import (
    check_bool,
    check_epoch,
    check_int,
    check_keywords,
    check_number,
    keywords_checked,
    show,
    what,
)
from ..pipeline.progress import check_progress, reporter
from .matrices import RepresentationError, as_class_labels, as_matrix

__all__ = ["MAX_CLASSES", "ProbeCancelled", "ProbeResult", "linear_probe", "probe_layers"]

MAX_CLASSES = 1000  # above this, a probe is refused unless max_classes says otherwise
PROBE_OPTIONS = ("groups", "control", "test_fraction", "l2", "max_iter", "seed", "epoch", "device", "max_classes",
                 "progress")
Progress = Callable[[int, int], Any]


class ProbeCancelled(Exception):
    """Raised when ``progress`` returned False: a probe stopped half-way has no accuracy to report."""


@dataclass(frozen=True)
class ProbeResult:
    """One probe on one layer. Accuracies are fractions in [0, 1].

    ``accuracy`` and ``control_accuracy`` are on the held-out test examples; ``selectivity`` is
    ``accuracy - control_accuracy`` (None without a control task); ``chance`` is the held-out accuracy of always
    predicting the majority training class; ``classes`` is the number of label classes; ``epoch`` is carried
    through for results collected over training.
    """

    layer: str
    accuracy: float
    train_accuracy: float
    control_accuracy: float | None
    selectivity: float | None
    chance: float
    n_train: int
    n_test: int
    classes: int
    epoch: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict of plain Python values."""
        return asdict(self)


@dataclass(frozen=True)
class _Task:
    """What every layer shares: class ids, the split and the control labels."""

    y: np.ndarray  # class id per example, int64
    names: np.ndarray  # class name per id, sorted
    train: np.ndarray  # example indices
    test: np.ndarray
    control: np.ndarray | None  # control class id per example

    @property
    def classes(self) -> int:
        return len(self.names)

    @property
    def chance(self) -> float:
        majority = int(np.bincount(self.y[self.train], minlength=self.classes).argmax())  # ties: lowest id
        return float(np.mean(self.y[self.test] == majority))


def _encode(values: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values and the id of each entry (``values`` checked by ``as_class_labels``)."""
    try:
        names, ids = np.unique(values, return_inverse=True)
    except TypeError as err:  # e.g. a mix of strings and ints
        raise RepresentationError(f"{name} must be mutually comparable values (all ints or all strings); "
                                  f"convert them to one type first ({err})") from err
    return names, ids.reshape(-1).astype(np.int64)


def _show(value: Any) -> str:
    """A label as the user wrote it: 'cat' or 3, not np.str_('cat')."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _check_classes(y: np.ndarray, names: np.ndarray) -> None:
    if len(names) < 2:
        only = f" (every label is {_show(names[0])})" if len(names) else ""
        raise RepresentationError(f"a probe needs at least 2 label classes; got {len(names)}{only}: pass labels "
                                  "that vary across examples")
    counts = np.bincount(y, minlength=len(names))
    small = np.flatnonzero(counts < 2)
    if len(small):
        listed = ", ".join(f"{_show(names[c])} ({counts[c]} example)" for c in small[:5])
        more = f" and {len(small) - 5} more" if len(small) > 5 else ""
        raise RepresentationError(f"each class needs at least 2 examples (one to train on, one to test on); "
                                  f"class {listed}{more}: drop those examples or merge them into another class")


def _stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, test) indices; per-class test counts by largest remainder, each class keeping >= 1 train.

    The test set has ``round(test_fraction * n)`` examples (at least 1), split over the classes in proportion to
    their sizes. Assumes every class has at least 2 examples.
    """
    n = len(y)
    counts = np.bincount(y)
    total = int(min(max(1, round(test_fraction * n)), n - len(counts)))
    quota = test_fraction * counts
    take = np.minimum(np.floor(quota).astype(np.int64), counts - 1)
    order = np.argsort(-(quota - np.floor(quota)), kind="stable")  # largest remainder first
    while take.sum() < total:  # terminates: total <= sum(counts - 1)
        for c in order:
            if take.sum() < total and take[c] < counts[c] - 1:
                take[c] += 1
    rng = np.random.default_rng([seed, 0])
    test = []
    for c in range(len(counts)):
        members = np.flatnonzero(y == c)
        test.append(rng.permutation(members)[: take[c]])
    test_idx = np.sort(np.concatenate(test))
    train_mask = np.ones(n, dtype=bool)
    train_mask[test_idx] = False
    return np.flatnonzero(train_mask), test_idx


def _check_class_count(classes: int, n: int, test_fraction: float, features: int, max_classes: int | None,
                       max_iter: int, control: bool) -> None:
    """Refuse more than ``max_classes`` classes, with the cost of one L-BFGS evaluation (before any work)."""
    if max_classes is None or classes <= max_classes:
        return
    n_train = n - int(min(max(1, round(test_fraction * n)), n - classes))  # as _stratified_split splits
    logits = n_train * classes * 4
    flops = 6 * n_train * classes * features  # the logits, and the gradient's two products
    raise RepresentationError(
        f"labels has {classes} classes, more than max_classes={max_classes}: each of up to {max_iter * 5 // 4} "
        f"L-BFGS evaluations{' per fit (two fits with the control task)' if control else ''} computes "
        f"{n_train} x {classes} logits ({logits / 2**20:.0f} MiB, about {flops / 1e9:.2g} GFLOP), which can take "
        f"minutes. Merge rare classes or probe a coarser label; or pass max_classes=None (with progress=... to "
        f"follow it) to run it anyway")


class _Ticker:
    """Counts L-BFGS function evaluations for ``progress(done, total)``; False from ``progress`` cancels.

    Each fit has a share of ``max_iter * 5 // 4`` evaluations (torch's default ``max_eval``); ``done`` moves
    within the share (never past it, even if a last line search overruns it) and to its end when the fit ends,
    so it only grows and ends at ``total``."""

    def __init__(self, progress: Progress | None, fits: int, max_iter: int):
        self.progress, self.per_fit = progress, max_iter * 5 // 4
        self.total, self.fit, self.evals = fits * self.per_fit, 0, 0

    def _report(self, done: int) -> None:
        if self.progress(done, self.total) is False:
            raise ProbeCancelled(f"the probe was cancelled by progress() after {done} of at most {self.total} "
                                 "L-BFGS evaluations")

    def tick(self) -> None:
        if self.progress is not None:
            self.evals += 1
            self._report(self.fit * self.per_fit + min(self.evals, self.per_fit - 1))

    def end_fit(self) -> None:
        if self.progress is not None:
            self.fit, self.evals = self.fit + 1, 0
            self._report(self.fit * self.per_fit)


def _control_labels(y: np.ndarray, groups: np.ndarray | None, classes: int, seed: int) -> np.ndarray:
    """Control class id per example: one random label per type, drawn from the empirical label distribution."""
    if groups is None:
        types, n_types = np.arange(len(y)), len(y)
    else:
        names, types = _encode(groups, "groups")
        n_types = len(names)
    p = np.bincount(y, minlength=classes) / len(y)
    rng = np.random.default_rng([seed, 1])
    return rng.choice(classes, size=n_types, p=p)[types].astype(np.int64)


def _make_task(labels: Any, n: int, groups: Any, control: bool, test_fraction: float, seed: int,
               check: dict[str, Any] | None = None) -> _Task:
    """Class ids, split and control labels; ``check``: the arguments of :func:`_check_class_count` but the
    class count and example count, checked before the split (which costs time per class)."""
    names, y = _encode(as_class_labels(labels, n, "labels"), "labels")
    _check_classes(y, names)
    if check is not None:
        _check_class_count(len(names), n, test_fraction, control=control, **check)
    train, test = _stratified_split(y, test_fraction, int(seed))
    group_arr = None if groups is None else as_class_labels(groups, n, "groups")
    ctrl = _control_labels(y, group_arr, len(names), int(seed)) if control else None
    return _Task(y=y, names=names, train=train, test=test, control=ctrl)


def _standardise(x: torch.Tensor, train: np.ndarray) -> torch.Tensor | None:
    """``x`` standardised with training statistics, constant training features dropped; None if all are constant."""
    xt = x[torch.as_tensor(train)]
    varies = xt.amax(dim=0) > xt.amin(dim=0)  # exact: a constant column has no round-off spread
    if not varies.any():
        return None
    x = x[:, varies]
    xt = xt[:, varies]
    return (x - xt.mean(dim=0)) / xt.std(dim=0, unbiased=False)


def _fit_logistic(x: torch.Tensor, y: torch.Tensor, classes: int, l2: float,
                  max_iter: int, ticker: _Ticker | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights (classes, features) and bias minimising mean cross-entropy + l2/2 ||W||^2 by full-batch L-BFGS.

    The gradient is written out (softmax minus one-hot) rather than taken by autograd: two matrix products per
    evaluation, laid out so that neither needs a transposed copy of ``x``.
    """
    n = x.shape[0]
    w = torch.zeros(classes, x.shape[1], dtype=x.dtype, device=x.device)
    b = torch.zeros(classes, dtype=x.dtype, device=x.device)
    rows = torch.arange(n, device=x.device)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-6, tolerance_change=1e-10)

    def closure() -> torch.Tensor:
        logits = torch.addmm(b, x, w.T)
        lse = torch.logsumexp(logits, dim=1)
        loss = (lse - logits[rows, y]).mean() + 0.5 * l2 * (w * w).sum()
        g = torch.exp_(logits.sub_(lse[:, None]))  # softmax, in place
        g[rows, y] -= 1.0
        g /= n
        w.grad = torch.addmm(w, g.T, x, alpha=1.0, beta=l2)
        b.grad = g.sum(dim=0)
        if ticker is not None:
            ticker.tick()
        return loss

    with torch.no_grad():
        opt.step(closure)
    return w, b


def _train_and_score(x: torch.Tensor | None, y: np.ndarray, train: np.ndarray, test: np.ndarray, l2: float,
                     max_iter: int, ticker: _Ticker) -> tuple[float, float]:
    """(train accuracy, test accuracy) of a probe trained on ``x[train]`` against ``y``.

    Only the classes present in training get an output (control labels may miss some); with one such class or no
    informative feature (``x`` None) the probe predicts the majority training class.
    """
    present, ytr = np.unique(y[train], return_inverse=True)
    if x is None or len(present) == 1:
        pred = present[int(np.bincount(ytr).argmax())]
        ticker.end_fit()
        return float(np.mean(y[train] == pred)), float(np.mean(y[test] == pred))
    w, b = _fit_logistic(x[torch.as_tensor(train, device=x.device)],
                         torch.as_tensor(ytr.reshape(-1), device=x.device), len(present), l2, max_iter, ticker)
    pred = present[torch.addmm(b, x, w.T).argmax(dim=1).cpu().numpy()]
    ticker.end_fit()
    return float(np.mean(pred[train] == y[train])), float(np.mean(pred[test] == y[test]))


def _probe(x: torch.Tensor, task: _Task, l2: float, max_iter: int, device: torch.device, layer: str,
           epoch: int | None, ticker: _Ticker) -> ProbeResult:
    z = _standardise(x, task.train)
    if z is not None:
        z = z.to(device=device, dtype=torch.float32)
    train_acc, acc = _train_and_score(z, task.y, task.train, task.test, l2, max_iter, ticker)
    control_acc = selectivity = None
    if task.control is not None:
        _, control_acc = _train_and_score(z, task.control, task.train, task.test, l2, max_iter, ticker)
        selectivity = acc - control_acc
    return ProbeResult(layer=layer, accuracy=acc, train_accuracy=train_acc, control_accuracy=control_acc,
                       selectivity=selectivity, chance=task.chance, n_train=len(task.train), n_test=len(task.test),
                       classes=task.classes, epoch=epoch)


def _device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise RepresentationError(f"device must be a torch device such as 'cpu' or 'cuda:0'; got {show(device)}"
                                  ) from err


def _check_options(kw: dict[str, Any]) -> dict[str, Any]:
    """The probe options with their defaults, each checked; see :func:`linear_probe`."""
    o = {"groups": None, "control": True, "test_fraction": 0.25, "l2": 1e-3, "max_iter": 200, "seed": 0,
         "epoch": None, "device": None, "max_classes": MAX_CLASSES, "progress": None, **kw}
    err = RepresentationError
    o["control"] = check_bool(o["control"], "control", err)
    o["test_fraction"] = check_number(o["test_fraction"], "test_fraction", above=0.0, below=1.0, error=err,
                                      hint="try 0.25 (the share of examples held out)")
    o["l2"] = check_number(o["l2"], "l2", minimum=0.0, error=err, hint="try 1e-3 (the L2 penalty)")
    o["max_iter"] = check_int(o["max_iter"], "max_iter", minimum=1, error=err, hint="try 200 (L-BFGS iterations)")
    o["seed"] = check_int(o["seed"], "seed", minimum=0, error=err)
    o["epoch"] = check_epoch(o["epoch"], "epoch", err)
    if o["max_classes"] is not None:
        o["max_classes"] = check_int(o["max_classes"], "max_classes", minimum=2, error=err,
                                     hint=f"the most classes a probe may have (default {MAX_CLASSES}), or None")
    check_progress(o["progress"], "progress", err)
    o["device"] = _device(o["device"])
    return o


@keywords_checked
def linear_probe(features: Any, labels: Any, *, groups: Any = None, control: bool = True,
                 test_fraction: float = 0.25, l2: float = 1e-3, max_iter: int = 200, seed: int = 0, layer: str = "",
                 epoch: int | None = None, device: str | torch.device | None = None,
                 max_classes: int | None = MAX_CLASSES, progress: Progress | None = None) -> ProbeResult:
    """Held-out accuracy of a linear probe predicting ``labels`` from ``features``, and of its control task.

    Parameters
    ----------
    features
        (examples, features) tensor or array; pool conv or sequence layers first.
    labels
        one label per example, ints or strings (any sortable values); each class needs >= 2 examples.
        Floats are accepted only when all are whole numbers (2.0 is class 2); continuous values are refused.
    groups
        the type of each example for the control task (e.g. token ids); None: every example is its own
        type, which puts held-out control accuracy at chance by construction (see the module docstring).
    control
        also train the probe on control labels and report ``control_accuracy`` and ``selectivity``.
    test_fraction
        share of examples held out, stratified by label.
    l2
        weight of the L2 penalty ``l2 / 2 * ||W||^2`` added to the mean cross-entropy (bias not penalised).
    max_iter
        L-BFGS iterations.
    seed
        fixes the split and the control labels.
    layer, epoch
        carried into the result.
    device
        where to train (default CPU).
    max_classes
        refuse labels with more classes than this (default 1,000), since the cost grows with the
        class count; None: no limit.
    progress
        ``progress(done, total)`` after each L-BFGS evaluation; returning False raises
        :class:`ProbeCancelled`. None (default): a progress bar if the probe lasts over a second; True: a bar;
        False: silent (see :mod:`hiddenwidgets.pipeline.progress`).

    Raises
    ------
    RepresentationError
        bad shapes, non-finite or complex features, fewer than 2 classes, a class with 1
        example, more than ``max_classes`` classes, an option of the wrong type or out of range.
    TypeError
        an unknown keyword argument.
    """
    if not isinstance(layer, str):
        raise RepresentationError(f"layer must be a string (the name carried into the result); got "
                                  f"{what(layer)}")
    o = _check_options({"groups": groups, "control": control, "test_fraction": test_fraction, "l2": l2,
                        "max_iter": max_iter, "seed": seed, "epoch": epoch, "device": device,
                        "max_classes": max_classes, "progress": progress})
    x = as_matrix(features, f"features of layer {layer!r}" if layer else "features")
    task = _make_task(labels, x.shape[0], o["groups"], o["control"], o["test_fraction"], o["seed"],
                      {"features": x.shape[1], "max_classes": o["max_classes"], "max_iter": o["max_iter"]})
    with reporter(o["progress"], f"probe {layer}".strip(), unit="eval", error=RepresentationError) as report:
        ticker = _Ticker(report, 2 if o["control"] else 1, o["max_iter"])
        return _probe(x, task, o["l2"], o["max_iter"], o["device"], layer, o["epoch"], ticker)


def probe_layers(features: dict[str, Any], labels: Any, **kw: Any) -> list[ProbeResult]:
    """:func:`linear_probe` on each layer of ``features`` (name -> representation), in dict order.

    All layers share one split and one set of control labels (both depend only on labels, groups and seed), so
    their accuracies are comparable. Keyword arguments are those of :func:`linear_probe` except ``layer``: each
    result is named after its key.
    """
    if "layer" in kw:
        raise TypeError("probe_layers names each result after its key in features; drop layer=")
    check_keywords("probe_layers()", kw, PROBE_OPTIONS)
    if not isinstance(features, dict) or not features:
        raise RepresentationError("features must be a non-empty dict of layer name -> (examples, features); got "
                                  f"{type(features).__name__ if not isinstance(features, dict) else 'an empty dict'}")
    o = _check_options(kw)
    mats = {name: as_matrix(x, f"features of layer {name!r}") for name, x in features.items()}
    sizes = {name: m.shape[0] for name, m in mats.items()}
    if len(set(sizes.values())) > 1:
        raise RepresentationError(f"every layer needs the same examples; got example counts {sizes}: capture all "
                                  "layers on the same batch")
    n = next(iter(sizes.values()))
    widest = max(m.shape[1] for m in mats.values())
    task = _make_task(labels, n, o["groups"], o["control"], o["test_fraction"], o["seed"],
                      {"features": widest, "max_classes": o["max_classes"], "max_iter": o["max_iter"]})
    with reporter(o["progress"], f"probes of {len(mats)} layers", unit="eval", error=RepresentationError) as report:
        ticker = _Ticker(report, len(mats) * (2 if o["control"] else 1), o["max_iter"])
        return [_probe(m, task, o["l2"], o["max_iter"], o["device"], str(name), o["epoch"], ticker)
                for name, m in mats.items()]
