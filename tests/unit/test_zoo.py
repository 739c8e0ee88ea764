"""The real-architecture matrix (tests/zoo.py): on every architecture and layer, the monitor, layer_features and
every attribution method either give the numbers computed here from the model's own outputs (or a reference
written from the paper), or say clearly why they cannot. No cell may be silently wrong."""

from __future__ import annotations

import pytest

import hiddenwidgets as hw

from ..zoo import ZOO, attribution_cases, attribution_cells, features_cells, monitor_cells

pytest.importorskip("transformers")


@pytest.mark.parametrize("arch", ZOO, ids=[a.name for a in ZOO])
def test_monitor_is_right_or_says_why_on_every_architecture(arch):
    cells = monitor_cells(arch, hw)
    wrong = {layer: why for layer, (verdict, why) in cells.items() if verdict == "wrong"}
    assert not wrong, wrong
    assert any(verdict == "works" for verdict, _ in cells.values())


@pytest.mark.parametrize("arch", [a for a in ZOO if not a.compile], ids=[a.name for a in ZOO if not a.compile])
def test_layer_features_are_masked_means_or_a_clear_error_on_every_architecture(arch):
    cells = features_cells(arch, hw)
    wrong = {layer: why for layer, (verdict, why) in cells.items() if verdict == "wrong"}
    assert not wrong, wrong


CASE_NAMES = ["vit", "swin", "convnext", "resnet", "cnn", "cnn channels_last", "basic block", "mobilenet_v2", "bert",
              "albert", "gpt2", "lstm"]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_every_attribution_method_is_right_or_refused_on_every_architecture(name):
    case = next(c for c in attribution_cases() if c.name == name)
    cells = attribution_cells(hw, [case])
    bad = {method: detail for (_, method), (outcome, detail) in cells.items()
           if outcome not in ("works", "works_unchecked", "refused", "wrong_warned")}
    assert not bad, bad
    assert len(cells) == len(hw.methods.METHODS)
    assert sum(outcome == "works" for outcome, _ in cells.values()) >= 4  # checked against a reference
