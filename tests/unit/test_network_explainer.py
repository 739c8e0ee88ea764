"""The NetworkExplainer view without a browser: messages in, traits and replies out; the static page's embedded
arithmetic equals what the model computed."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
import torch
from torch import nn

import hiddenwidgets as hw
from hiddenwidgets.pipeline.transport import decode

from .test_explainer import recompute, resnet, small_cnn


def digits_like(n: int = 4) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def replies(view):
    sent = []
    view.send = lambda content, buffers=None: sent.append((content, buffers))
    return sent


def unpack(header, arrays, r):
    """Python's reading of a packed step (as js/network_explainer.js: staticUnit reads it)."""
    unit = {**header["common"], "index": arrays["index"][r].tolist()}
    for key, value in arrays.items():
        if key == "index" or key.startswith("then:"):
            continue
        if key.startswith("common:"):
            unit[key[7:]] = value
        else:
            unit[key] = value[r].item() if value.ndim == 1 else value[r]
    return unit


def test_overview_holds_every_step_in_order_and_equals_the_forward_pass():
    model = small_cnn()
    x = digits_like()
    view = hw.NetworkExplainer(model, x, class_names=list("abcde"))
    names = [row["name"] for row in view.layers]
    assert names[0] == "conv1" and names[-1] == "softmax" and len(names) == 10
    arrays = decode(view._overview["header"]["index"], view._overview["data"])
    with torch.no_grad():
        expected = model.eval()(x[:1])[0]
    np.testing.assert_allclose(arrays[f"s{len(names) - 1}"], expected.numpy(), atol=1e-6)
    np.testing.assert_allclose(arrays["input"], x[0].numpy())
    assert view.prediction == int(expected.argmax())
    assert view.can_draw and view.draw_shape == [8, 8]


def test_unit_request_is_answered_with_the_models_arithmetic():
    view = hw.NetworkExplainer(small_cnn(), digits_like())
    sent = replies(view)
    view._on_custom(view, {"type": "unit", "step": 4, "index": [1, 0, 1], "key": "k"}, [])
    content, buffers = sent[-1]
    assert content["type"] == "unit" and content["key"] == "k"
    header = content["header"]
    unit = {**header, **decode(header["arrays"], buffers[0])}
    assert recompute(unit) == pytest.approx(float(view.trace.steps[4].output[1, 0, 1]), abs=1e-5)
    json.dumps(header, allow_nan=False)  # the scalars cross as valid JSON


def test_select_and_draw_rerun_the_model():
    model = small_cnn()
    x = digits_like()
    view = hw.NetworkExplainer(model, x)
    sent = replies(view)
    view._on_custom(view, {"type": "select", "index": 2, "seq": 7}, [])
    assert view.selected == 2 and sent[-1][0] == {"type": "done", "seq": 7}
    assert torch.equal(view.trace.input, x[2])
    ink = np.zeros((8, 8), np.float32)
    ink[2:6, 3] = 1.0
    view._on_custom(view, {"type": "draw", "seq": 8}, [memoryview(ink.tobytes())])
    assert view.selected == -1
    lo, hi = float(x.min()), float(x.max())
    np.testing.assert_allclose(view.trace.input[0].numpy(), lo + ink * (hi - lo), rtol=1e-6)
    with torch.no_grad():
        expected = model.eval()(view.trace.input[None])[0]
    assert view.prediction == int(expected.argmax())
    view._on_custom(view, {"type": "draw", "seq": 9}, [memoryview(np.zeros(3, np.float32).tobytes())])
    assert "ValueError" in view.status or "Error" in view.status  # said in the view
    assert sent[-1][0]["error"]


