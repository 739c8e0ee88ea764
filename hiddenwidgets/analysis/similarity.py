"""How alike two layers' representations are: centred kernel alignment (CKA).

A representation is a matrix of shape (examples, features); two representations compared must describe the same
examples in the same order, but may have different numbers of features. With Gram matrices K (of X) and L (of Y)
over the n examples and the centring matrix H = I - 11ᵀ/n:

- **HSIC** (Hilbert-Schmidt independence criterion), biased estimator: HSIC(K, L) = tr(KHLH) / (n-1)^2.
- **Unbiased HSIC** of Song et al. (2012), *Feature Selection via Dependence Maximization*: with K̃, L̃ the Gram
  matrices with their diagonals set to zero,
  HSIC₁(K, L) = [tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1 / ((n-1)(n-2)) - 2/(n-2)·1ᵀK̃L̃1] / (n(n-3)), which needs n >= 4.
- **CKA** of Kornblith et al. (2019), *Similarity of Neural Network Representations Revisited*:
  CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)), in [0, 1] for the biased estimator, 1 for identical
  representations, invariant to orthogonal transforms and isotropic scaling of either representation but not to
  other invertible linear maps. ``debiased=True`` puts HSIC₁ in numerator and denominator: its value is less
  inflated when there are few examples for many features (and may then be slightly negative).
- **Kernels**: ``"linear"``, K = XXᵀ; ``"rbf"``, K_ij = exp(-|x_i - x_j|^2 / (2 s^2)) with bandwidth
  s = ``sigma`` × the median Euclidean distance between distinct examples (Kornblith et al.'s convention, their
  default ``sigma`` 0.8; the median is taken over the n(n-1)/2 pairs i < j, the lower middle value for an even
  count). As ``sigma`` grows, RBF CKA tends to linear CKA.
- **Minibatch CKA** of Nguyen, Raghu & Kornblith (2021), *Do Wide and Deep Networks Learn the Same Things?*:
  :class:`MinibatchCKA` averages HSIC₁ over minibatches and forms the CKA ratio from the averages, so large data
  sets never need one n × n Gram matrix.

Linear CKA is computed in feature space: with column-centred X (n × p) and Y (n × q), tr(KHLH) = ||XᵀY||_F^2 and
the unbiased terms follow from tr(K̃L̃) = ||XᵀY||_F^2 - Σ_i K_ii L_ii, 1ᵀK̃1 = ||Xᵀ1||^2 - Σ_i K_ii and
K̃1 = X(Xᵀ1) - diag(K). No n × n matrix is formed unless a layer has more features than examples, where its
n × n Gram matrix is smaller than the p × p product it replaces. The RBF kernel needs its Gram matrix, so
:func:`cka` refuses RBF beyond 20,000 examples; use :class:`MinibatchCKA` there. Arithmetic is float64, except
for the linear, biased CKA of single-precision representations: float32 products (as the network computed them)
summed in float64, with its checks read off those products (:func:`_linear_cka_single`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..pipeline.checks import check_bool, check_choice, check_number, keywords_checked
from .matrices import RepresentationError, as_matrix, refuse_nonfinite

__all__ = ["RBF_MAX_EXAMPLES", "MinibatchCKA", "cka", "cka_matrix"]

KERNELS = ("linear", "rbf")
RBF_MAX_EXAMPLES = 20_000  # an RBF Gram matrix of this size already takes 3.2 GB in float64
MIN_DEBIASED_EXAMPLES = 4  # HSIC₁ divides by n(n-3)


def _check_options(kernel: str, sigma: float, debiased: Any = False) -> None:
    check_choice(kernel, "kernel", KERNELS, RepresentationError)
    check_bool(debiased, "debiased", RepresentationError)
    check_number(sigma, "sigma (the RBF bandwidth as a multiple of the median distance)", above=0.0,
                 error=RepresentationError, hint="try 0.8 (Kornblith et al.'s)")


def _check_examples(n: int, kernel: str, debiased: bool, what: str) -> None:
    if debiased and n < MIN_DEBIASED_EXAMPLES:
        raise RepresentationError(f"debiased CKA needs at least {MIN_DEBIASED_EXAMPLES} examples (the unbiased HSIC "
                                  f"divides by n(n-3)); {what} has {n}: pass more examples or use debiased=False")
    if kernel == "rbf" and n > RBF_MAX_EXAMPLES:
        raise RepresentationError(f"the RBF kernel needs an n × n Gram matrix and {what} has n = {n} examples "
                                  f"(at most {RBF_MAX_EXAMPLES}); use MinibatchCKA(kernel='rbf') over batches, "
                                  f"a subsample, or kernel='linear'")


@dataclass
class _Prepared:
    """One representation reduced to what HSIC with any other representation of the same examples needs.

    Exactly one of ``features`` (column-centred X, so that its Gram matrix is HKH) and ``gram`` (HKH itself) is
    set. ``diag`` is diag(HKH), ``offsum`` is 1ᵀK̃1 and ``offrow`` is K̃1 for K̃ = HKH with a zeroed diagonal
    (HSIC₁ is unchanged by centring K, and centring keeps the products small).
    """

    n: int
    features: torch.Tensor | None
    gram: torch.Tensor | None
    diag: torch.Tensor | None = None  # the three unbiased terms are only computed for debiased HSIC
    offsum: float = 0.0
    offrow: torch.Tensor | None = None


_SINGLE = (torch.float32, torch.float16, torch.bfloat16, np.dtype(np.float32), np.dtype(np.float16))


def _precision(given: Iterable[Any], kernel: str, debiased: bool) -> torch.dtype:
    """The dtype representations are worked in: float32 for the linear, biased CKA when every input is in single
    or half precision (the precision the network computed it in; the (p, q) products are still summed in
    float64, which keeps the value within ~1e-8 of the float64 computation on 10,000 x 512,
    tests/unit/test_similarity.py), float64 for everything else: any float64 input (the higher precision wins),
    the debiased terms (they subtract nearly equal sums), RBF Gram matrices (they exponentiate)."""
    if kernel != "linear" or debiased:
        return torch.float64
    single = all(getattr(g, "dtype", None) in _SINGLE for g in given)
    return torch.float32 if single else torch.float64


def _own_copy(x: torch.Tensor, given: Any) -> bool:
    """Whether ``x`` (``as_matrix(given)``) is a copy, which may then be changed in place."""
    if isinstance(given, torch.Tensor):
        return x.data_ptr() != given.data_ptr()
    if isinstance(given, np.ndarray):
        return not np.may_share_memory(x.numpy(), given)
    return True  # built from lists or other sequences


def _centred_numpy(x: torch.Tensor) -> tuple[np.ndarray, float]:
    """Column-centred numpy copy of a CPU matrix, and its largest |column mean| (why numpy's copy: see _prepare)."""
    data = x.numpy()
    mean = data.mean(axis=0)
    return data - mean, float(np.abs(mean).max())


def _prepare(x: torch.Tensor, kernel: str, sigma: float, name: str, debiased: bool,
             allow_constant: bool = False, in_place: bool = False) -> _Prepared:
    """``x`` a checked float32/float64 (n, p) matrix; a constant one raises unless ``allow_constant`` (minibatches).
    ``in_place``: ``x`` is a private copy, centred and scaled where it is (no n × p temporaries)."""
    n, p = x.shape
    if x.device.type == "cpu" and not in_place:  # numpy's copy: its large buffers get transparent huge pages, and
        # the products below ran faster on them than on torch's allocation (benchmarks/performance.py, row cka)
        centred, largest_mean = _centred_numpy(x)
        xc = torch.from_numpy(centred)
    else:
        mean = x.mean(0)
        largest_mean = float(mean.abs().max())
        xc = x.sub_(mean) if in_place else x - mean
    lo, hi = torch.aminmax(xc)
    largest = max(-float(lo), float(hi))
    # A constant column's centred values are the rounding error of its mean (a few ulps, far below 1e-3 of it), so
    # a larger spread proves the representation is not constant; below it, compare every example with the first
    # (exact: equal rows stay equal when the same mean is subtracted, and unequal ones stay unequal)
    if largest <= 1e-3 * largest_mean and bool((xc == xc[0]).all()):
        if not allow_constant:
            raise RepresentationError(f"{name} is constant over all {n} examples, so CKA is undefined (zero "
                                      f"variance); check that the layer is not dead or saturated, or leave it out")
        zeros = x.new_zeros(n)
        return _Prepared(n, x.new_zeros(n, 1), None, zeros, 0.0, zeros)
    if not allow_constant:  # CKA ignores isotropic scale: scaling keeps 1e-120 or 1e160 inputs finite (not for
        # minibatches, whose HSIC terms are averaged across batches unscaled). By a power of two, in place: exact.
        # Scaled, the largest |value| becomes 1/sqrt(n p) at most and no product below can overflow. Within 2^±24 of
        # that there is nothing to fear (float32 or float64) and the pass over the data is skipped.
        shift = math.frexp(largest)[1] + math.ceil(math.log2(n * p) / 2)
        if abs(shift) > 24:
            xc.mul_(2.0 ** -shift)
    if kernel == "linear" and p <= n:
        prepared = _Prepared(n, xc, None)
        if debiased:
            colsum = xc.sum(0)
            prepared.diag = torch.einsum("ij,ij->i", xc, xc)
            prepared.offsum = float(colsum @ colsum - prepared.diag.sum())
            prepared.offrow = xc @ colsum - prepared.diag
        return prepared
    prepared = _Prepared(n, None, xc @ xc.T if kernel == "linear" else _rbf_gram(xc, sigma, name))
    if debiased:
        prepared.diag = prepared.gram.diagonal().clone()
        prepared.offsum = float(prepared.gram.sum() - prepared.diag.sum())
        prepared.offrow = prepared.gram.sum(1) - prepared.diag
    return prepared


def _rbf_gram(xc: torch.Tensor, sigma: float, name: str) -> torch.Tensor:
    """Centred RBF Gram matrix HKH of the rows of ``xc``, built in place in one n × n buffer."""
    n = xc.shape[0]
    norms = xc.square().sum(1)
    sq = xc @ xc.T
    sq.mul_(-2.0).add_(norms[:, None]).add_(norms[None, :]).clamp_(min=0.0)
    sq.diagonal().zero_()
    # Lower median of the m = n(n-1)/2 pairs i < j. The full matrix holds n zeros (diagonal) and every pair twice,
    # so the k-th smallest pair (1-based) sits at position n + 2k of the sorted full matrix.
    m = n * (n - 1) // 2
    k = (m - 1) // 2 + 1
    median_sq = float(sq.reshape(-1).kthvalue(n + 2 * k).values)
    if median_sq <= 0.0:
        raise RepresentationError(f"{name}: at least half of its {n} examples' pairs are identical, so the RBF "
                                  f"bandwidth (sigma × median distance) is zero; remove duplicate examples or use "
                                  f"kernel='linear'")
    sq.mul_(-1.0 / (2.0 * sigma * sigma * median_sq)).exp_()
    mean_row = sq.mean(1)
    sq.sub_(mean_row[:, None]).sub_(mean_row[None, :]).add_(mean_row.mean())
    return sq


def _cross(a: _Prepared, b: _Prepared) -> float:
    """Σ_ij (HKH)_ij (HLH)_ij = tr(KHLH), by the cheapest route the two preparations allow."""
    if a.gram is not None and b.gram is not None:
        return float(torch.dot(a.gram.reshape(-1), b.gram.reshape(-1)))
    if a.gram is not None:
        return float(((a.gram @ b.features) * b.features).sum())
    if b.gram is not None:
        return float(((b.gram @ a.features) * a.features).sum())
    if a.features.device.type == "cpu" and b.features.device.type == "cpu":
        # numpy's BLAS: a.T @ a (a representation with itself) runs as a symmetric rank-k update, half the work,
        # and its float64 products ran ~2x faster than torch's on one core (benchmarks/performance.py, row cka)
        fa = a.features.numpy()
        fb = fa if b.features is a.features else b.features.numpy()
        product = (fa.T @ fb).astype(np.float64, copy=False)  # (p, q): summed in float64 whatever the products
        return float(np.vdot(product, product))
    return float((a.features.T @ b.features).double().square().sum())


def _hsic(a: _Prepared, b: _Prepared, debiased: bool, cross: float | None = None) -> float:
    """HSIC of two prepared representations: biased, or HSIC₁ of Song et al. (2012) when ``debiased``."""
    n = a.n
    cross = _cross(a, b) if cross is None else cross
    if not debiased:
        return cross / (n - 1) ** 2
    trace = cross - float(a.diag @ b.diag)
    return (trace + a.offsum * b.offsum / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * float(a.offrow @ b.offrow)) / (
        n * (n - 3))


def _self_hsic(a: _Prepared, debiased: bool, name: str) -> float:
    value = _hsic(a, a, debiased)
    if value <= 0.0:
        raise RepresentationError(f"the debiased HSIC of {name} with itself is {value:.3g} <= 0 with {a.n} "
                                  f"examples, so debiased CKA is undefined; pass more examples or use debiased=False")
    return value


@keywords_checked
def cka(X: Any, Y: Any, kernel: str = "linear", debiased: bool = False, sigma: float = 0.8) -> float:
    """Centred kernel alignment between representations ``X`` (n, p) and ``Y`` (n, q) of the same n examples.

    ``kernel``: ``"linear"`` (computed in feature space, no n × n matrices for p, q <= n) or ``"rbf"`` (bandwidth
    ``sigma`` × median pairwise distance, at most 20,000 examples). ``debiased``: use the unbiased HSIC of Song et
    al. (2012), which needs n >= 4. Raises :class:`RepresentationError` for mismatched example counts, a constant
    representation, unknown kernels and the checks of :func:`hiddenwidgets.features.as_matrix`.
    """
    _check_options(kernel, sigma, debiased)
    dtype = _precision((X, Y), kernel, debiased)
    x, y = as_matrix(X, "X", dtype, check_finite=False), as_matrix(Y, "Y", dtype, check_finite=False)
    if x.shape[0] != y.shape[0]:
        raise RepresentationError(f"X and Y must hold the same examples in the same order; X has {x.shape[0]} "
                                  f"examples and Y has {y.shape[0]}")
    _check_examples(x.shape[0], kernel, debiased, "X")
    if kernel == "linear" and not debiased and dtype == torch.float32:
        value = _linear_cka_single(x, y)
        if value is not None:
            return value
    refuse_nonfinite(x, "X")
    refuse_nonfinite(y, "Y")
    a = _prepare(x, kernel, sigma, "X", debiased, in_place=_own_copy(x, X))
    hxx = _self_hsic(a, debiased, "X")
    b = _prepare(y, kernel, sigma, "Y", debiased, in_place=_own_copy(y, Y) and y.data_ptr() != x.data_ptr())
    hyy = _self_hsic(b, debiased, "Y")
    return _hsic(a, b, debiased) / math.sqrt(hxx * hyy)


def _linear_cka_single(x: torch.Tensor, y: torch.Tensor) -> float | None:
    """Linear, biased CKA of single-precision CPU matrices with no pass over the data beyond the formula's own
    (centring and the three products), or None where the careful path of :func:`_prepare` must decide.

    The checks read the (p, p) products instead of the data: a NaN or inf anywhere in X makes its column mean,
    hence XᵀX, non-finite (the careful path then says where it is); the diagonal of XᵀX holds each centred
    column's sum of squares S_j, so max S_j > n (1e-3 × the largest |mean|)² proves some centred value exceeds the
    constant-representation threshold of :func:`_prepare` (below it, that test decides). A finite max S_j ≥ 2^-60
    keeps every product that matters in float32's normal range (no overflow: no partial sum exceeds S_j, or
    sqrt(S_i S_j) off the diagonal; underflowed products are below 2^-52 of the largest), so no rescaling is needed.
    Products are float32 (the precision the representations were computed in), summed in float64."""
    if x.device.type != "cpu" or y.device.type != "cpu" or x.shape[1] > x.shape[0] or y.shape[1] > y.shape[0]:
        return None
    n = x.shape[0]
    same = y.data_ptr() == x.data_ptr() and y.shape == x.shape and y.stride() == x.stride()
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):  # NaN, inf and overflow: checked below
        fx, mean_x = _centred_numpy(x)
        fy, mean_y = (fx, mean_x) if same else _centred_numpy(y)
        grams = []
        for f, largest_mean in ((fx, mean_x),) if same else ((fx, mean_x), (fy, mean_y)):
            gram = (f.T @ f).astype(np.float64, copy=False)  # a symmetric rank-k update: f.T @ f of one buffer
            if not np.isfinite(gram).all():
                return None
            top = float(gram.diagonal().max())
            if not top >= 2.0 ** -60 or top <= n * (1e-3 * largest_mean) ** 2:
                return None
            grams.append(gram)
        gx, gy = grams[0], grams[-1]
        cross = gx if same else (fx.T @ fy).astype(np.float64, copy=False)
    hxy, hxx, hyy = (float(np.vdot(g, g)) for g in (cross, gx, gy))
    if not (math.isfinite(hxy) and hxx > 0 and hyy > 0):
        return None
    return hxy / math.sqrt(hxx * hyy)


