"""The real-architecture matrix (tests/zoo.py): on every architecture and layer, the monitor and layer_features
either give the numbers computed here from the model's own outputs, or say clearly why they cannot. No cell may
be silently wrong."""

from __future__ import annotations

import pytest

import hiddenwidgets as hw

from ..zoo import ZOO, features_cells, monitor_cells

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
