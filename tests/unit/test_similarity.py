from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from hiddenwidgets.analysis.matrices import RepresentationError
from hiddenwidgets.analysis.similarity import MinibatchCKA, cka, cka_matrix

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def rand(n, p, seed=0):
    return torch.randn(n, p, generator=torch.Generator().manual_seed(seed), dtype=F64)


def related(n=60, p=8, q=6, seed=0):
    """X (n, p) and Y (n, q) that share some structure, so their CKA is well inside (0, 1)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, p, generator=g, dtype=F64)
    y = torch.tanh(x @ torch.randn(p, q, generator=g, dtype=F64)) + 0.7 * torch.randn(n, q, generator=g, dtype=F64)
    return x, y


def orthogonal(p, seed=0):
    q, r = torch.linalg.qr(rand(p, p, seed))
    return q * torch.sign(torch.diagonal(r))


# --- independent references, straight from the HSIC formulas on n × n Gram matrices ---------------------------------

def hsic_biased_ref(k, m):
    n = k.shape[0]
    h = torch.eye(n, dtype=F64) - 1.0 / n
    return float(torch.trace(k @ h @ m @ h)) / (n - 1) ** 2


def hsic_unbiased_ref(k, m):
    """Song et al. (2012): [tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1/((n-1)(n-2)) - 2/(n-2)·1ᵀK̃L̃1] / (n(n-3))."""
    n = k.shape[0]
    kt = k - torch.diag(torch.diag(k))
    mt = m - torch.diag(torch.diag(m))
    one = torch.ones(n, dtype=F64)
    return float(torch.trace(kt @ mt) + (one @ kt @ one) * (one @ mt @ one) / ((n - 1) * (n - 2))
                 - 2.0 / (n - 2) * (one @ kt @ mt @ one)) / (n * (n - 3))


def cka_ref(k, m, debiased=False):
    hsic = hsic_unbiased_ref if debiased else hsic_biased_ref
    return hsic(k, m) / math.sqrt(hsic(k, k) * hsic(m, m))


def rbf_ref(x, sigma):
    """Gaussian kernel, bandwidth sigma × median distance over the pairs i < j (torch.median: lower middle)."""
    median = float(torch.median(torch.nn.functional.pdist(x)))
    return torch.exp(-torch.cdist(x, x).square() / (2 * (sigma * median) ** 2))


# --- properties -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("debiased", [False, True])
def test_identical_representations_give_one(kernel, debiased):
    x, _ = related()
    assert cka(x, x, kernel=kernel, debiased=debiased) == pytest.approx(1.0, abs=1e-12)
    assert cka(x.numpy(), x.float(), kernel=kernel, debiased=debiased) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("debiased", [False, True])
def test_invariant_to_orthogonal_transforms_and_isotropic_scaling(kernel, debiased):
    x, y = related()
    base = cka(x, y, kernel=kernel, debiased=debiased)
    assert 0.2 < base < 0.95
    assert cka(x @ orthogonal(8), y, kernel=kernel, debiased=debiased) == pytest.approx(base, abs=1e-10)
    assert cka(x, -3.7 * y @ orthogonal(6, seed=1), kernel=kernel, debiased=debiased) == pytest.approx(base, abs=1e-10)
    assert cka(x * 1e-3 + 5.0, y * 250.0, kernel=kernel, debiased=debiased) == pytest.approx(base, abs=1e-10)


def test_linear_cka_is_not_invariant_to_anisotropic_scaling_or_general_invertible_maps():
    x, y = related()
    base = cka(x, y)
    scale = torch.tensor([10.0, 1.0, 1.0, 0.1, 1.0, 3.0, 1.0, 1.0], dtype=F64)
    assert abs(cka(x * scale, y) - base) > 0.05
    assert cka(x, x * scale) < 0.9
    a = rand(8, 8, seed=3) + 0.1 * torch.eye(8, dtype=F64)
    assert torch.linalg.matrix_rank(a) == 8  # invertible, yet the similarity to itself under it is not 1
    assert cka(x, x @ a) < 0.9
    assert abs(cka(x @ a, y) - base) > 0.02


def test_linear_cka_by_hand():
    # One feature each: linear CKA = corr(x, y)^2. x - mean = (-1.5, -0.5, 0.5, 1.5), y - mean = (-1.5, 0.5, -0.5,
    # 1.5): dot 4, squared norms 5 and 5, so corr = 0.8 and CKA = 0.64.
    assert cka([[1.0], [2.0], [3.0], [4.0]], [[1.0], [3.0], [2.0], [4.0]]) == pytest.approx(0.64, abs=1e-14)
    # x = (-3, -1, 1, 3) (centred) against Y with centred, orthogonal columns y1 = (1, -1, -1, 1), y2 = (-1, -1, 1, 1):
    # XᵀY = (x·y1, x·y2) = (0, 8), so ||YᵀX||_F^2 = 64; ||XᵀX||_F = |x|^2 = 20; YᵀY = diag(4, 4), ||YᵀY||_F = 4√2.
    # CKA = 64 / (20 · 4√2) = 0.4√2 ≈ 0.5657, and shifting X or Y by constants (centring) changes nothing.
    x = torch.tensor([[-3.0], [-1.0], [1.0], [3.0]])
    y = torch.tensor([[1.0, -1.0], [-1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]])
    assert cka(x, y) == pytest.approx(0.4 * math.sqrt(2.0), abs=1e-14)
    assert cka(x + 10.0, y + torch.tensor([5.0, -2.0])) == pytest.approx(0.4 * math.sqrt(2.0), abs=1e-14)


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize(("n", "p", "q"), [(40, 5, 3), (12, 30, 4), (12, 4, 30), (10, 25, 40), (4, 2, 3)])
def test_linear_cka_matches_gram_reference(debiased, n, p, q):
    """Covers the feature-space route (p, q <= n), the Gram route for wide layers (p > n) and the mixed route."""
    g = torch.Generator().manual_seed(n + p + q)
    x = torch.randn(n, p, generator=g, dtype=F64) + 3.0  # uncentred on purpose: the reference centres through H
    y = torch.randn(n, q, generator=g, dtype=F64) + x[:, :1] * torch.rand(q, generator=g, dtype=F64) - 1.0
    expected = cka_ref(x @ x.T, y @ y.T, debiased=debiased)
    assert cka(x, y, debiased=debiased) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_debiased_differs_from_biased_when_features_outnumber_examples():
    x, y = rand(20, 200, seed=1), rand(20, 200, seed=2)  # independent: the biased estimate is inflated
    assert cka(x, y) > 0.5
    assert abs(cka(x, y, debiased=True)) < 0.1


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize(("n", "sigma"), [(30, 0.8), (40, 0.5), (41, 2.0)])  # 435 (odd), 780 and 820 (even) pairs
def test_rbf_cka_matches_gram_reference(debiased, n, sigma):
    x, y = related(n=n, seed=n)
    expected = cka_ref(rbf_ref(x, sigma), rbf_ref(y, sigma), debiased=debiased)
    assert cka(x, y, kernel="rbf", sigma=sigma, debiased=debiased) == pytest.approx(expected, rel=1e-9)


def test_rbf_cka_with_huge_bandwidth_approaches_linear_cka():
    x, y = related(n=80)
    linear = cka(x, y)
    assert abs(cka(x, y, kernel="rbf", sigma=0.2) - linear) > 0.02  # a narrow kernel sees something else
    assert cka(x, y, kernel="rbf", sigma=100.0) == pytest.approx(linear, abs=1e-4)
    assert cka(x, y, kernel="rbf", sigma=100.0, debiased=True) == pytest.approx(cka(x, y, debiased=True), abs=1e-4)


def test_linear_cka_forms_no_n_by_n_matrix():
    class LargestOutput(TorchFunctionMode):  # sees every torch function and tensor method, `@` included
        largest = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(t, torch.Tensor):
                    self.largest = max(self.largest, t.numel())
            return out

    n = 2000
    x, y = rand(n, 20, seed=1), rand(n, 30, seed=2)
    for debiased in (False, True):
        with LargestOutput() as mode:
            cka(x, y, debiased=debiased)
        assert mode.largest <= n * 30  # nothing bigger than the inputs
    with LargestOutput() as mode:  # the probe does see Gram matrices where they are built
        cka(x[:100], y[:100], kernel="rbf")
    assert mode.largest >= 100 * 100


# --- minibatch CKA ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_minibatch_cka_with_one_batch_is_debiased_cka(kernel):
    x, y = related(n=50)
    m = MinibatchCKA(kernel=kernel)
    m.update(x, y)
    assert isinstance(m.value(), float)
    assert m.value() == pytest.approx(cka(x, y, kernel=kernel, debiased=True), rel=1e-12)


def test_minibatch_cka_averages_per_batch_unbiased_hsic():
    x, y = related(n=45, seed=4)
    batches = [slice(0, 10), slice(10, 17), slice(17, 45)]  # unequal sizes still count equally
    m = MinibatchCKA()
    for s in batches:
        m.update(x[s], y[s])
    grams = [(x[s] @ x[s].T, y[s] @ y[s].T) for s in batches]
    xy, xx, yy = (np.mean([hsic_unbiased_ref(*pair) for pair in pairs]) for pairs in
                  (grams, [(k, k) for k, _ in grams], [(m, m) for _, m in grams]))
    assert m.n_batches == 3
    assert m.value() == pytest.approx(xy / math.sqrt(xx * yy), rel=1e-10)


def test_minibatch_cka_over_many_batches_is_close_to_full_debiased_cka():
    x, y = related(n=4096, p=32, q=24, seed=7)
    m = MinibatchCKA()
    for xb, yb in zip(x.split(256), y.split(256), strict=True):
        m.update(xb, yb)
    full = cka(x, y, debiased=True)
    assert 0.3 < full < 0.6
    assert m.value() == pytest.approx(full, abs=0.005)
    assert abs(cka(x[:256], y[:256]) - full) > 0.02  # one biased batch is not this close


def test_minibatch_cka_matrix_shape_and_order():
    layers, (y0, y1) = [related(n=90, seed=s)[0] for s in range(3)], related(n=90, p=5, q=4, seed=9)
    xs = {"c": layers[2], "a": layers[0], "b": layers[1] ** 2}
    batches = (slice(0, 30), slice(30, 60), slice(60, 90))
    m = MinibatchCKA()
    for s in batches:
        order = list(xs) if s.start == 0 else sorted(xs)  # later dicts may list the keys in any order
        m.update({k: xs[k][s] for k in order}, [y0[s], y1[s]])
    assert m.x_names == ["c", "a", "b"] and m.y_names == ["0", "1"]  # the first update fixed the order
    out = m.value()
    assert isinstance(out, torch.Tensor) and out.shape == (3, 2) and out.dtype == F64
    for i, k in enumerate(m.x_names):
        for j, yj in enumerate((y0, y1)):
            single = MinibatchCKA()
            for s in batches:
                single.update(xs[k][s], yj[s])
            assert out[i, j].item() == pytest.approx(single.value(), rel=1e-12)
    same = MinibatchCKA()
    same.update(xs)
    one = same.value()
    assert one.shape == (3, 3) and torch.equal(one, one.T)
    assert torch.equal(torch.diagonal(one), torch.ones(3, dtype=F64))
    assert one[0, 2].item() == pytest.approx(cka(xs["c"], xs["b"], debiased=True), rel=1e-12)


# --- cka_matrix -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("kernel", "debiased"), [("linear", False), ("linear", True), ("rbf", False)])
def test_cka_matrix_against_itself_is_symmetric_with_unit_diagonal_and_pairwise_entries(kernel, debiased):
    x, y = related(n=40, p=6, q=5, seed=2)
    a = {"in": x, "hidden": y, "wide": torch.cat([y, rand(40, 60, seed=5)], dim=1), "out": torch.tanh(y[:, :2])}
    rows, cols, m = cka_matrix(a, kernel=kernel, debiased=debiased)
    assert rows == cols == ["in", "hidden", "wide", "out"]
    assert m.shape == (4, 4) and m.dtype == F64
    assert torch.equal(m, m.T) and torch.equal(torch.diagonal(m), torch.ones(4, dtype=F64))
    for i in range(4):
        for j in range(4):
            if i != j:
                assert m[i, j].item() == pytest.approx(cka(a[rows[i]], a[rows[j]], kernel, debiased), rel=1e-10)


def test_cka_matrix_between_two_networks():
    x, y = related(n=40, seed=3)
    a = {"l1": x, "l2": torch.relu(x)}
    b = {"m1": y, "m2": y[:, :3], "m3": x @ orthogonal(8)}
    rows, cols, m = cka_matrix(a, b, debiased=True)
    assert rows == ["l1", "l2"] and cols == ["m1", "m2", "m3"] and m.shape == (2, 3)
    assert m[1, 1].item() == pytest.approx(cka(a["l2"], b["m2"], debiased=True), rel=1e-10)
    assert m[0, 2].item() == pytest.approx(1.0, abs=1e-12)


# --- bad input --------------------------------------------------------------------------------------------------------

def test_cka_bad_input_says_what_was_expected():
    x = rand(20, 3)
    with pytest.raises(RepresentationError, match=r"X has 20 examples and Y has 19"):
        cka(x, x[:19])
    nan = x.clone()
    nan[4, 1] = float("nan")
    with pytest.raises(RepresentationError, match="Y has NaN"):
        cka(x, nan)
    with pytest.raises(RepresentationError, match="Y is constant over all 20 examples"):
        cka(x, torch.full((20, 2), 3.0))
    with pytest.raises(RepresentationError, match="X is constant"):
        cka(torch.ones(20, 4), x, kernel="rbf")
    with pytest.raises(RepresentationError, match="kernel must be one of 'linear', 'rbf'; got 'cosine'"):
        cka(x, x, kernel="cosine")
    with pytest.raises(RepresentationError, match="sigma"):
        cka(x, x, kernel="rbf", sigma=0.0)
    with pytest.raises(RepresentationError, match=r"at least 4 examples.*has 3"):
        cka(x[:3], x[:3], debiased=True)
    with pytest.raises(RepresentationError, match=r"shape \(examples, features\); got \(20, 3, 2\)"):
        cka(torch.randn(20, 3, 2), x)
    with pytest.raises(RepresentationError, match="MinibatchCKA"):
        cka(torch.zeros(20_001, 1), torch.zeros(20_001, 1), kernel="rbf")  # refused before any Gram matrix
    with pytest.raises(RepresentationError, match="pairs are identical"):
        cka(torch.cat([torch.zeros(15, 2), x[:5, :2]]), x, kernel="rbf")


def test_cka_matrix_and_minibatch_bad_input():
    x = rand(20, 3)
    with pytest.raises(RepresentationError, match=r"layers 'a' \(20 examples\) and 'b' \(18 examples\)"):
        cka_matrix({"a": x, "b": x[:18]})
    with pytest.raises(RepresentationError, match=r"layers 'a' \(20 examples\) and 'z' \(10 examples\)"):
        cka_matrix({"a": x}, {"z": x[:10]})
    with pytest.raises(RepresentationError, match="layer 'dead' is constant"):
        cka_matrix({"a": x, "dead": torch.zeros(20, 5)})
    with pytest.raises(RepresentationError, match="non-empty dict"):
        cka_matrix([x, x])
    m = MinibatchCKA()
    with pytest.raises(RepresentationError, match="no batches yet"):
        m.value()
    with pytest.raises(RepresentationError, match=r"at least 4 examples.*got 3"):
        m.update(x[:3], x[:3])
    with pytest.raises(RepresentationError, match=r"xs '0' has 20 examples but ys '1' has 19"):
        m.update([x], [x, x[:19]])
    m.update({"a": x, "b": x ** 2}, x)
    with pytest.raises(RepresentationError, match=r"layers of the first update, \['a', 'b'\]"):
        m.update({"a": x}, x)
    with pytest.raises(RepresentationError, match="compared xs with ys"):
        m.update({"a": x, "b": x ** 2})
    dead = MinibatchCKA()
    dead.update({"ok": x, "dead": torch.ones(20, 2)}, x)
    with pytest.raises(RepresentationError, match=r"xs layer\(s\) \['dead'\]"):
        dead.value()
    with pytest.raises(RepresentationError, match="kernel must be one of"):
        MinibatchCKA(kernel="poly")


def test_extreme_scales_give_the_same_cka():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(50, 4, generator=g, dtype=torch.float64)
    y = torch.randn(50, 3, generator=g, dtype=torch.float64) + x[:, :3]
    expected = cka(x, y)
    for scale in (1e-120, 1e80, 1e160):
        assert cka(x * scale, y) == pytest.approx(expected, rel=1e-9)
        assert cka(x * scale, y, debiased=True) == pytest.approx(cka(x, y, debiased=True), rel=1e-9)


def test_cka_leaves_its_inputs_as_they_were_whatever_their_type():
    # centring works in place on cka's own float64 copies only; a float64 tensor or array is the caller's memory
    g = torch.Generator().manual_seed(5)
    base = torch.randn(50, 6, generator=g, dtype=torch.float64)
    other = base @ torch.randn(6, 4, generator=g, dtype=torch.float64)
    for x, y in ((base, other), (base.numpy(), other.numpy()), (base.float(), other.float()), (base, base)):
        before = [torch.as_tensor(v).clone() for v in (x, y)]
        value = cka(x, y)
        assert all(torch.equal(torch.as_tensor(v), b) for v, b in zip((x, y), before, strict=True))
        assert value == pytest.approx(cka(before[0].tolist(), before[1].tolist()), rel=1e-6)


# --- precision ----------------------------------------------------------------------------------------------------

def test_single_precision_input_is_multiplied_in_float32_and_summed_in_float64():
    """Linear CKA of float32 features runs its n-long products in float32 (as the network computed them) and sums
    the (p, q) products in float64: the value stays within 1e-7 of the float64 computation from the definition on
    10,000 x 64 correlated features (a float32 sum of the squared products drifts ~1e-6). Reference: the
    feature-space form ||XᵀY||² / (||XᵀX|| ||YᵀY||) of centred X, Y (Kornblith et al. 2019, eq. 5) in float64,
    checked against the Gram-matrix definition above on a subset first."""
    x64, y64 = related(n=10_000, p=64, q=48, seed=3)
    x32, y32 = x64.float(), y64.float()

    def feature_space(x, y):
        x, y = x.double() - x.double().mean(0), y.double() - y.double().mean(0)
        return float((x.T @ y).square().sum() / ((x.T @ x).norm() * (y.T @ y).norm()))

    xs, ys = x32[:300].double(), y32[:300].double()
    assert feature_space(xs, ys) == pytest.approx(cka_ref(xs @ xs.T, ys @ ys.T), abs=1e-12)
    want = feature_space(x32, y32)
    got = cka(x32, y32)
    assert got == pytest.approx(want, abs=1e-7)
    assert got != cka(x32.double(), y32.double())  # the float32 route was taken (float64 agrees to 1e-15)
    # one float64 side makes the whole computation float64: the higher precision wins
    assert cka(x32.double(), y32) == pytest.approx(want, abs=1e-13)
    names, _, matrix = cka_matrix({"x": x32, "y": y32})
    assert names == ["x", "y"] and float(matrix[0, 1]) == pytest.approx(want, abs=1e-7)


def test_single_precision_linear_cka_reads_its_checks_off_the_products_and_falls_back_where_they_fail(monkeypatch):
    """The float32 route checks NaN/inf, constant layers and the scale on the (p, p) products instead of passes over
    the data; wherever a check fails it takes the careful route (which scales, and says what is wrong)."""
    from hiddenwidgets.analysis import similarity

    calls = []
    careful = similarity._prepare
    monkeypatch.setattr(similarity, "_prepare", lambda *a, **k: calls.append(a[3]) or careful(*a, **k))
    x64, y64 = related(n=400, p=12, q=9, seed=4)
    x, y = x64.float(), y64.float()
    expected = cka(x64, y64)
    calls.clear()
    assert cka(x, y) == pytest.approx(expected, abs=1e-6) and calls == []  # the products alone
    assert cka(x, x) == pytest.approx(1.0, abs=1e-6) and calls == []
    # products that would overflow (1e20² · 400 > 3.4e38) or underflow (1e-25² < 1.2e-38) in float32: rescaled
    for scale in (1e20, 1e-25):
        calls.clear()
        assert cka(x * scale, y) == pytest.approx(expected, abs=1e-6) and calls == ["X", "Y"]
    # a layer that varies by 1e-5 around 1e4 is not constant: its centred products decide (careful route)
    offset = y.clone()
    offset[:, 0] = 1e4 + 1e-5 * torch.arange(400)
    assert offset[:, 0].unique().numel() > 1
    want = cka(x64, offset.double())
    calls.clear()
    assert cka(x, offset) == pytest.approx(want, abs=1e-5) and calls == ["X", "Y"]
    # NaN, inf and a constant layer: refused with the same words as the float64 route
    for bad, message in ((float("nan"), "Y has NaN or inf in 1 of 400 examples \\(first: example 7\\)"),
                         (float("inf"), "Y has NaN or inf in 1 of 400 examples")):
        broken = y.clone()
        broken[7, 2] = bad
        with pytest.raises(RepresentationError, match=message):
            cka(x, broken)
    with pytest.raises(RepresentationError, match="X is constant over all 400 examples"):
        cka(torch.full((400, 3), 7.0), y)
