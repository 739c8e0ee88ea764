from __future__ import annotations

import time
import warnings
from collections import OrderedDict

import pytest
import torch
import traitlets
from torch import nn

import hiddenwidgets as hw
from hiddenwidgets.pipeline.transport import decode

warnings.filterwarnings("ignore", module="captum")


def cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(
        conv1=nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()),
        conv2=nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.ReLU()),
        pool=nn.AdaptiveAvgPool2d(2), flatten=nn.Flatten(), fc=nn.Linear(32, 3)))


X = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
Y = torch.tensor([0, 1, 2, 0])


def cells(explorer):
    state = explorer._results
    arrays = decode(state["header"]["index"], state["data"])
    return {c["method"]: (c, arrays.get(c.get("array", ""))) for c in state["header"]["cells"]}


def test_computes_selected_methods_with_metrics_and_caches_them():
    ex = hw.AttributionExplorer(cnn(), X, Y, selected=["saliency", "grad_cam"], layer="conv2")
    ex.wait(60)
    got = cells(ex)
    assert list(got) == ["saliency", "grad_cam"]
    for cell, maps in got.values():
        assert cell["error"] is None and maps.shape == (4, 8, 8)
        m = cell["metrics"]
        assert set(m) == {"deletion", "insertion", "infidelity", "sanity"}
        assert all(len(v) == 4 for v in m.values())
        assert all(0 <= v <= 1 for v in m["deletion"] + m["insertion"]) and all(v >= 0 for v in m["infidelity"])
        assert all(-1 <= v <= 1 for v in m["sanity"])
    torch.testing.assert_close(torch.from_numpy(got["grad_cam"][1]),
                               hw.attribute(ex.model, X, "grad_cam", "predicted", layer="conv2"))
    calls = []
    original = ex._compute
    ex._compute = lambda m: calls.append(m) or original(m)
    ex.selected_methods = ["grad_cam"]
    ex.selected_methods = ["saliency", "grad_cam"]  # back: both cached
    ex.wait(30)
    assert calls == []
    ex.target = "true"
    ex.wait(60)
    assert sorted(calls) == ["grad_cam", "saliency"]  # a new target is a new computation
    assert len(ex.metrics()) == 8 and {r["method"] for r in ex.metrics()} == {"saliency", "grad_cam"}
    ex.close()


def test_a_failing_method_shows_its_error_and_the_others_still_work():
    ex = hw.AttributionExplorer(cnn(), X, Y, selected=["lrp", "saliency"], layer="conv2")
    ex.wait(60)
    got = cells(ex)
    assert "LRP" in got["lrp"][0]["error"] and got["lrp"][1] is None
    assert got["saliency"][0]["error"] is None and got["saliency"][1].shape == (4, 8, 8)
    ex.close()


def test_cancel_stops_between_inputs_and_keeps_finished_methods():
    ex = hw.AttributionExplorer(cnn(), X, Y, selected=["saliency"], layer="conv2")
    ex.wait(60)
    original = ex._compute

    def slow(method):
        time.sleep(0.3)
        return original(method)

    ex._compute = slow
    ex.selected_methods = ["saliency", "occlusion", "lime"]
    time.sleep(0.1)
    ex._on_custom(ex, {"type": "cancel"}, [])  # what the view's Cancel button sends
    ex.wait(30)
    assert ex.status == "cancelled"
    assert ("saliency", "predicted", "") in ex._cache and ("lime", "predicted", "") not in ex._cache
    ex.close()


def test_bad_input_and_settings_get_clear_errors():
    with pytest.raises(hw.AttributionError, match=r"images \(N, C, H, W\) or table rows"):
        hw.AttributionExplorer(cnn(), torch.rand(4, 1, 8), Y)
    with pytest.raises(hw.AttributionError, match=r"cannot take inputs of shape \(4, 64\)"):
        hw.AttributionExplorer(cnn(), torch.rand(4, 64), Y)
    with pytest.raises(hw.AttributionError, match="at most 16 inputs"):
        hw.AttributionExplorer(cnn(), torch.rand(20, 1, 8, 8))
    with pytest.raises(hw.AttributionError, match=r"unknown method\(s\) \['gradcam'\]"):
        hw.AttributionExplorer(cnn(), X, selected=["gradcam"])
    ex = hw.AttributionExplorer(cnn(), X, selected=["saliency"])
    with pytest.raises(traitlets.TraitError, match=r"class 0\.\.2"):
        ex.target = "7"
    with pytest.raises(traitlets.TraitError, match="topK"):
        ex.target = "top9"
    ex.target = "top2"
    assert (ex._targets() == ex.probs.topk(2, dim=1).indices[:, 1]).all()
    ex.target = "true"  # no labels given: the error is shown in the cells
    ex.wait(30)
    assert "no true labels were given" in cells(ex)["saliency"][0]["error"]
    ex.close()


def test_model_left_as_it_was_and_static_page(tmp_path):
    model = cnn().train()
    ex = hw.AttributionExplorer(model, X, Y, class_names=["<a>", "b", "c"], selected=["grad_cam", "occlusion"])
    ex.wait(60)
    assert model.training and all(not m._forward_hooks for m in model.modules())
    text = ex.save_html(tmp_path / "explorer.html").read_text()
    assert "<a>" not in text.split("hw-payload")[1]  # class names are escaped data, never markup
    spec = ex.to_altair().to_dict()
    values = spec["data"]["values"] if "values" in spec.get("data", {}) else next(iter(spec["datasets"].values()))
    assert {v["metric"] for v in values} == {"deletion", "insertion", "infidelity", "sanity"}
    with pytest.raises(hw.AttributionError, match=r"unknown metric\(s\) \['auc'\]"):
        hw.AttributionExplorer(model, X, metrics=["auc"])
    ex.close()


def test_table_rows_get_attributions_per_feature_and_no_image_metrics():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
    rows = torch.randn(6, 5)
    ex = hw.AttributionExplorer(model, rows, feature_names=list("abcde"), selected=["input_x_gradient", "grad_cam"])
    ex.wait(60)
    got = cells(ex)
    assert got["input_x_gradient"][1].shape == (6, 5)
    torch.testing.assert_close(torch.from_numpy(got["input_x_gradient"][1]),
                               hw.attribute(model, rows, "input_x_gradient", "predicted"))
    assert set(got["input_x_gradient"][0]["metrics"]) == {"infidelity", "sanity"}  # deletion/insertion: images only
    assert "Grad-CAM needs a layer" in got["grad_cam"][0]["error"]  # a table model has no conv layer
    assert ex._gallery["header"]["tabular"] is True
    with pytest.raises(hw.AttributionError, match="one name per column"):
        hw.AttributionExplorer(model, rows, feature_names=["a"])
    ex.close()
