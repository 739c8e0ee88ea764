"""The AttributionExplorer's layer menu lists a Sequential and its only child once (they give the same output)."""

import torch.nn as nn

from hiddenwidgets.methods import conv_layers
from hiddenwidgets.widgets.attribution_explorer import _one_per_output


def test_only_child_of_a_sequential_is_listed_once():
    model = nn.Module()
    model.conv1 = nn.Sequential(nn.Conv2d(1, 4, 3))  # container and its only child: same output
    model.conv2 = nn.Sequential(nn.Conv2d(4, 4, 3), nn.ReLU())  # two children: each its own output
    names = conv_layers(model)
    assert "conv1.0" in names and "conv1" in names  # what the menu was given
    menu = _one_per_output(model, names)
    assert menu == ["conv1", "conv2", "conv2.0"]

def test_the_layer_asked_for_stays():
    model = nn.Module()
    model.conv1 = nn.Sequential(nn.Conv2d(1, 4, 3))
    assert "conv1.0" in _one_per_output(model, conv_layers(model), keep="conv1.0")