def _layer_dict(layers: Any, arg: str, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    if not isinstance(layers, Mapping) or not layers:
        raise RepresentationError(f"{arg} must be a non-empty dict of layer name -> features (examples, features); "
                                  f"got {type(layers).__name__}{' (empty)' if isinstance(layers, Mapping) else ''}")
    return {str(k): as_matrix(v, f"layer {str(k)!r}", dtype) for k, v in layers.items()}


@keywords_checked
def cka_matrix(a: Mapping[str, Any], b: Mapping[str, Any] | None = None, kernel: str = "linear",
               debiased: bool = False, sigma: float = 0.8) -> tuple[list[str], list[str], torch.Tensor]:
    """CKA between every layer of ``a`` and every layer of ``b`` (``a`` against itself when ``b`` is None).

    Returns (names of a, names of b, matrix) with matrix[i, j] = cka(a[i], b[j]), float64 of shape
    (len(a), len(b)); against itself the matrix is symmetric with ones on the diagonal. Each layer is centred (and
    its Gram matrix built where one is needed) once, so k layers cost one cross product per pair. All layers must
    hold the same examples in the same order.
    """
    _check_options(kernel, sigma, debiased)
    values = [*a.values(), *(b.values() if isinstance(b, Mapping) else ())] if isinstance(a, Mapping) else []
    dtype = _precision(values, kernel, debiased)
    left = _layer_dict(a, "a", dtype)
    right = left if b is None else _layer_dict(b, "b", dtype)
    first = next(iter(left))
    n = left[first].shape[0]
    for name, t in [*left.items(), *right.items()]:
        if t.shape[0] != n:
            raise RepresentationError(f"layers {first!r} ({n} examples) and {name!r} ({t.shape[0]} examples) differ: "
                                      f"all layers must hold the same examples in the same order")
    _check_examples(n, kernel, debiased, f"layer {first!r}")
    prep_left = {k: _prepare(t, kernel, sigma, f"layer {k!r}", debiased) for k, t in left.items()}
    self_left = {k: _self_hsic(p, debiased, f"layer {k!r}") for k, p in prep_left.items()}
    if b is None:
        prep_right, self_right = prep_left, self_left
    else:
        prep_right = {k: _prepare(t, kernel, sigma, f"layer {k!r}", debiased) for k, t in right.items()}
        self_right = {k: _self_hsic(p, debiased, f"layer {k!r}") for k, p in prep_right.items()}
    names_a, names_b = list(prep_left), list(prep_right)
    out = torch.empty(len(names_a), len(names_b), dtype=torch.float64)
    for i, ka in enumerate(names_a):
        for j, kb in enumerate(names_b):
            if b is None and j < i:
                out[i, j] = out[j, i]
            elif b is None and j == i:
                out[i, j] = 1.0
            else:
                out[i, j] = _hsic(prep_left[ka], prep_right[kb], debiased) / math.sqrt(self_left[ka] * self_right[kb])
    return names_a, names_b, out


def _is_matrix_like(x: Any) -> bool:
    return isinstance(x, (torch.Tensor, np.ndarray))


def _layers(obj: Any, side: str) -> tuple[list[str], list[Any], bool]:
    """(names, values, single) for one side of :meth:`MinibatchCKA.update`."""
    if isinstance(obj, Mapping):
        if not obj:
            raise RepresentationError(f"{side} is an empty dict; pass at least one layer's batch features")
        return [str(k) for k in obj], list(obj.values()), False
    if isinstance(obj, (list, tuple)) and obj and all(_is_matrix_like(v) for v in obj):
        return [str(i) for i in range(len(obj))], list(obj), False
    return [side], [obj], True


class MinibatchCKA:
    """Minibatch CKA of Nguyen, Raghu & Kornblith (2021) between many layer pairs at once.

    Each :meth:`update` takes one minibatch (at least 4 examples) of features for layers A (``xs``) and B
    (``ys``) and adds, for every i and j, the unbiased HSIC₁(K_i, L_j), HSIC₁(K_i, K_i) and HSIC₁(L_j, L_j) of
    Song et al. (2012) computed within the batch. :meth:`value` returns

        CKA_ij = mean_batches HSIC₁(K_i, L_j) / sqrt(mean_batches HSIC₁(K_i, K_i) · mean_batches HSIC₁(L_j, L_j)),

    the ratio of per-batch averages (every batch counts equally, whatever its size). Given a single batch this is
    exactly ``cka(x, y, debiased=True)``; over many batches it estimates the same quantity as debiased CKA on
    all the examples together, without any Gram matrix larger than a batch.

    ``xs`` and ``ys`` are each one matrix (examples, features), a list or tuple of matrices (tensors or arrays),
    or a dict of layer name -> matrix; ``ys=None`` compares ``xs`` with itself. The layout (names and count) is
    fixed by the first update. ``value()`` is a float when both sides are single matrices, otherwise a float64
    tensor of shape (len(xs), len(ys)) in the order of :attr:`x_names` and :attr:`y_names`. With
    ``kernel="rbf"`` the bandwidth is ``sigma`` × the median distance within each batch.
    """

    @keywords_checked
    def __init__(self, kernel: str = "linear", sigma: float = 0.8) -> None:
        _check_options(kernel, sigma)
        self.kernel = kernel
        self.sigma = sigma
        self.reset()

    def reset(self) -> None:
        """Forget all batches and the layout."""
        self.x_names: list[str] | None = None
        self.y_names: list[str] | None = None
        self.n_batches = 0
        self._single = False
        self._same = False
        self._xy: torch.Tensor | None = None
        self._xx: torch.Tensor | None = None
        self._yy: torch.Tensor | None = None

    def _ordered(self, obj: Any, side: str, expected: list[str] | None) -> tuple[list[str], list[Any], bool]:
        names, values, single = _layers(obj, side)
        if expected is None:
            return names, values, single
        if isinstance(obj, Mapping) and set(names) == set(expected):
            lookup = dict(zip(names, values, strict=True))
            return expected, [lookup[k] for k in expected], single
        if names != expected:
            raise RepresentationError(f"{side} must have the layers of the first update, {expected}; got {names}; "
                                      f"call reset() to start over with other layers")
        return names, values, single

    @keywords_checked
    def update(self, xs: Any, ys: Any = None) -> None:
        """Add one minibatch: features of the same examples for layers ``xs`` and ``ys`` (``None``: ``xs``)."""
        same = ys is None
        if self.n_batches and same != self._same:
            raise RepresentationError("the first update compared xs with " + ("itself" if self._same else "ys") +
                                      "; keep doing so in every update, or call reset() first")
        x_names, x_values, x_single = self._ordered(xs, "xs", self.x_names)
        y_names, y_values, y_single = (x_names, x_values, x_single) if same else self._ordered(ys, "ys", self.y_names)
        x_mats = [as_matrix(v, f"xs {k!r}") for k, v in zip(x_names, x_values, strict=True)]
        y_mats = x_mats if same else [as_matrix(v, f"ys {k!r}") for k, v in zip(y_names, y_values, strict=True)]
        labelled = [(f"xs {k!r}", t) for k, t in zip(x_names, x_mats, strict=True)]
        labelled += [] if same else [(f"ys {k!r}", t) for k, t in zip(y_names, y_mats, strict=True)]
        n = labelled[0][1].shape[0]
        for label, t in labelled:
            if t.shape[0] != n:
                raise RepresentationError(f"{labelled[0][0]} has {n} examples but {label} has {t.shape[0]}: every "
                                          f"layer in a batch must hold the same examples in the same order")
        if n < MIN_DEBIASED_EXAMPLES:
            raise RepresentationError(f"each minibatch needs at least {MIN_DEBIASED_EXAMPLES} examples for the "
                                      f"unbiased HSIC; got {n}: use larger batches (Nguyen et al. use hundreds) or "
                                      f"drop a short last batch")
        if self.kernel == "rbf" and n > RBF_MAX_EXAMPLES:
            raise RepresentationError(f"this batch has {n} examples; the RBF kernel builds an n × n Gram matrix per "
                                      f"batch and allows at most {RBF_MAX_EXAMPLES}: use smaller batches")
        prepared = [_prepare(t, self.kernel, self.sigma, label, True, allow_constant=True) for label, t in labelled]
        px = prepared[:len(x_mats)]
        py = px if same else prepared[len(x_mats):]
        xx = torch.tensor([_hsic(p, p, True) for p in px], dtype=torch.float64)
        yy = xx if same else torch.tensor([_hsic(p, p, True) for p in py], dtype=torch.float64)
        xy = torch.empty(len(px), len(py), dtype=torch.float64)
        for i, a in enumerate(px):
            for j, b in enumerate(py):
                if same and j < i:
                    xy[i, j] = xy[j, i]
                elif same and j == i:
                    xy[i, j] = xx[i]
                else:
                    xy[i, j] = _hsic(a, b, True)
        if not self.n_batches:
            self.x_names, self.y_names = x_names, y_names
            self._single, self._same = x_single and y_single, same
            self._xy, self._xx, self._yy = xy, xx, yy
        else:
            self._xy += xy
            self._xx += xx
            self._yy += yy
        self.n_batches += 1

    def value(self) -> float | torch.Tensor:
        """Minibatch CKA from the batches so far: a float for one pair, else a (len(xs), len(ys)) tensor."""
        if not self.n_batches:
            raise RepresentationError("MinibatchCKA has no batches yet; call update(xs, ys) for each minibatch first")
        for names, sums, side in ((self.x_names, self._xx, "xs"), (self.y_names, self._yy, "ys")):
            bad = (sums <= 0).nonzero().flatten().tolist()
            if bad:
                raise RepresentationError(f"{side} layer(s) {[names[i] for i in bad]} have mean unbiased HSIC with "
                                          f"themselves <= 0 over {self.n_batches} batch(es), so CKA is undefined: "
                                          f"the layer is constant or the batches are too small; use larger batches "
                                          f"or leave the layer out")
        out = self._xy / torch.sqrt(torch.outer(self._xx, self._yy))
        if self._same:
            out.fill_diagonal_(1.0)
        return float(out[0, 0]) if self._single else out
