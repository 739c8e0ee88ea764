"""TCAV: the CAV classifier, directional derivatives, scores and their t-test (hiddenwidgets.analysis.tcav)."""

from __future__ import annotations

import json
import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from hiddenwidgets.analysis.tcav import (
    CAV,
    MIN_EXAMPLES,
    ConceptError,
    _derivative_ttest,
    _fit_binary_logistic,
    _new_observation_ttest,
    _ttest,
    cav,
    directional_derivatives,
    tcav,
)

D = 8
DIRECTION = torch.tensor([0.6, 0.8, 0, 0, 0, 0, 0, 0], dtype=torch.float64)  # unit


def linear_model(weights: torch.Tensor, nonlinear: bool = False) -> nn.Module:
    """h = x (an Identity layer named "h"), logits = W h (or W tanh(h))."""
    head = nn.Linear(weights.shape[1], weights.shape[0], bias=False)
    with torch.no_grad():
        head.weight.copy_(weights)
    parts = [("h", nn.Identity())] + ([("act", nn.Tanh())] if nonlinear else []) + [("out", head)]
    return nn.Sequential(OrderedDict(parts)).double()


def shifted_data(n: int, concept: int, shift: float = 3.0, seed: int = 0) -> torch.Tensor:
    """Standard normal examples; the first ``concept`` are moved by ``shift`` along DIRECTION."""
    x = torch.randn(n, D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x[:concept] += shift * DIRECTION
    return x


# --- the classifier ---


def test_logistic_fit_matches_the_hand_solution():
    # Two examples x = +e1 (y = 1) and x = -e1 (y = 0). By symmetry b = 0 and w = w e1, with objective
    # J(w) = log(1 + e^-w) + l2 w^2 / 2, J'(w) = -1 / (1 + e^w) + l2 w. At w = ln 3, 1 / (1 + e^w) = 1/4, so
    # J'(ln 3) = 0 exactly when l2 = 1 / (4 ln 3).
    l2 = 1 / (4 * math.log(3))
    y = torch.tensor([1.0, 0.0])
    for dim in (1, 5):  # 5 features > 2 examples: solved in the examples' span
        x = torch.zeros(2, dim)
        x[0, 0], x[1, 0] = 1.0, -1.0
        w, b = _fit_binary_logistic(x, y, l2)
        expected = torch.zeros(dim, dtype=torch.float64)
        expected[0] = math.log(3)
        torch.testing.assert_close(w, expected, atol=1e-9, rtol=0)
        assert b == pytest.approx(0.0, abs=1e-9)
    # With no informative feature (x = 0) the penalty keeps w = 0 and the unpenalised bias is the log-odds of the
    # labels: two of three are 1, so b = ln(2/1).
    w, b = _fit_binary_logistic(torch.zeros(3, 1), torch.tensor([1.0, 1.0, 0.0]), 0.1)
    assert w.abs().max() < 1e-9 and b == pytest.approx(math.log(2), abs=1e-9)


def test_logistic_fit_is_a_stationary_point_of_its_objective():
    g = torch.Generator().manual_seed(1)
    for n, f in ((40, 6), (30, 200)):  # more examples than features, and fewer
        x = torch.randn(n, f, generator=g, dtype=torch.float64)
        y = (torch.rand(n, generator=g) < 0.5).double()
        x[y == 1, 0] += 1.0
        w, b = _fit_binary_logistic(x, y, 0.05)
        wt, bt = w.clone().requires_grad_(), torch.tensor(b, dtype=torch.float64, requires_grad=True)
        sign = 2 * y - 1
        loss = nn.functional.softplus(-sign * (x @ wt + bt)).mean() + 0.025 * wt.pow(2).sum()
        gw, gb = torch.autograd.grad(loss, [wt, bt])
        assert gw.abs().max() < 1e-7 and gb.abs() < 1e-7


# --- CAVs and directional derivatives ---


def test_cav_points_along_the_direction_separating_the_concept():
    x = shifted_data(400, 200)
    model = linear_model(torch.eye(3, D, dtype=torch.float64))
    c = cav(model, x, np.arange(200), np.arange(200, 400), "h", name="shifted")
    assert (c.layer, c.concept, c.pool, c.n_concept, c.n_random) == ("h", "shifted", "flatten", 200, 200)
    assert c.vector.dtype == torch.float32 and c.vector.norm().item() == pytest.approx(1.0, abs=1e-6)
    # the CAV points towards the concept; the classes differ by 3 standard deviations along DIRECTION, where the
    # best rule is right with probability Phi(1.5) = 0.933 (50 held-out examples per side)
    assert float(c.vector.double() @ DIRECTION) > 0.9
    assert 0.8 < c.accuracy <= 1.0
    flipped = cav(model, x, np.arange(200, 400), np.arange(200), "h")
    assert float(flipped.vector.double() @ DIRECTION) < -0.9


def test_directional_derivative_of_a_linear_head_is_w_dot_v_for_every_input():
    w = torch.randn(3, D, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    x = shifted_data(30, 0)
    v = torch.nn.functional.normalize(torch.arange(1.0, D + 1), dim=0)
    c = CAV(layer="h", concept="c", vector=v, accuracy=1.0, pool="flatten", n_concept=5, n_random=5)
    for k in range(3):
        s = directional_derivatives(linear_model(w), x, c, k)
        torch.testing.assert_close(s, (w[k] @ v.double()).expand(30), atol=1e-6, rtol=0)
    # after a tanh: d logit_k / d h_j = W[k, j] (1 - tanh(h_j)^2)
    s = directional_derivatives(linear_model(w, nonlinear=True), x, c, 1)
    torch.testing.assert_close(s, ((1 - torch.tanh(x) ** 2) * w[1]) @ v.double(), atol=1e-6, rtol=0)


def test_mean_pooled_derivative_moves_every_position_of_a_channel():
    # layer output (N, C=2, H=2, W=2) = the input; logit_k = sum A[k, c, i, j] h[c, i, j]. Moving every position of
    # channel c by v_c changes logit_k by sum_c v_c sum_ij A[k, c, i, j]:
    #   class 0: A = 1..8 -> channel sums 10 and 26 -> 0.6 * 10 + 0.8 * 26 = 26.8
    #   class 1: A = 1 on channel 0 only -> 0.6 * 4 = 2.4
    a = torch.stack([torch.arange(1.0, 9.0), torch.tensor([1.0, 1, 1, 1, 0, 0, 0, 0])])
    model = nn.Sequential(OrderedDict([("h", nn.Identity()), ("flat", nn.Flatten()), ("out", nn.Linear(8, 2))]))
    with torch.no_grad():
        model.out.weight.copy_(a)
        model.out.bias.zero_()
    x = torch.randn(4, 2, 2, 2, generator=torch.Generator().manual_seed(3))
    c = CAV(layer="h", concept="c", vector=torch.tensor([0.6, 0.8]), accuracy=1.0, pool="mean", n_concept=5,
            n_random=5)
    torch.testing.assert_close(directional_derivatives(model, x, c, 0), torch.full((4,), 26.8, dtype=torch.float64))
    torch.testing.assert_close(directional_derivatives(model, x, c, 1), torch.full((4,), 2.4, dtype=torch.float64))
    with pytest.raises(ConceptError, match="2 entries but layer 'h' gives 8 features"):
        directional_derivatives(model, x, CAV("h", "c", c.vector, 1.0, "flatten", 5, 5), 0)


def test_layer_followed_by_an_inplace_relu_is_read_before_the_relu():
    # lin = identity map, then ReLU(inplace=True), then logits = W relu(h): dS/dh_j = W[k, j] 1[h_j > 0]
    w = torch.randn(2, D, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    model = nn.Sequential(OrderedDict([("lin", nn.Linear(D, D)), ("relu", nn.ReLU(inplace=True)),
                                       ("out", nn.Linear(D, 2, bias=False))])).double()
    with torch.no_grad():
        model.lin.weight.copy_(torch.eye(D))
        model.lin.bias.zero_()
        model.out.weight.copy_(w)
    x = shifted_data(40, 20)
    c = cav(model, x, np.arange(20), np.arange(20, 40), "lin")
    # lin's output is x itself (negative entries included), so the CAV is the one an identity layer gives on x
    same = cav(linear_model(w), x, np.arange(20), np.arange(20, 40), "h")
    torch.testing.assert_close(c.vector, same.vector, atol=1e-6, rtol=0)
    assert c.accuracy == same.accuracy
    s = directional_derivatives(model, x, c, 0)
    torch.testing.assert_close(s, ((x > 0).double() * w[0]) @ c.vector.double(), atol=1e-6, rtol=0)


def test_tuple_output_layer_uses_the_selected_tensor():
    class Pair(nn.Module):
        def forward(self, x):
            return x * 2.0, x.sum(dim=1, keepdim=True)  # (h, aux)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.pair = Pair()
            self.out = nn.Linear(D, 2, bias=False)

        def forward(self, x):
            h, aux = self.pair(x)
            return self.out(h) + aux

    net = Net().double()
    x = shifted_data(20, 10)
    c = cav(net, x, np.arange(10), np.arange(10, 20), "pair", selector=0)
    assert c.vector.numel() == D and c.selector == 0
    s = directional_derivatives(net, x, c, 1)  # d logit_1 / d h = W[1] (aux does not depend on h)
    torch.testing.assert_close(s, (net.out.weight[1].detach() @ c.vector.double()).expand(20), atol=1e-6, rtol=0)


# --- TCAV ---


def test_tcav_scores_follow_the_sign_of_w_dot_d():
    # logit_k = w_k . x, so S_k(x) = w_k . v for every x, and v is within ~25 degrees of d: the score is 1 when
    # w_k . d > 0 and 0 when w_k . d < 0 (class 2: w . d = 0.5, |w_perp| = 1, so w . v > 0.5 cos - sin > 0).
    e = torch.zeros(D, dtype=torch.float64)
    e[2] = 1.0
    w = torch.stack([DIRECTION, -DIRECTION, 0.5 * DIRECTION + e])
    x = shifted_data(600, 60)
    result = tcav(linear_model(w), x, {"d": np.arange(60)}, ["h"], class_examples=np.arange(300, 600),
                  random_sets=5, epoch=3, test="paper")
    rows = {r["target"]: r for r in result.records()}
    assert sorted(rows) == [0, 1, 2]
    assert [rows[k]["score"] for k in range(3)] == [1.0, 0.0, 1.0]
    assert all(rows[k]["score_std"] == 0.0 and rows[k]["epoch"] == 3 for k in range(3))
    assert all(float(c.vector.double() @ DIRECTION) > 0.9 for c in result.cavs[("d", "h")])
    assert rows[0]["cav_accuracy"] > 0.8 and rows[0]["examples"] == 300
    assert result.set_size == 60 and result.epoch == 3
    for k in range(3):  # the reported p-value is the t-test of the stored score lists, Bonferroni over 3 tests
        p = _ttest(result.scores[("d", "h", k)], result.random_scores[("h", k)])
        assert rows[k]["p_value"] == p and rows[k]["p_corrected"] == min(1.0, 3 * p)
        assert rows[k]["significant"] == (min(1.0, 3 * p) < 0.05)
    json.dumps(result.records())


def test_a_zero_derivative_does_not_count_as_positive():
    # logits = W relu(h), h = x: inputs with every coordinate negative have gradient 0, so S = 0 for every CAV;
    # inputs with every coordinate positive have S = w_0 · v = DIRECTION · v > 0.9. Half of each: score exactly 0.5.
    model = nn.Sequential(OrderedDict([("h", nn.Identity()), ("relu", nn.ReLU()),
                                       ("out", nn.Linear(D, 1, bias=False))])).double()
    with torch.no_grad():
        model.out.weight.copy_(DIRECTION[None, :])
    x = shifted_data(500, 60)
    x[400:450] = x[400:450].abs() + 0.1
    x[450:500] = -x[450:500].abs() - 0.1
    result = tcav(model, x, {"d": np.arange(60)}, "h", class_examples=np.arange(400, 500), random_sets=3, test="paper")
    np.testing.assert_array_equal(result.scores[("d", "h", 0)], 0.5)


@pytest.mark.parametrize("test", ["paper", "random-concepts"])
def test_opposite_logits_give_complementary_scores(test):
    # logit_1 = -logit_0 (a tanh MLP with output rows w and -w), so S_1(x) = -S_0(x) for every input and CAV: the
    # two scores of every CAV, concept or random, add up to exactly 1 (no derivative is exactly 0 here), and the
    # random baseline over the pair is centred at exactly 0.5.
    torch.manual_seed(5)
    mlp = nn.Sequential(OrderedDict([("fc", nn.Linear(D, 16)), ("act", nn.Tanh()), ("out", nn.Linear(16, 2))]))
    with torch.no_grad():
        mlp.out.weight[1] = -mlp.out.weight[0]
        mlp.out.bias.zero_()
    x = shifted_data(300, 40).float()
    result = tcav(mlp, x, {"c": np.arange(40)}, ["fc", "act"], class_examples=np.arange(100, 300), random_sets=6,
                  test=test)
    for layer in ("fc", "act"):
        for scores in (result.random_scores, result.scores):
            pairs = [(key, (*key[:-1], 1)) for key in scores if key[-1] == 0]
            for k0, k1 in pairs:
                np.testing.assert_allclose(scores[k0] + scores[k1], 1.0, rtol=0, atol=1e-12)
        both = np.concatenate([result.random_scores[(layer, 0)], result.random_scores[(layer, 1)]])
        assert both.mean() == pytest.approx(0.5, abs=1e-12)


class Quadratic(nn.Module):
    """logit_0 = a·h + |h|²/2, logit_1 = -a·h + |h|²/2 with h = x: the gradients a + h and -a + h vary from input to
    input around ±a, so for standard normal x and a unit direction v, S_0 = a·v + h·v > 0 with probability
    Phi(a·v): about 0.5 for a random direction in 50-D, Phi(|a|) = Phi(2) = 0.977 for v = a / |a|."""

    def __init__(self, a: torch.Tensor):
        super().__init__()
        self.h = nn.Identity()
        self.register_buffer("a", a)

    def forward(self, x):
        h = self.h(x)
        q = 0.5 * h.pow(2).sum(dim=1)
        return torch.stack([q + h @ self.a, q - h @ self.a], dim=1)


@pytest.mark.parametrize("test", ["paper", "random-concepts", "derivative"])
def test_a_concept_along_the_gradient_is_significant_and_a_random_one_is_not(test):
    a = torch.zeros(50)
    a[0] = 2.0
    x = torch.randn(900, 50, generator=torch.Generator().manual_seed(10))
    x[:40, 0] += 3.0  # the concept: shifted along a
    result = tcav(Quadratic(a), x, {"along a": np.arange(40), "noise": np.arange(40, 80)}, "h",
                  class_examples=np.arange(500, 900), random_pool=np.arange(80, 500), random_sets=10, test=test)
    rows = {(r["concept"], r["target"]): r for r in result.records()}
    assert result.test == test and result.set_size == (38 if test == "paper" else 40)  # 420 // 11 for R_0 too
    for k, sign in ((0, 1.0), (1, -1.0)):
        along = rows[("along a", k)]
        assert along["significant"] and along["p_corrected"] < 0.01
        # each CAV's expected score is Phi(±a·v); 400 inputs: binomial sd <= 0.025
        expected = np.mean([0.5 * (1 + math.erf(sign * 2.0 * c.vector[0].item() / math.sqrt(2)))
                            for c in result.cavs[("along a", "h")]])
        assert abs(along["score"] - expected) < 0.05
        if test != "paper":  # "paper" flags this random set too (p 0.003, 0.01): see the module docstring
            assert not rows[("noise", k)]["significant"] and rows[("noise", k)]["p_value"] > 0.1
    assert rows[("along a", 0)]["cav_accuracy"] > 0.75 and rows[("noise", 0)]["cav_accuracy"] < 0.65
    if test != "paper":
        # the CAV of R_i against R_j is minus that of R_j against R_i, so the two scores of each pair add up to 1
        # (no derivative is exactly 0) and the random concepts' mean scores average exactly 0.5
        assert len(result.random_cavs["h"]) == 90
        assert torch.equal(result.random_cavs["h"][0].vector, -result.random_cavs["h"][9].vector)  # (0,1), (1,0)
        assert rows[("noise", 0)]["random_score"] == pytest.approx(0.5, abs=1e-12)
        r = result.random_scores[("h", 0)]
        along = rows[("along a", 0)]
        p = (_new_observation_ttest(along["score"], r) if test == "random-concepts" else
             _derivative_ttest(along["derivative"], result.random_derivatives[("h", 0)]))
        assert along["p_value"] == pytest.approx(p) and along["test"] == test


def test_batched_scores_equal_the_one_cav_path_on_a_conv_layer_with_mean_pooling():
    torch.manual_seed(11)
    model = nn.Sequential(OrderedDict([("conv", nn.Conv2d(1, 4, 3, padding=1)), ("act", nn.ReLU()),
                                       ("flat", nn.Flatten()), ("out", nn.Linear(4 * 6 * 6, 3))]))
    x = torch.randn(120, 1, 6, 6, generator=torch.Generator().manual_seed(11))
    x[:20] += 1.0
    labels = np.arange(120) % 3
    result = tcav(model, x, {"bright": np.arange(20)}, ["conv", "act"], labels=labels, pool="mean", random_sets=3,
                  set_size=10, batch_size=32, test="paper")
    for layer in ("conv", "act"):
        cavs = result.cavs[("bright", layer)]
        assert all(c.vector.numel() == 4 and c.pool == "mean" for c in cavs)
        for k in range(3):
            own = np.flatnonzero(labels == k)
            expected = [(directional_derivatives(model, x[own], c, k) > 0).double().mean().item() for c in cavs]
            np.testing.assert_allclose(result.scores[("bright", layer, k)], expected, rtol=0, atol=1e-12)
            randoms = [(directional_derivatives(model, x[own], c, k) > 0).double().mean().item()
                       for c in result.random_cavs[layer]]
            np.testing.assert_allclose(result.random_scores[(layer, k)], randoms, rtol=0, atol=1e-12)


def test_ttest_matches_the_hand_value():
    # means 0.7 and 0.5, both sample variances 0.01: t = 0.2 / sqrt(0.01 (1/3 + 1/3)) = sqrt(6), 4 degrees of
    # freedom. Student's t CDF for 4 df: F(t) = 1/2 + 3/8 u (1 - t^2 / (12 (1 + t^2/4))), u = t / sqrt(1 + t^2/4);
    # with t^2 = 6: u = sqrt(2.4), p = 2 (1 - F) = 1 - 0.6 sqrt(2.4) = 0.0704840.
    assert _ttest([0.6, 0.7, 0.8], [0.4, 0.5, 0.6]) == pytest.approx(1 - 0.6 * math.sqrt(2.4), rel=1e-9)
    assert _ttest([1.0, 1.0, 1.0], [1.0, 1.0]) == 1.0  # both constant: no evidence of a difference
    assert _ttest([1.0, 1.0, 1.0], [0.0, 0.0]) == 0.0  # both constant and different


def test_new_observation_ttest_matches_the_hand_value():
    # sample 0.4, 0.5, 0.6: mean 0.5, sd 0.1, m = 3; value 0.9: t = 0.4 / (0.1 sqrt(4/3)) = 2 sqrt(3), 2 degrees of
    # freedom. Student's t CDF for 2 df: F(t) = 1/2 + t / (2 sqrt(2 + t^2)), so p = 1 - t / sqrt(2 + t^2)
    # = 1 - sqrt(12 / 14) = 0.0741799.
    assert _new_observation_ttest(0.9, [0.4, 0.5, 0.6]) == pytest.approx(1 - math.sqrt(6 / 7), rel=1e-9)
    assert _new_observation_ttest(0.1, [0.4, 0.5, 0.6]) == pytest.approx(1 - math.sqrt(6 / 7), rel=1e-9)
    assert _new_observation_ttest(0.5, [0.5, 0.5]) == 1.0 and _new_observation_ttest(0.7, [0.5, 0.5]) == 0.0


def test_derivative_ttest_matches_the_hand_value():
    # random concepts' mean derivatives -0.1, 0, 0.1 (m = 3): mean 0, sd 0.1; the concept's 0.4 gives
    # t = 0.4 / ((2/3) · 0.1 · sqrt(4/3)) = 3 sqrt(3) with 2 degrees of freedom, and (Student's t CDF for 2 df,
    # as above) p = 1 - t / sqrt(2 + t^2) = 1 - sqrt(27/29) = 0.0350873.
    assert _derivative_ttest(0.4, [-0.1, 0.0, 0.1]) == pytest.approx(1 - math.sqrt(27 / 29), rel=1e-9)
    assert _derivative_ttest(-0.4, [-0.1, 0.0, 0.1]) == pytest.approx(1 - math.sqrt(27 / 29), rel=1e-9)
    # without the (m - 1) / m factor the same numbers give t = 2 sqrt(3): the "random-concepts" formula
    assert _new_observation_ttest(0.4, [-0.1, 0.0, 0.1]) == pytest.approx(1 - math.sqrt(6 / 7), rel=1e-9)
    # a class whose logit does not move along any direction of the layer: every derivative is 0
    assert _derivative_ttest(0.0, [0.0, 0.0, 0.0]) == 1.0 and _derivative_ttest(0.3, [0.0, 0.0]) == 0.0


def test_derivatives_are_the_class_gradient_along_each_cav():
    # logit_k = w_k · h: every input's S_k is w_k · v, so a CAV's mean derivative is w_k · v, a random concept's is
    # the mean of w_k · v over its m - 1 CAVs, and those sum to 0 (the CAV of R_i against R_j is minus R_j's
    # against R_i)
    w = torch.randn(2, D, generator=torch.Generator().manual_seed(12), dtype=torch.float64)
    x = shifted_data(400, 40)
    m = 4
    result = tcav(linear_model(w), x, {"d": np.arange(40)}, "h", class_examples=np.arange(300, 400), random_sets=m,
                  random_pool=np.arange(40, 300))
    assert result.test == "derivative"
    for k, row in enumerate(result.records()):
        expected = [float(w[k] @ c.vector.double()) for c in result.cavs[("d", "h")]]
        np.testing.assert_allclose(result.derivatives[("d", "h", k)], expected, rtol=0, atol=1e-6)
        pairs = np.array([float(w[k] @ c.vector.double()) for c in result.random_cavs["h"]]).reshape(m, m - 1)
        np.testing.assert_allclose(result.random_derivatives[("h", k)], pairs.mean(axis=1), rtol=0, atol=1e-6)
        assert abs(result.random_derivatives[("h", k)].sum()) < 1e-9
        assert (row["target"], row["test"]) == (k, "derivative")
        assert row["derivative"] == pytest.approx(np.mean(expected), abs=1e-6)
        assert row["random_derivative_std"] == pytest.approx(np.std(pairs.mean(axis=1), ddof=1), abs=1e-6)
        assert row["p_value"] == _derivative_ttest(row["derivative"], result.random_derivatives[("h", k)])


def test_when_every_gradient_is_alike_a_planted_concept_is_significant_and_a_null_one_is_not():
    # logits = W h: every input has the same gradient w_k, so every CAV, random ones too, scores exactly 0 or 1, and
    # a random concept's mean score is the fraction of the other random sets it lies beyond along w_k. A concept
    # shifted 3 standard deviations along w_0 scores 1.000 ± 0.000 for class 0, and so does the random set that lies
    # furthest along w_0: the TCAV scores cannot tell them apart (the "random-concepts" p-value is ~0.1 however
    # strong the concept), the derivatives can.
    w = torch.randn(3, D, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    x = torch.randn(680, D, generator=torch.Generator().manual_seed(13), dtype=torch.float64)
    x[:40] += 3 * w[0] / w[0].norm()
    m = 10
    result = tcav(linear_model(w), x, {"planted": np.arange(40), "null": np.arange(40, 80)}, "h",
                  class_examples=np.arange(480, 680), random_pool=np.arange(80, 480), random_sets=m)
    rows = {(r["concept"], r["target"]): r for r in result.records()}
    planted = rows[("planted", 0)]
    assert planted["score"] == 1.0 and planted["score_std"] == 0.0
    for k in range(3):  # each random CAV scores 0 or 1: its random concept's mean is a multiple of 1 / (m - 1)
        np.testing.assert_allclose(result.random_scores[("h", k)] * (m - 1),
                                   np.round(result.random_scores[("h", k)] * (m - 1)), rtol=0, atol=1e-12)
    old = _new_observation_ttest(1.0, result.random_scores[("h", 0)])
    assert old > 0.05  # the previous default: not significant even before the correction for 6 tests
    assert planted["significant"] and planted["p_corrected"] < 0.01
    assert not any(rows[("null", k)]["significant"] for k in range(3))


def test_reconstruction_of_the_issue_a_perfect_cnn_s_concept_scoring_one_is_significant():
    # Issue 10: on a CNN with 100% accuracy, a concept scoring 1.000 ± 0.000 for its class was not significant under
    # the previous default. Here: 8x8 images of three kinds (a horizontal bar, a vertical bar, a 2x2 blob) plus noise,
    # a small CNN trained until it classifies every image right; the concept is 40 bar images (not tested).
    g = torch.Generator().manual_seed(0)
    n = 300
    y = torch.arange(n) % 3
    x = 0.2 * torch.randn(n, 1, 8, 8, generator=g)
    where = torch.randint(1, 7, (n,), generator=g).tolist()
    for i, (kind, r) in enumerate(zip(y.tolist(), where, strict=True)):
        if kind == 0:
            x[i, 0, r, 1:7] += 1.0
        elif kind == 1:
            x[i, 0, 1:7, r] += 1.0
        else:
            x[i, 0, r - 1:r + 1, r - 1:r + 1] += 1.0
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict([("conv", nn.Conv2d(1, 4, 3, padding=1)), ("act", nn.ReLU()),
                                       ("pool", nn.MaxPool2d(2)), ("flat", nn.Flatten()), ("hidden", nn.Linear(64, 16)),
                                       ("hidden_act", nn.ReLU()), ("out", nn.Linear(16, 3))]))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        for idx in torch.randperm(n, generator=g).split(50):
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            if (model(x).argmax(1) == y).all():
                break
    with torch.no_grad():
        assert (model(x).argmax(1) == y).all()
    labels = y.numpy().copy()
    bars = np.flatnonzero(labels == 0)[:40]
    labels[bars] = -1  # the concept's images are not tested
    null = np.flatnonzero(labels >= 0)[1::7][:40]
    result = tcav(model, x, {"bars": bars, "null": null}, "hidden", labels=labels, targets=[0, 1, 2], random_sets=10)
    rows = {(r["concept"], r["target"]): r for r in result.records()}
    bar = rows[("bars", 0)]
    old = _new_observation_ttest(1.0, result.random_scores[("hidden", 0)])
    assert bar["score"] == 1.0 and bar["score_std"] == 0.0
    assert old * 6 > 0.05  # the previous default: not significant after the correction for 6 tests
    assert bar["significant"] and bar["p_corrected"] < 0.01
    assert not any(rows[("null", k)]["significant"] for k in range(3))


def test_one_forward_for_the_activations_and_one_per_class_for_the_gradients():
    calls = []
    model = linear_model(torch.randn(3, D, generator=torch.Generator().manual_seed(7), dtype=torch.float64))
    model.register_forward_pre_hook(lambda module, args: calls.append(len(args[0])))
    try:
        x = shifted_data(200, 20)
        labels = np.arange(200) % 3
        tcav(model, x, {"a": np.arange(20), "b": np.arange(20, 40)}, ["h", "out"], labels=labels, random_sets=3,
             set_size=10, batch_size=1000, test="paper")
    finally:
        model._forward_pre_hooks.clear()
    # activations of 2 concepts x 20 + 4 random sets x 10 = 80 examples, then each class's own examples
    assert calls == [80, 67, 67, 66]


def test_model_is_left_as_found_also_when_it_fails():
    torch.manual_seed(8)
    model = nn.Sequential(OrderedDict([("fc", nn.Linear(D, 12)), ("bn", nn.BatchNorm1d(12)), ("act", nn.ReLU()),
                                       ("drop", nn.Dropout(0.5)), ("out", nn.Linear(12, 3))]))
    model.train()
    model.fc.bias.requires_grad_(False)
    stats = model.bn.running_mean.clone()
    x = shifted_data(120, 20).float()
    labels = np.arange(120) % 3
    tcav(model, x, {"c": np.arange(20)}, ["fc", "act"], labels=labels, random_sets=3, set_size=10, test="paper")
    c = cav(model, x, np.arange(20), np.arange(20, 40), "act")
    directional_derivatives(model, x, c, 0)

    def check() -> None:
        assert all(m.training for m in model.modules())
        assert [p.requires_grad for p in model.parameters()] == [True, False, True, True, True, True]
        assert all(p.grad is None for p in model.parameters())
        assert not any(m._forward_hooks for m in model.modules())
        torch.testing.assert_close(model.bn.running_mean, stats)  # eval mode: running statistics untouched

    check()

    def boom(module, args):
        if torch.is_grad_enabled():  # the gradient pass
            raise RuntimeError("boom")

    handle = model.out.register_forward_pre_hook(boom)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            tcav(model, x, {"c": np.arange(20)}, ["fc"], labels=labels, random_sets=3, set_size=10, test="paper")
    finally:
        handle.remove()
    check()


def test_to_dataframe_has_one_row_per_record():
    pd = pytest.importorskip("pandas")
    x = shifted_data(100, 10)
    result = tcav(linear_model(torch.eye(2, D, dtype=torch.float64)), x, {"c": np.arange(10)}, "h",
                  class_examples=np.arange(50, 100), random_sets=2, set_size=10, correction=None, test="paper")
    df = result.to_dataframe()
    assert isinstance(df, pd.DataFrame) and len(df) == 2
    assert {"concept", "layer", "target", "score", "p_value", "significant", "cav_accuracy"} <= set(df.columns)


# --- errors ---


@pytest.fixture(scope="module")
def setup():
    model = nn.Sequential(OrderedDict([("hidden", nn.Linear(D, 4)), ("out", nn.Linear(4, 3))]))
    x = torch.randn(60, D, generator=torch.Generator().manual_seed(9))
    return model, x, np.arange(60) % 3


@pytest.mark.parametrize("kwargs, message", [
    ({"concepts": {"c": []}}, "concept 'c' is empty"),
    ({"concepts": {"c": [0, 1, 2, 3]}}, f"has 4 example.*at least {MIN_EXAMPLES} per side"),
    ({"concepts": {"c": [0, 1, 2, 3, 60]}}, r"index 60, out of range: there are 60 inputs \(indices 0..59\)"),
    ({"concepts": {"c": [0, 1, 2, 3, 3]}}, "lists example 3 more than once"),
    ({"concepts": {"c": [0.0, 1, 2, 3, 4]}}, "integer example indices"),
    ({"concepts": {}}, "non-empty dict"),
    ({"layers": ["hiden"]}, "no layer named 'hiden'.*Closest names: 'hidden'"),
    ({"random_sets": 10, "set_size": 10}, r"11 disjoint random sets .* need 110 random examples; the pool has 55: "
                                          r"pass set_size=5 or less, random_sets=4 or fewer"),
    ({"random_sets": 12, "set_size": None}, r"too few for 13 disjoint random sets .* of at least 5 each; pass "
                                             r"random_sets=10 or fewer, a larger random_pool"),
    ({"random_sets": 12, "set_size": None, "test": "random-concepts"}, r"too few for 12 disjoint random sets of"),
    ({"test": "bogus"}, "test must be one of"),
    ({"random_sets": 1}, "random_sets must be an int >= 2"),
    ({"labels": None}, "pass labels="),
    ({"class_examples": np.arange(10)}, "not both"),
    ({"labels": np.arange(60) % 2, "targets": [2]}, "no input is labelled 2"),
    ({"targets": [5], "labels": None, "class_examples": np.arange(10)}, "target class 5 is out of range"),
    ({"labels": [str(i) for i in range(60)]}, "labels must be integer class indices"),
    ({"pool": "max"}, "pool must be one of"),
    ({"l2": 0.0}, "l2 must be a finite number > 0"),
    ({"correction": "holm"}, "correction must be 'bonferroni' or None"),
    ({"alpha": 1.5}, "alpha must be a number between 0 and 1"),
])
def test_bad_input_says_what_to_do(setup, kwargs, message):
    model, x, labels = setup
    args = {"concepts": {"c": np.arange(5)}, "layers": ["hidden"], "labels": labels, "random_sets": 3,
            "set_size": 5, **kwargs}
    with pytest.raises(ConceptError, match=message):
        tcav(model, x, args.pop("concepts"), args.pop("layers"), **{"test": "paper", **args})


def test_cav_errors(setup):
    model, x, _ = setup
    with pytest.raises(ConceptError, match="the random set has 3 example"):
        cav(model, x, np.arange(5), [10, 11, 12], "hidden")
    with pytest.raises(ConceptError, match="boolean mask of length 3 but there are 60 inputs"):
        cav(model, x, [True, False, True], np.arange(5, 10), "hidden")
    dead = nn.Sequential(OrderedDict([("z", nn.Linear(D, 3))]))
    with torch.no_grad():
        dead.z.weight.zero_()
        dead.z.bias.zero_()
    with pytest.raises(ConceptError, match="identical on every training example"):
        cav(dead, x, np.arange(5), np.arange(5, 10), "z")
    with pytest.raises(ConceptError, match="must be a tensor"):
        cav(model, x.numpy(), np.arange(5), np.arange(5, 10), "hidden")
