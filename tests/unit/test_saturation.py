"""Saturated units (hiddenwidgets.pipeline.summaries): bounds only where a layer's type states them, the share of
saturated units checked against hand-built tensors, merged calls, the strided look at large outputs, and the
monitor handing the latest share to the view's layer info."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

import hiddenwidgets as hw
from hiddenwidgets.pipeline.summaries import SATURATED_SHARE, SATURATION_MARGIN, LayerSummarizer, output_bounds


class Squash(nn.Module):
    """Bounded in fact (tanh), but its type states no range: no bounds may be guessed for it."""

    def forward(self, x):
        return torch.tanh(x)


class Reordered(nn.Sequential):
    """A Sequential whose forward does not end with its last module."""

    def forward(self, x):
        return self[0](self[1](x))


def test_bounds_come_only_from_types_that_state_them():
    assert output_bounds(nn.Tanh())[:2] == (-1.0, 1.0)
    assert output_bounds(nn.Softsign())[:2] == (-1.0, 1.0)
    assert output_bounds(nn.Sigmoid())[:2] == (0.0, 1.0)
    assert output_bounds(nn.Hardsigmoid())[:2] == (0.0, 1.0)
    assert output_bounds(nn.ReLU6())[:2] == (0.0, 6.0)
    assert output_bounds(nn.Hardtanh(-2.5, 0.5))[:2] == (-2.5, 0.5)
    seq = output_bounds(nn.Sequential(nn.Linear(3, 3), nn.Tanh()))
    assert seq[:2] == (-1.0, 1.0) and "Tanh" in seq[2]
    for unknown in (nn.ReLU(), nn.GELU(), nn.Linear(3, 3), Squash(), nn.Softmax(dim=-1),
                    nn.Sequential(nn.Tanh(), nn.Linear(3, 3)), Reordered(nn.Linear(3, 3), nn.Tanh()),
                    nn.Sequential()):
        assert output_bounds(unknown) is None, unknown


def hand_built_tanh() -> torch.Tensor:
    """10 examples x 4 units of a tanh layer, each unit's share of values at a bound (|a| >= 0.98) chosen:
    unit 0: 10 of 10 (0.995); unit 1: 9 of 10 (-0.99, one 0.0); unit 2: 8 of 10; unit 3: 0 (0.97 is 0.01 short
    of the bound's margin). Saturated (share >= 0.9): units 0 and 1, so 2 of 4 units."""
    x = torch.zeros(10, 4)
    x[:, 0] = 0.995
    x[:9, 1] = -0.99
    x[:8, 2] = 0.99
    x[:, 3] = 0.97
    return x


def test_share_of_saturated_units_on_a_hand_built_tensor():
    assert SATURATION_MARGIN == 0.01 and SATURATED_SHARE == 0.9  # the numbers the expectations below rely on
    s = LayerSummarizer(nn.Tanh())
    sample = s.summarize(hand_built_tanh())
    assert sample.near.tolist() == [10.0, 9.0, 8.0, 0.0] and sample.near_of == 10
    assert sample.saturated.item() == pytest.approx(0.5)
    assert "Tanh: output in [-1, 1]" in sample.saturation and "90%" in sample.saturation
    # sigmoid: both bounds count, 0.01 from each; a NaN is at no bound
    x = torch.tensor([[0.005, 0.5, float("nan")], [0.995, 0.5, 0.999], [0.002, 0.011, 0.999]])
    got = LayerSummarizer(nn.Sigmoid()).summarize(x)
    assert got.near.tolist() == [3.0, 0.0, 2.0]
    assert got.saturated.item() == pytest.approx(1 / 3)  # unit 2: 2 of 3 values (NaN not at a bound)


def test_units_on_the_channel_axis_of_feature_maps():
    # (N=2, C=3, H=2, W=2) after a Hardtanh(-1, 1): channel 0 pinned at 1, channel 1 at -1 except one value,
    # channel 2 in the middle. Shares: 8/8, 7/8 (< 0.9), 0/8 -> 1 of 3 channels saturated.
    x = torch.zeros(2, 3, 2, 2)
    x[:, 0] = 1.0
    x[:, 1] = -1.0
    x[1, 1, 1, 1] = 0.3
    sample = LayerSummarizer(nn.Hardtanh()).summarize(x)
    assert sample.near.tolist() == [8.0, 7.0, 0.0] and sample.near_of == 8
    assert sample.saturated.item() == pytest.approx(1 / 3)


def test_two_calls_of_a_layer_pool_their_values_per_unit():
    s = LayerSummarizer(nn.Tanh())
    a = s.summarize(torch.full((10, 2), 0.99), finish=False)  # both units at a bound in every value
    b = s.summarize(torch.zeros(10, 2), finish=False)  # at no bound
    b.near[1] = 10.0  # unit 1 also at a bound in the second call
    merged = s.finish(s.merge(a, b))
    assert merged.near.tolist() == [10.0, 20.0] and merged.near_of == 20
    assert merged.saturated.item() == pytest.approx(0.5)  # unit 0: 10 of 20 values; unit 1: 20 of 20


def test_large_outputs_are_looked_at_on_every_sth_example():
    # 40 examples x 4 units = 160 values > max_elements = 8: every 20th example (0 and 20) is looked at
    x = torch.zeros(40, 4)
    x[0, 0] = x[20, 0] = 1.0  # unit 0 at the bound on exactly the examples looked at
    x[1:20, 1] = 1.0  # unit 1 at the bound only on examples that are skipped
    sample = LayerSummarizer(nn.Tanh(), max_elements=8).summarize(x)
    assert sample.near_of == 2 and sample.near.tolist() == [2.0, 0.0, 0.0, 0.0]
    assert sample.saturated.item() == pytest.approx(0.25)


def test_no_statistic_without_stated_bounds_or_for_a_selected_tensor():
    assert LayerSummarizer(nn.ReLU()).summarize(torch.ones(4, 3)).saturated is None
    assert LayerSummarizer(Squash()).summarize(torch.ones(4, 3)).saturated is None
    assert LayerSummarizer(nn.Tanh(), saturation=False).summarize(torch.ones(4, 3)).saturated is None


def test_the_monitor_gives_the_view_the_latest_share_and_the_rule():
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(
        hidden=nn.Sequential(nn.Linear(4, 6), nn.Tanh()), squashed=Squash(), out=nn.Linear(6, 2)))
    with torch.no_grad():  # weights large enough that the tanh units sit at +-1 on every input
        model.hidden[0].weight.mul_(200.0)
        model.hidden[0].bias.zero_()
    monitor = hw.ActivationMonitor(model, ["hidden", "squashed", "out"], every=1)
    x = torch.randn(32, 4, generator=torch.Generator().manual_seed(1))
    # the share of units whose |a| >= 0.98 on at least 90% of the 32 inputs, computed here by hand
    a = model.hidden(x).detach()
    expected = ((a.abs() >= 0.98).float().mean(dim=0) >= 0.9).float().mean().item()
    assert expected > 0.5  # the test means something: most units saturate
    model(x).sum().backward()
    monitor.step()
    monitor.flush()
    info = monitor.history.info
    step, share = info["hidden"]["saturated"]
    assert step == 1 and share == pytest.approx(expected)
    assert "its last module, Tanh" in info["hidden"]["saturation"]
    assert "saturated" not in info["squashed"] and "saturated" not in info["out"]
    monitor.close()
