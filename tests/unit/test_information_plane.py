from __future__ import annotations

import math
import time
from collections import OrderedDict

import numpy as np
import pytest
import torch
import traitlets
from torch import nn

import hiddenwidgets as hw
from hiddenwidgets.pipeline.recorder import log_spaced_epochs
from hiddenwidgets.pipeline.transport import decode


def net(widths=(12, 5, 3, 2)) -> nn.Module:
    torch.manual_seed(0)
    blocks = OrderedDict((f"l{i + 1}", nn.Sequential(nn.Linear(widths[i], widths[i + 1]), nn.Tanh()))
                         for i in range(len(widths) - 1))
    blocks["out"] = nn.Linear(widths[-1], 2)
    return nn.Sequential(blocks)


def train(model, plane, epochs, x, y):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(epochs):
        for idx in torch.arange(len(x)).split(512):
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            plane.step()
            opt.step()
        plane.end_epoch()


def test_log_spaced_epochs_cover_the_run():
    epochs = log_spaced_epochs(1000, 50)
    assert epochs[0] == 0 and epochs[-1] == 999 and epochs == sorted(set(epochs)) and len(epochs) <= 50
    assert log_spaced_epochs(5, 100) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="n_epochs must be >= 1"):
        log_spaced_epochs(0)


def test_recorder_records_scheduled_epochs_without_touching_the_model():
    x, y = hw.datasets.twelve_bit_task()
    model = net().train()
    model.l1[0].weight.requires_grad_(False)
    rec = hw.InformationRecorder(model, ["l1", "l2"], x, y, epochs=[1, 3])
    for epoch in range(4):
        record = rec.end_epoch()
        assert (record is not None) == (epoch in (1, 3))
    assert [r.epoch for r in rec.records] == [1, 3]
    with torch.no_grad():
        expected = model.l1(x).numpy()
    np.testing.assert_allclose(rec.records[-1].activations["l1"], expected, rtol=1e-6)
    assert rec.records[-1].activations["l2"].shape == (4096, 3)
    assert model.training and not model.l1[0].weight.requires_grad
    assert sum(len(m._forward_hooks) for m in model.modules()) == 0


def test_recorder_bad_input():
    x, y = hw.datasets.twelve_bit_task()
    with pytest.raises(ValueError, match="4095 entries for 4096 inputs"):
        hw.InformationRecorder(net(), ["l1"], x, y[:-1], epochs=[0])
    with pytest.raises(TypeError, match="n_epochs=N"):
        hw.InformationRecorder(net(), ["l1"], x, y)


def test_gradient_mean_and_std_over_mini_batches_by_hand():
    model = nn.Sequential(OrderedDict(w=nn.Linear(1, 1, bias=False)))
    rec = hw.InformationRecorder(model, ["w"], torch.zeros(2, 1), [0, 1], epochs=[])
    for value in (1.0, 3.0):  # d(w * value)/dw = value: batch gradients 1 and 3 -> mean 2, std 1
        model.zero_grad()
        model(torch.tensor([[value]])).sum().backward()
        rec.step()
    rec.end_epoch()
    assert rec.grad_mean["w"] == [pytest.approx(2.0)] and rec.grad_std["w"] == [pytest.approx(1.0)]
    assert rec.grad_epochs == [0]


def test_plane_estimates_switch_estimator_after_the_fact_and_cache(monkeypatch):
    x, y = hw.datasets.twelve_bit_task()
    model = net()
    plane = hw.InformationPlane(model, ["l1", "l2", "l3"], x, y, n_epochs=20, points=8, estimator_samples=256)
    train(model, plane, 20, x, y)
    est = plane.estimates()
    assert est["I_XT"].shape == (len(plane.recorder.schedule), 3)
    assert (est["I_XT"] <= 12 + 1e-9).all() and (est["I_TY"] <= 0.99916 + 1e-5).all()
    calls = []
    original = hw.information.kde_mi
    monkeypatch.setattr(hw.information, "kde_mi", lambda *a, **k: calls.append(1) or original(*a, **k))
    plane.estimator = "kde_upper"
    kde = plane.estimates()
    assert len(calls) == 3 * len(plane.recorder.records)
    assert (kde["I_XT"] <= math.log2(256) + 1e-9).all()  # on the 256-sample subset
    assert not np.allclose(kde["I_XT"], est["I_XT"])
    plane.estimator = "binned"
    plane.estimator = "kde_upper"
    assert len(calls) == 3 * len(plane.recorder.records)  # cached: switching back computes nothing
    plane.n_bins = 10
    assert plane._state["header"]["estimator"] == "kde_upper"


