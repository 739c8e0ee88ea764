"""Mutual information between a layer's activations T, the inputs X and the labels Y, in bits.

Pure functions: tensors (or arrays) in, bits out. Each estimator states what it assumes:

- :func:`binned_mi` -- the estimator of Shwartz-Ziv & Tishby (2017), *Opening the Black Box of Deep Neural Networks
  via Information*: each unit is digitised into equal bins; the inputs are N distinct, equally likely samples and
  the network is deterministic, so I(X;T) = H(T).
- :func:`kde_mi` -- the pairwise-distance bounds of Kolchinsky & Tracey (2017) on the information in a noisy
  layer T + Z, Z ~ N(0, sigma^2 I), as used by Saxe et al. (2018), *On the information bottleneck theory of deep
  learning*: KL distances give an upper bound, Bhattacharyya distances a lower bound.
- :func:`sample_propagation_mi` -- a Monte Carlo estimate (not a bound) of the same noisy-layer information,
  Goldfeld et al. (2019), *Estimating Information Flow in Deep Neural Networks*: for continuous inputs and wide
  layers.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch

from ..pipeline.progress import check_progress, reporter

__all__ = ["binned_mi", "entropy_bits", "kde_mi", "sample_propagation_mi"]

LN2 = math.log(2.0)


class InformationWarning(UserWarning):
    """An estimate is valid but likely misleading (saturated bins, clipped activations)."""


def entropy_bits(counts: np.ndarray) -> float:
    """Shannon entropy in bits of the distribution proportional to ``counts``."""
    counts = np.asarray(counts, dtype=np.float64)
    counts = counts[counts > 0]
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum()) + 0.0


def _as_2d(activations: Any, name: str = "activations") -> np.ndarray:
    if isinstance(activations, torch.Tensor):
        activations = activations.detach().cpu().numpy()
    a = np.asarray(activations)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        a = a.reshape(a.shape[0], -1)
    if a.shape[0] == 0:
        raise ValueError(f"{name} holds no samples")
    return a


def _labels(labels: Any, n: int) -> np.ndarray:
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    y = np.asarray(labels)
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot
        y = y.argmax(axis=1)
    y = y.reshape(-1)
    if y.shape[0] != n:
        raise ValueError(f"labels has {y.shape[0]} entries for {n} samples; pass one label per row of activations")
    if not np.issubdtype(y.dtype, np.integer) and not np.issubdtype(y.dtype, np.bool_):
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise TypeError(f"labels must be integer class ids (got dtype {y.dtype} with non-integer values); "
                            "mutual information with Y here is for discrete labels -- pass y.long() or argmax")
        y = y.astype(np.int64)
    return y


NONFINITE = ("raise", "drop")
BLOCK_BYTES = 64 * 2**20  # memory for one block of pairwise terms: the estimators never hold an N x N matrix


def _finite(t: np.ndarray, y: np.ndarray, nonfinite: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Refuse activations with NaN or inf (``nonfinite="raise"``), or drop their rows with a warning that says how
    many (``"drop"``): a distance, a bin or a range computed from them would be meaningless, silently."""
    if nonfinite not in NONFINITE:
        raise ValueError(f"nonfinite must be one of {NONFINITE}; got {nonfinite!r}")
    bad = ~np.isfinite(t).all(axis=1)
    count = int(bad.sum())
    if not count:
        return t, y
    values = int((~np.isfinite(t)).sum())
    if nonfinite == "raise":
        raise ValueError(f"{where}: {values} NaN/inf values in {count} of {len(t)} samples; mutual information "
                         "cannot be estimated from them. Check the layer for overflow, or pass nonfinite='drop' to "
                         "leave those samples out (said in a warning)")
    warnings.warn(f"{where}: dropped {count} of {len(t)} samples holding {values} NaN/inf values; the estimate "
                  f"is over the other {len(t) - count}", InformationWarning, stacklevel=3)
    if count == len(t):
        raise ValueError(f"{where}: every sample holds NaN/inf values; nothing is left to estimate from")
    return t[~bad], y[~bad]


