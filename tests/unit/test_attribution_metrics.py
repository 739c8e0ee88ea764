from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

import hiddenwidgets as hw
from hiddenwidgets.methods import metrics

warnings.filterwarnings("ignore", module="captum")


class SumModel(nn.Module):
    """logits = [a * sum(x), 0]: the target-0 probability depends only on how many pixels are kept."""

    def __init__(self, a: float = 0.7):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a))

    def forward(self, x):
        s = self.a * x.flatten(1).sum(1)
        return torch.stack([s, torch.zeros_like(s)], dim=1)


def sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def test_deletion_and_insertion_auc_by_hand():
    x = torch.ones(1, 1, 2, 2)
    out = metrics.deletion_insertion(SumModel(0.7), x, torch.rand(1, 2, 2), target=0, steps=4)
    # deletion removes one pixel per step: sums 4, 3, 2, 1, 0 at fractions 0, 1/4, ..., 1
    probs = [sigmoid(0.7 * s) for s in (4, 3, 2, 1, 0)]
    auc = sum((probs[i] + probs[i + 1]) / 2 * 0.25 for i in range(4))
    torch.testing.assert_close(out["deletion_curve"][0], torch.tensor(probs))
    assert out["deletion"].item() == pytest.approx(auc, rel=1e-6)
    # a constant image blurs to itself: insertion changes nothing, the curve stays at sigmoid(4a)
    assert out["insertion"].item() == pytest.approx(sigmoid(2.8), rel=1e-6)


def test_deletion_rewards_maps_that_point_at_what_the_model_uses():
    class FirstPixel(nn.Module):
        def forward(self, x):
            v = 6 * x[:, 0, 0, 0]
            return torch.stack([v, torch.zeros_like(v)], 1)

    x = torch.ones(1, 1, 4, 4)
    good = torch.zeros(1, 4, 4)
    good[0, 0, 0] = 1.0
    bad = 1.0 - good
    auc_good = metrics.deletion_insertion(FirstPixel(), x, good, 0, steps=16)["deletion"]
    auc_bad = metrics.deletion_insertion(FirstPixel(), x, bad, 0, steps=16)["deletion"]
    assert auc_good.item() < 0.6 < auc_bad.item()


def test_gradients_of_a_linear_model_have_zero_infidelity_and_sensitivity():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x = torch.randn(5, 1, 2, 2)
    target = torch.tensor([0, 1, 2, 0, 1])
    grads = model[1].weight[target].detach().view(5, 1, 2, 2)  # d logit / d x: exact for a linear model
    assert metrics.infidelity(model, x, grads, target).abs().max().item() < 1e-8
    assert metrics.infidelity(model, x, -grads, target).min().item() > 1e-3
    assert metrics.sensitivity(model, x, "saliency", target).max().item() == pytest.approx(0.0, abs=1e-6)


def test_sanity_check_separates_model_dependent_maps_from_model_independent_ones():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                          nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    x = torch.randn(4, 1, 6, 6)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    saliency = metrics.sanity_check(model, x, lambda m: hw.attribute(m, x, "saliency", 0))
    edges = metrics.sanity_check(model, x, lambda m: x[:, :, 1:, :] - x[:, :, :-1, :])  # ignores the model
    assert [r["layer"] for r in saliency] == ["5", "2", "0"]  # top layer first, cumulatively
    assert saliency[-1]["spearman"] < 0.5
    assert all(r["spearman"] == pytest.approx(1.0) for r in edges)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the user's model untouched


def test_metric_input_errors():
    with pytest.raises(hw.AttributionError, match=r"need images \(N, C, H, W\)"):
        metrics.deletion_insertion(SumModel(), torch.ones(2, 4), torch.ones(2, 4), 0)
    with pytest.raises(hw.AttributionError, match="no layers with parameters"):
        metrics.sanity_check(nn.Sequential(nn.ReLU()), torch.ones(1, 2), lambda m: torch.ones(1, 2))
