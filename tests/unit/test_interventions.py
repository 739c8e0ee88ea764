"""Interventions along a direction in a layer (hiddenwidgets.analysis.interventions)."""

from __future__ import annotations

import json
import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from hiddenwidgets.analysis.interventions import InterventionError, InterventionResult, intervene
from hiddenwidgets.analysis.tcav import CAV

D = 6


def linear(weights: torch.Tensor) -> nn.Module:
    """h = x (an Identity layer named "h"), logits = W h."""
    head = nn.Linear(weights.shape[1], weights.shape[0], bias=False)
    with torch.no_grad():
        head.weight.copy_(weights)
    return nn.Sequential(OrderedDict([("h", nn.Identity()), ("out", head)])).double()


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(D, D, generator=g, dtype=torch.float64) + 3 * torch.eye(D, dtype=torch.float64)  # invertible
    x = torch.randn(20, D, generator=g, dtype=torch.float64)
    v = torch.randn(D, generator=g, dtype=torch.float64)
    return w, x, v / v.norm()


def test_projecting_out_changes_logits_by_minus_h_dot_v_times_w_v(data):
    # h' = h - (h·v) v, so W h' - W h = -(h·v) W v for every example
    w, x, v = data
    r = intervene(linear(w), x, "h", 5 * v, batch_size=7)  # any length: the direction is normalised
    coef = x @ v
    expected = -coef[:, None] * (w @ v)[None, :]
    torch.testing.assert_close((r.logits_after - r.logits_before).double(), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(r.coefficient_before.double(), coef, atol=1e-5, rtol=0)
    assert r.coefficient_after.abs().max() < 1e-5
    assert (r.mode, r.value, r.pool, r.layer) == ("project", None, "flatten", "h")
    torch.testing.assert_close(r.probs_before, r.logits_before.softmax(dim=1))


def test_clamping_sets_the_component_to_the_value(data):
    w, x, v = data
    r = intervene(linear(w), x, "h", v, mode="clamp", value=1.5)
    h_after = torch.linalg.solve(w, r.logits_after.double().T).T  # W is invertible: read h' back from the logits
    torch.testing.assert_close(h_after @ v, torch.full((20,), 1.5, dtype=torch.float64), atol=1e-4, rtol=0)
    torch.testing.assert_close(h_after - x, -((x @ v) - 1.5)[:, None] * v, atol=1e-4, rtol=0)  # moved along v only
    assert r.value == 1.5
    # default value: the mean component over the reference inputs
    ref = x[:5] + 2 * v
    r = intervene(linear(w), x, "h", v, mode="clamp", reference=ref)
    assert r.value == pytest.approx(float((ref @ v).mean()), abs=1e-5)
    torch.testing.assert_close(r.coefficient_after, torch.full((20,), r.value), atol=1e-5, rtol=0)
    # no value and no reference: clamp to 0, which is projecting
    r0 = intervene(linear(w), x, "h", v, mode="clamp")
    torch.testing.assert_close(r0.logits_after, intervene(linear(w), x, "h", v).logits_after)


def test_mean_pool_moves_every_position_of_each_channel_alike():
    # h (N, C=2, 2, 2) = x; logit_k = sum A[k] * h. Clamping the channel means' component along v to c moves every
    # position of channel c by -(m·v - c) v_c, so logit_k changes by -(m·v - c) sum_c v_c sum_ij A[k, c, i, j]:
    #   class 0: A = 1..8 (channel sums 10, 26), class 1: ones on channel 0 (sums 4, 0); v = (0.6, 0.8)
    a = torch.stack([torch.arange(1.0, 9.0), torch.tensor([1.0, 1, 1, 1, 0, 0, 0, 0])])
    model = nn.Sequential(OrderedDict([("h", nn.Identity()), ("flat", nn.Flatten()), ("out", nn.Linear(8, 2))]))
    with torch.no_grad():
        model.out.weight.copy_(a)
    x = torch.randn(5, 2, 2, 2, generator=torch.Generator().manual_seed(1))
    v = torch.tensor([0.6, 0.8])
    r = intervene(model, x, "h", v, mode="clamp", value=0.25, pool="mean")
    m = x.mean(dim=(2, 3)) @ v
    torch.testing.assert_close(r.coefficient_before, m)
    torch.testing.assert_close(r.coefficient_after, torch.full((5,), 0.25), atol=1e-6, rtol=0)
    expected = -(m - 0.25)[:, None] * torch.tensor([0.6 * 10 + 0.8 * 26, 0.6 * 4])[None, :]
    torch.testing.assert_close(r.logits_after - r.logits_before, expected, atol=1e-5, rtol=1e-5)


def test_a_flipped_prediction_with_hand_computed_probabilities():
    # W = I, v = e0, x = (2, 1): logits (2, 1) -> (0, 1) after projecting. p0 = sigmoid(1) = 0.7311 before and
    # sigmoid(-1) = 0.2689 after, so the target (predicted) class loses 0.4621 and the prediction flips to 1.
    # x = (-1, 3) keeps its prediction (class 1): logits (-1, 3) -> (0, 3).
    model = linear(torch.eye(2, dtype=torch.float64))
    x = torch.tensor([[2.0, 1.0], [-1.0, 3.0]], dtype=torch.float64)
    r = intervene(model, x, "h", [1.0, 0.0])
    assert r.predicted_before.tolist() == [0, 1] and r.predicted_after.tolist() == [1, 1]
    assert r.changed.tolist() == [0]
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    assert r.target_drop[0].item() == pytest.approx(sig(1) - sig(-1), abs=1e-6)
    # example 1: p1 = sigmoid(4) before, sigmoid(3) after
    assert r.target_drop[1].item() == pytest.approx(sig(4) - sig(3), abs=1e-6)
    summary = r.summary()
    assert summary["changed"] == 1 and summary["changed_fraction"] == 0.5 and summary["examples"] == 2
    own_change = ((sig(-1) - sig(1)) + (sig(3) - sig(4))) / 2
    assert summary["mean_predicted_prob_change"] == pytest.approx(own_change, abs=1e-6)
    assert summary["mean_target_drop"] == pytest.approx(-own_change, abs=1e-6)
    records = r.records()
    assert records[0]["changed"] and not records[1]["changed"]
    assert (records[0]["predicted_before"], records[0]["predicted_after"]) == (0, 1)
    json.dumps(records)
    json.dumps(summary)
    # an explicit target: class 1 for both
    r1 = intervene(model, x, "h", [1.0, 0.0], target=1)
    assert r1.target.tolist() == [1, 1]
    assert r1.target_drop[0].item() == pytest.approx((1 - sig(1)) - (1 - sig(-1)), abs=1e-6)


def test_tuple_output_gets_only_its_selected_tensor_replaced():
    class Pair(nn.Module):
        def forward(self, x):
            return x, x.sum(dim=1, keepdim=True)  # (h, aux)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.pair = Pair()

        def forward(self, x):
            h, aux = self.pair(x)
            return torch.cat([h, aux], dim=1)  # logits: h and the untouched sum of the input

    x = torch.tensor([[1.0, 2.0, 3.0]])
    r = intervene(Net(), x, "pair", [0.0, 1.0, 0.0], selector=0)
    torch.testing.assert_close(r.logits_after, torch.tensor([[1.0, 0.0, 3.0, 6.0]]))  # aux still 1 + 2 + 3
    with pytest.raises(InterventionError, match="direction has 3 entries but layer 'pair' gives 1"):
        intervene(Net(), x, "pair", [0.0, 1.0, 0.0], selector=1)
    # a CAV carries its selector
    c = CAV(layer="pair", concept="c", vector=torch.tensor([0.0, 1.0, 0.0]), accuracy=1.0, pool="flatten",
            n_concept=5, n_random=5, selector=0)
    torch.testing.assert_close(intervene(Net(), x, "pair", c).logits_after, r.logits_after)


def test_dict_output_gets_only_its_selected_entry_replaced():
    class Named(nn.Module):
        def forward(self, x):
            return {"aux": x.sum(dim=1, keepdim=True), "hidden": x}

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.named = Named()

        def forward(self, x):
            out = self.named(x)
            return torch.cat([out["hidden"], out["aux"]], dim=1)

    x = torch.tensor([[1.0, 2.0, 3.0]])
    r = intervene(Net(), x, "named", [1.0, 0.0, 0.0], selector="hidden", mode="clamp", value=-4.0)
    torch.testing.assert_close(r.logits_after, torch.tensor([[-4.0, 2.0, 3.0, 6.0]]))
    with pytest.raises(InterventionError, match="callable selector"):
        intervene(Net(), x, "named", [1.0, 0.0, 0.0], selector=lambda out: out["hidden"])


def test_a_cav_is_accepted_as_the_direction(data):
    w, x, v = data
    c = CAV(layer="h", concept="c", vector=v.float(), accuracy=0.9, pool="flatten", n_concept=5, n_random=5)
    r = intervene(linear(w), x, "h", c)
    torch.testing.assert_close(r.logits_after, intervene(linear(w), x, "h", v).logits_after)
    with pytest.raises(InterventionError, match="CAV was trained on layer 'h' but the intervention is on 'out'"):
        intervene(linear(w), x, "out", c)


def test_model_is_left_as_found_also_when_it_raises():
    model = nn.Sequential(OrderedDict([("fc", nn.Linear(D, 4)), ("drop", nn.Dropout(0.5)), ("out", nn.Linear(4, 3))]))
    model.train()
    model.fc.weight.requires_grad_(False)
    x = torch.randn(8, D)

    def check() -> None:
        assert all(m.training for m in model.modules())
        assert [p.requires_grad for p in model.parameters()] == [False, True, True, True]
        assert not any(m._forward_hooks for m in model.modules())

    r = intervene(model, x, "fc", torch.ones(4))
    check()
    # eval mode inside: dropout off, so the unedited pass is the model's eval output
    with torch.no_grad():
        torch.testing.assert_close(r.logits_before, model.eval()(x))
    model.train()
    calls = []

    def boom(module, args):
        calls.append(1)
        if len(calls) == 2:  # the edited pass
            raise RuntimeError("boom")

    handle = model.out.register_forward_pre_hook(boom)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            intervene(model, x, "fc", torch.ones(4))
    finally:
        handle.remove()
    check()
    with pytest.raises(InterventionError, match="has 5 entries but layer 'fc' gives 4 features"):
        intervene(model, x, "fc", torch.ones(5))
    check()


@pytest.mark.parametrize("kwargs, message", [
    ({"direction": torch.zeros(D)}, "zero vector, which has no direction"),
    ({"direction": torch.tensor([1.0, math.nan, 0, 0, 0, 0])}, "NaN or inf"),
    ({"direction": torch.ones(D + 2)}, r"has 8 entries but layer 'h' gives 6 features per example"),
    ({"direction": torch.ones(2, 3)}, r"1-D vector .* got shape \(2, 3\)"),
    ({"direction": "up"}, "vector of numbers"),
    ({"layer": "hh"}, "no layer named 'hh'.*Closest names: 'h'"),
    ({"mode": "zero"}, "mode must be one of"),
    ({"value": 1.0}, "value= is for mode='clamp'"),
    ({"mode": "clamp", "value": 1.0, "reference": torch.zeros(2, D)}, "either value= .* or reference="),
    ({"pool": "max"}, "pool must be one of"),
    ({"target": 9}, r"target 9 is out of range: the model outputs 6 classes"),
    ({"target": [0, 1]}, "got 2 targets for 20 inputs"),
    ({"inputs": np.zeros((3, D))}, "inputs must be a tensor"),
    ({"selector": 0}, "returns a single tensor; drop the selector"),
])
def test_bad_input_says_what_to_do(data, kwargs, message):
    w, x, v = data
    args = {"inputs": x, "layer": "h", "direction": v, **kwargs}
    with pytest.raises(InterventionError, match=message):
        intervene(linear(w), args.pop("inputs"), args.pop("layer"), args.pop("direction"), **args)


def test_result_type_and_unused_layer():
    class Skip(nn.Module):
        def __init__(self):
            super().__init__()
            self.unused = nn.Linear(D, D)
            self.out = nn.Linear(D, 2)

        def forward(self, x):
            return self.out(x)

    with pytest.raises(InterventionError, match="did not run in the forward pass"):
        intervene(Skip(), torch.randn(3, D), "unused", torch.ones(D))
    r = intervene(Skip(), torch.randn(3, D), "out", [1.0, 0.0])
    assert isinstance(r, InterventionResult) and r.probs_after.shape == (3, 2)