def test_wide_layers_are_paged():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 70, 3), nn.Flatten(), nn.Linear(70 * 36, 3))
    view = hw.NetworkExplainer(model, digits_like(2))
    row = view.layers[0]
    assert row["pages"] == 3 and row["channels"] == 70
    assert decode(view._overview["header"]["index"], view._overview["data"])["s0"].shape == (32, 6, 6)
    view._on_custom(view, {"type": "page", "step": 0, "page": 2}, [])
    arrays = decode(view._overview["header"]["index"], view._overview["data"])
    np.testing.assert_array_equal(arrays["s0"], view.trace.steps[0].output[64:].numpy())


def test_residual_groups_reach_the_view():
    view = hw.NetworkExplainer(resnet(), torch.randn(2, 3, 8, 8))
    assert [g["name"] for g in view.groups] == ["block1", "block2"]
    assert not view.can_draw  # three channels: no drawing by default
    text = repr(view)  # what front ends without widgets show
    assert text.startswith("NetworkExplainer(") and f"{len(view.layers)} steps" in text and "save_html" in text
    assert repr(view.trace).startswith("NetworkTrace(") and "2 residual groups" in repr(view.trace)


def test_static_page_embeds_every_unit_of_the_chosen_inputs(tmp_path):
    model = small_cnn()
    view = hw.NetworkExplainer(model, digits_like(), static_inputs=[1, 3])
    path = view.save_html(tmp_path / "explainer.html")
    text = path.read_text()
    payload = json.loads(re.search(r'id="hw-payload">(.*?)</script>', text, re.S).group(1))
    static = payload["state"]["_static"]
    assert static["chosen"] == [1, 3]
    buffers = {tuple(b["path"]): base64.b64decode(b["data"]) for b in payload["buffers"]}
    trace = hw.explain_network(model, digits_like()[3])
    overview = static["inputs"]["3"]["overview"]
    arrays = decode(overview["header"]["index"], buffers[("_static", "inputs", "3", "overview", "data")])
    np.testing.assert_array_equal(arrays["input"], digits_like()[3].numpy())
    np.testing.assert_allclose(arrays["s9"], trace.steps[9].output.numpy(), atol=1e-6)
    units = static["inputs"]["3"]["units"]
    assert sorted(units, key=int) == [str(s.index) for s in trace.steps]
    checked = 0
    for s in trace.steps:
        header = units[str(s.index)]["header"]
        assert header["count"] == s.output.numel()  # every unit is in the page
        data = buffers[("_static", "inputs", "3", "units", str(s.index), "data")]
        for flat in range(0, s.output.numel(), 3):
            idx = tuple(int(i) for i in np.unravel_index(flat, tuple(s.output.shape)))
            unit = unpack(header, decode(header["arrays"], data), flat)
            assert unit["index"] == list(idx)
            assert recompute(unit) == pytest.approx(float(s.output[idx]), abs=1e-5)
            checked += 1
    assert checked > 300
    assert "connect-src 'none'" in text


def test_bad_arguments_refused():
    with pytest.raises(hw.ExplainerError, match="floating-point batch"):
        hw.NetworkExplainer(small_cnn(), torch.zeros(2, 1, 8, 8, dtype=torch.long))
    with pytest.raises(hw.ExplainerError, match="draw=True needs image"):
        hw.NetworkExplainer(nn.Linear(4, 2), torch.randn(3, 4), draw=True)
    with pytest.raises(TypeError, match="class_names"):
        hw.NetworkExplainer(small_cnn(), digits_like(), classnames=["a"])


def test_static_page_leaves_out_the_arithmetic_of_huge_steps_and_says_so(tmp_path, monkeypatch):
    from hiddenwidgets.widgets import network_explainer

    monkeypatch.setattr(network_explainer, "STATIC_UNITS", 100)
    view = hw.NetworkExplainer(small_cnn(), digits_like())
    static = view.static_state()["_static"]["inputs"]["0"]
    assert static["left_out"] == ["conv1", "bn1", "relu1"]  # 256 units each
    assert "0" not in static["units"] and "3" in static["units"]  # pool1: 64 units, embedded
