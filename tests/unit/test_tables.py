"""to_dataframe() on the objects that hold tabular results, and the error when an optional package is missing."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from torch import nn

import hiddenwidgets as hw
from hiddenwidgets._optional import require

from .test_monitor import cnn, train

pd = pytest.importorskip("pandas")


def test_monitor_table_holds_what_each_layer_recorded_step_by_step():
    model = cnn()
    monitor = hw.ActivationMonitor(model, ["conv1", "fc1"], every=1)
    captured = []
    hook = model.fc1.register_forward_hook(lambda m, i, o: captured.append(o.detach().clone()))
    train(model, monitor, 12)
    hook.remove()
    table = monitor.to_dataframe()
    monitor.close()
    fc1 = table[table.series == "fc1"].reset_index(drop=True)
    assert fc1.kind.unique().tolist() == ["layer"]
    assert fc1.step_first.tolist() == list(range(1, 13)) and (fc1.step_last == fc1.step_first).all()
    # every sample of fc1 (5 units x 8 examples) is summarised: the mean and extremes the model computed
    means = [float(o.mean()) for o in captured]
    assert np.allclose(fc1["mean"], means, rtol=1e-5, atol=1e-6)
    assert np.allclose(fc1["max"], [float(o.max()) for o in captured], rtol=1e-6)
    assert np.allclose(fc1["std"], [float(o.std(unbiased=False)) for o in captured], rtol=1e-4)
    loss = table[table.series == "loss"]
    assert loss.kind.unique().tolist() == ["scalar"] and len(loss) == 12 and (loss.n == 1).all()


def test_projector_table_has_coordinates_classes_and_the_selection():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(30, 6, generator=g)
    labels = np.arange(30) % 3
    proj = hw.Projector({"h": feats}, labels=labels, class_names=["cat", "dog", "eel"],
                        colors={"x": np.linspace(0, 1, 30) + 0.01})  # a field named like a coordinate
    proj.select([2, 5, 7])
    table = proj.to_dataframe()
    proj.close()
    assert np.allclose(table[["x", "y"]].to_numpy(), proj.coordinates())
    assert table.label.tolist() == [["cat", "dog", "eel"][k] for k in labels]
    assert table.index[table.selected].tolist() == [2, 5, 7]
    assert np.allclose(table["color:x"], np.linspace(0, 1, 30) + 0.01, atol=1e-6)
    assert table.attrs == {"layer": "h", "epoch": None, "method": "pca"}


def test_a_missing_optional_package_names_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now fails as if it were not installed
    with pytest.raises(ModuleNotFoundError, match=r"Projector.to_dataframe needs the optional package 'pandas'.*"
                                                  r"pip install pandas"):
        require("pandas", "Projector.to_dataframe")
    monkeypatch.setitem(sys.modules, "umap", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install umap-learn \(or pip install 'hiddenwidgets\[umap\]'\)"):
        require("umap", "the UMAP projection")
    model = nn.Sequential(nn.Linear(2, 2))
    monitor = hw.ActivationMonitor(model, ["0"], every=1)
    with pytest.raises(ModuleNotFoundError, match=r"ActivationMonitor\.to_dataframe needs the optional package"):
        monitor.to_dataframe()
    monitor.close()