def test_plane_rejects_unknown_estimators_and_options():
    x, y = hw.datasets.twelve_bit_task()
    with pytest.raises(traitlets.TraitError, match="unknown estimator 'ksg'; choose one of binned, kde_upper"):
        hw.InformationPlane(net(), ["l1"], x, y, n_epochs=5, estimator="ksg")
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'bins' \('bins': did you mean 'n_bins'\?\)"):
        hw.InformationPlane(net(), ["l1"], x, y, n_epochs=5, bins=10)
    plane = hw.InformationPlane(net(), ["l1"], x, y, n_epochs=5)
    with pytest.raises(traitlets.TraitError, match="n_bins must be >= 2"):
        plane.n_bins = 1


def test_phase_transition_is_where_the_snr_falls_below_one_after_its_peak():
    x, y = hw.datasets.twelve_bit_task()
    plane = hw.InformationPlane(net(), ["l1"], x, y, n_epochs=5)
    rec = plane.recorder
    rec.grad_epochs = list(range(40))
    rec.grad_mean["l1"] = [0.5] * 5 + [3.0] * 10 + [0.2] * 25  # drift from epoch 5, diffusion from epoch 15
    rec.grad_std["l1"] = [1.0] * 40
    # smoothed over epochs e-2..e+2: at 15 (3+3+.2+.2+.2)/5 = 1.32, at 16 (3+.2*4)/5 = 0.76 < 1
    assert plane.phase_transition() == {"l1": 16}
    rec.grad_mean["l1"] = [0.5] * 40
    assert plane.phase_transition() == {"l1": None}


def test_updates_are_throttled_and_the_last_state_is_flushed(monkeypatch):
    x, y = hw.datasets.twelve_bit_task()
    model = net()
    plane = hw.InformationPlane(model, ["l1"], x[:256], y[:256], epochs=[0, 999])
    published = []
    original = plane._publish_state
    monkeypatch.setattr(plane, "_publish_state", lambda: published.append(time.monotonic()) or original())
    t0 = time.monotonic()
    for _ in range(1000):
        plane.end_epoch()
    elapsed = time.monotonic() - t0
    assert len(published) <= elapsed / 0.1 + 2
    plane.flush()
    header = plane._state["header"]
    assert header["epoch"] == 999 and decode(header["index"], plane._state["data"])["epochs"].tolist() == [0, 999]


def test_altair_chart_and_static_page(tmp_path):
    x, y = hw.datasets.twelve_bit_task()
    model = net()
    plane = hw.InformationPlane(model, ["l1", "l2"], x, y, n_epochs=6, points=6, title="<b>plane</b>")
    train(model, plane, 6, x, y)
    spec = plane.to_altair().to_dict()
    values = spec["data"]["values"] if "values" in spec.get("data", {}) else next(iter(spec["datasets"].values()))
    assert len(values) == 2 * len(plane.recorder.records)
    assert {"layer", "epoch", "I_XT", "I_TY"} <= set(values[0])
    text = plane.save_html(tmp_path / "plane.html").read_text()
    assert "<b>plane</b>" not in text and "Content-Security-Policy" in text


def test_estimator_warnings_reach_the_view_once():
    x, y = hw.datasets.twelve_bit_task()
    model = nn.Sequential(OrderedDict(l1=nn.Sequential(nn.Linear(12, 4), nn.ReLU())))
    with torch.no_grad():
        model.l1[0].weight.mul_(10)  # ReLU outputs far above the default [-1, 1] range
    plane = hw.InformationPlane(model, ["l1"], x, y, epochs=[0, 1])
    plane.end_epoch()
    plane.end_epoch()
    plane.flush()
    notes = plane._state["header"]["notes"]
    assert len(notes) == 1 and notes[0].startswith("l1, epoch 0:") and "value_range='observed'" in notes[0]