def _pattern_ids(codes: np.ndarray) -> np.ndarray:
    """One integer per row of small non-negative integer codes, equal iff the rows are equal."""
    n, d = codes.shape
    if d == 0:
        return np.zeros(n, dtype=np.int64)
    base = int(codes.max()) + 1
    if d * math.log2(max(base, 2)) < 62:
        weights = base ** np.arange(d - 1, -1, -1, dtype=np.int64)
        return codes.astype(np.int64) @ weights
    return np.unique(codes, axis=0, return_inverse=True)[1].reshape(-1)


def _discrete_mi(ids: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(H(T), I(T;Y)) for discrete pattern ids and labels, plug-in estimates in bits."""
    _, ids, t_counts = np.unique(ids, return_inverse=True, return_counts=True)  # ids now < N: no overflow below
    _, y, y_counts = np.unique(y, return_inverse=True, return_counts=True)
    joint = ids.reshape(-1).astype(np.int64) * len(y_counts) + y.reshape(-1)
    _, j_counts = np.unique(joint, return_counts=True)
    h_t = entropy_bits(t_counts)
    return h_t, max(0.0, h_t + entropy_bits(y_counts) - entropy_bits(j_counts))


def _check_inputs_discrete(inputs: Any) -> None:
    x = _as_2d(inputs, "inputs")
    if np.issubdtype(x.dtype, np.floating) and not np.all(x == np.round(x)):
        raise ValueError(
            "binned_mi assumes N distinct, equally likely discrete inputs, so that the deterministic network gives "
            "I(X;T) = H(T). These inputs are continuous: then I(X;T) is infinite in theory and the binned H(T) "
            "measures the bin size, not the network. Use kde_mi(...) (bounds on a noisy layer) or "
            "sample_propagation_mi(...) instead.")
    if len(np.unique(x, axis=0)) != x.shape[0]:
        raise ValueError("binned_mi's I(X;T) = H(T) needs distinct inputs; some rows of inputs repeat. "
                         "Deduplicate the evaluation set (each input once).")


def binned_mi(activations: Any, labels: Any, *, n_bins: int = 30,
              value_range: tuple[float, float] | str = (-1.0, 1.0), inputs: Any = None,
              nonfinite: str = "raise") -> tuple[float, float]:
    """I(X;T) and I(T;Y) in bits by binning, as in Shwartz-Ziv & Tishby (2017).

    Each unit of ``activations`` (samples x units) is digitised against ``n_bins`` equally spaced edges (float32,
    ``np.digitize``, as in the paper's code: ``n_bins - 1`` bins inside the range and one bin below and one above
    it); a sample's pattern of bin indices is its discrete T. Assumes the rows come from N distinct, equally
    likely inputs through a deterministic network, so I(X;T) = H(T) <= log2 N, and I(T;Y) = H(T) + H(Y) - H(T,Y).

    Parameters
    ----------
    activations : (N, units) tensor or array (other shapes are flattened per sample).
    labels : N integer class ids (or one-hot rows).
    n_bins : number of edges (default 30, the paper's).
    value_range : ``(lo, hi)`` for the edges, default ``(-1, 1)`` for tanh; ``"observed"`` spans the observed min
        and max (for unbounded activations such as ReLU); ``"adaptive"`` places each unit's edges at its quantiles
        (equal-mass bins).
    inputs : optional (N, ...) inputs; if given, checked to be discrete and distinct (else ``ValueError``).
    nonfinite : activations with NaN or inf are refused (``"raise"``, default: they would land in a bin, or make
        the observed range infinite) or their samples dropped with a warning (``"drop"``).

    Warnings: activations outside a fixed range are clipped into the outer bins and counted (once per call
    site); when most patterns are unique the estimate is saturated at log2 N (the numbers are in the warning).
    """
    t = _as_2d(activations).astype(np.float32)
    y = _labels(labels, t.shape[0])
    if inputs is not None:
        _check_inputs_discrete(inputs)
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 2:
        raise ValueError(f"n_bins must be an integer >= 2, got {n_bins!r}")
    t, y = _finite(t, y, nonfinite, "binned_mi")
    if isinstance(value_range, str):
        if value_range == "observed":
            lo, hi = float(np.nanmin(t)), float(np.nanmax(t))
            codes = np.digitize(t, np.linspace(lo, hi, n_bins, dtype=np.float32))
        elif value_range == "adaptive":
            qs = np.nanquantile(t, np.linspace(0, 1, n_bins), axis=0).astype(np.float32)  # (n_bins, units)
            codes = np.stack([np.digitize(t[:, j], qs[:, j]) for j in range(t.shape[1])], axis=1)
        else:
            raise ValueError(f"value_range must be (lo, hi), 'observed' or 'adaptive', got {value_range!r}")
    else:
        lo, hi = value_range
        if not lo < hi:
            raise ValueError(f"value_range must have lo < hi, got {value_range}")
        outside = int(((t < lo) | (t > hi)).sum())
        if outside:
            warnings.warn(f"{outside} of {t.size} activations lie outside value_range {value_range} and were "
                          "clipped into the outer bins; pass value_range='observed' for unbounded activations",
                          InformationWarning, stacklevel=2)
        codes = np.digitize(t, np.linspace(lo, hi, n_bins, dtype=np.float32))
    h_t, i_ty = _discrete_mi(_pattern_ids(codes), y)
    n = t.shape[0]
    if n > 1 and h_t > math.log2(n) - 0.05:
        distinct = len(np.unique(_pattern_ids(codes)))
        warnings.warn(f"{distinct} distinct binned patterns for {n} samples: nearly every bin holds one sample, so "
                      f"I(X;T) = {h_t:.3f} is saturated at log2 N = {math.log2(n):.3f} bits. Use fewer bins, "
                      "fewer units or more samples.", InformationWarning, stacklevel=2)
    return h_t, i_ty


def _row_block(n: int, width: int, itemsize: int) -> int:
    """Rows per block so that one block of ``width`` pairwise terms per row fits in ``BLOCK_BYTES``."""
    return max(1, min(n, BLOCK_BYTES // max(1, width * itemsize * 2)))


def _mixture_entropy_term(t: torch.Tensor, scale: float, tick: Any = None) -> torch.Tensor:
    """-(1/N) sum_i log((1/N) sum_j exp(-||t_i - t_j||^2 / scale)), in nats; in row blocks, never N x N."""
    n = t.shape[0]
    sq = (t * t).sum(dim=1)
    total = torch.zeros((), dtype=t.dtype)
    step = _row_block(n, n, t.element_size())
    for start in range(0, n, step):
        rows = t[start:start + step]
        d = (sq[start:start + step, None] + sq[None, :] - 2.0 * (rows @ t.T)).clamp_(min=0.0)
        total += (torch.logsumexp(-d / scale, dim=1) - math.log(n)).sum()
        if tick is not None:
            tick(len(rows))
    return -total / n


def _positive_number(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) or not value > 0 \
            or not math.isfinite(value):
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def _by_label(fn, t: torch.Tensor, y: np.ndarray) -> float:
    total = 0.0
    for label in np.unique(y):
        idx = torch.from_numpy(np.nonzero(y == label)[0])
        total += len(idx) / len(y) * float(fn(t[idx]))
    return total


def kde_mi(activations: Any, labels: Any, *, noise_variance: float = 1e-3, bound: str = "upper",
           dtype: torch.dtype = torch.float64, nonfinite: str = "raise", progress: Any = None) -> tuple[float, float]:
    """I(X;T) and I(T;Y) in bits for the noisy layer T + Z, Z ~ N(0, noise_variance * I), by pairwise distances.

    Kolchinsky & Tracey (2017), *Estimating Mixture Entropy with Pairwise Distances*, as used by Saxe et al. (2018):
    with the N samples as equally likely inputs, T + Z is a mixture of N Gaussians around the activations h_i, and

        upper:  I(X;T) <= -(1/N) sum_i log (1/N) sum_j exp(-||h_i - h_j||^2 / (2 s))      (KL distances)
        lower:  I(X;T) >= -(1/N) sum_i log (1/N) sum_j exp(-||h_i - h_j||^2 / (8 s))      (Bhattacharyya)

    with s = ``noise_variance``; I(T;Y) = H(T) - sum_y p(y) H(T | Y=y), each entropy bounded the same way.
    Both are in [0, log2 N]. Cost: O(N^2 * units) time; memory O(N * units) plus blocks of pairwise terms of at
    most 64 MB (never an N x N matrix). NaN/inf activations are refused, or their samples dropped with a warning
    (``nonfinite="drop"``). ``progress``: None (default) shows a bar if the estimate lasts over a second, True
    always, False never, or a callable ``progress(rows_done, rows_total)``.
    """
    check_progress(progress)
    if bound not in ("upper", "lower"):
        raise ValueError(f"bound must be 'upper' or 'lower', got {bound!r}")
    _positive_number("noise_variance", noise_variance)
    a = _as_2d(activations)
    a, y = _finite(a, _labels(labels, a.shape[0]), nonfinite, "kde_mi")
    t = torch.as_tensor(a, dtype=dtype)
    scale = (2.0 if bound == "upper" else 8.0) * noise_variance

    with reporter(progress, "kde_mi", unit="row", total=2 * len(t)) as report:
        done = [0]

        def tick(rows: int) -> None:
            done[0] += rows
            report(done[0], 2 * len(t))

        def term(u: torch.Tensor) -> float:
            return float(_mixture_entropy_term(u, scale, tick))

        i_xt = term(t)
        i_ty = i_xt - _by_label(term, t, y)
    return max(0.0, i_xt) / LN2, max(0.0, i_ty) / LN2


def sample_propagation_mi(activations: Any, labels: Any, *, noise_variance: float = 1e-1, samples: int = 4,
                          seed: int = 0, dtype: torch.dtype = torch.float64,
                          nonfinite: str = "raise", progress: Any = None) -> tuple[float, float]:
    """I(X;T+Z) and I(T+Z;Y) in bits by Monte Carlo over the Gaussian mixture (Goldfeld et al. 2019).

    The noisy layer T + Z, Z ~ N(0, noise_variance * I), given the N samples as equally likely inputs, is the
    mixture (1/N) sum_i N(h_i, s I). Its differential entropy is estimated by drawing ``samples`` points from each
    component and averaging -log p_mixture; I(X; T+Z) = h(T+Z) - h(Z). Unlike :func:`binned_mi` it needs no
    discrete inputs and no bins, and unlike :func:`kde_mi` it is an estimate, not a bound.

    Limits: it measures the *noise-regularised* layer, so values depend on ``noise_variance`` (compare runs only at
    equal noise) and saturate at log2 N; the Monte Carlo error shrinks as 1/sqrt(N * samples); cost is
    O(N^2 * samples * units) time, and memory O(N * samples * units) plus blocks of at most 64 MB. ``progress``:
    as for :func:`kde_mi` (counted in draws).
    """
    check_progress(progress)
    _positive_number("noise_variance", noise_variance)
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    a = _as_2d(activations)
    a, y = _finite(a, _labels(labels, a.shape[0]), nonfinite, "sample_propagation_mi")
    t = torch.as_tensor(a, dtype=dtype)
    gen = torch.Generator().manual_seed(seed)
    sigma = math.sqrt(noise_variance)

    def mixture_cross_entropy(h: torch.Tensor) -> float:
        # -E[log p_mix(h_i + sigma z)] minus h(Z), i.e. the information term, in nats
        n, d = h.shape
        z = torch.randn(n * samples, d, generator=gen, dtype=h.dtype)
        h_sq = (h * h).sum(1)
        total = 0.0
        step = _row_block(n * samples, n, h.element_size())
        for start in range(0, n * samples, step):  # blocks of draws: never an (N * samples) x N matrix
            zb = z[start:start + step]
            draws = h[torch.arange(start, start + len(zb)) // samples] + sigma * zb
            sq = (draws * draws).sum(1)[:, None] + h_sq[None, :] - 2.0 * draws @ h.T
            log_mix = torch.logsumexp(-sq.clamp(min=0) / (2 * noise_variance), dim=1) - math.log(n)
            # log N(x; h, s I) = -||x - h||^2 / 2s - d/2 log(2 pi s), and the constant cancels against h(Z).
            # h(Z) is estimated from the same draws (||z||^2 / 2 has mean d/2): a control variate that leaves the
            # estimate unbiased and removes most of its Monte Carlo noise.
            total += float((-log_mix - 0.5 * (zb * zb).sum(1)).sum())
            done[0] += len(zb)
            report(done[0], 2 * len(t) * samples)
        return total / (n * samples)

    done = [0]
    with reporter(progress, "sample_propagation_mi", unit="draw", total=2 * len(t) * samples) as report:
        i_xt = mixture_cross_entropy(t)
        i_ty = i_xt - _by_label(mixture_cross_entropy, t, y)
    return max(0.0, i_xt) / LN2, max(0.0, i_ty) / LN2

