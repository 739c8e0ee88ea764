"""hw.probe over models and recorded epochs, ProbeChart and SimilarityMatrix (their Python side)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hiddenwidgets as hw
from hiddenwidgets.analysis.matrices import RepresentationError
from hiddenwidgets.analysis.probes import ProbeResult
from hiddenwidgets.analysis.similarity import cka


def blobs(n=240, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    centres = torch.randn(4, 6, generator=g) * 3
    return centres[labels] + torch.randn(n, 6, generator=g), labels


def test_probe_on_a_model_reads_each_layer_and_the_last_separates_the_classes():
    x, labels = blobs()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 2))  # 2 random units: classes overlap
    results = hw.probe(model, x, labels, layers=["1", "2"], control=False)
    assert [r.layer for r in results] == ["1", "2"]
    assert results[0].accuracy > 0.95  # 16 tanh units of well-separated blobs
    assert results[0].accuracy > results[1].accuracy
    with pytest.raises(RepresentationError, match="name the layers"):
        hw.probe(model, x, labels)
    with pytest.raises(RepresentationError, match="labels has 239 entries but there are 240"):
        hw.probe(model, x, labels[:-1], layers=["1"])


def test_probe_over_recorded_epochs_returns_one_result_per_layer_and_epoch():
    x, labels = blobs()
    reps = hw.Representations(n=len(x))
    reps.add({"noise": torch.randn(len(x), 6), "signal": x}, epoch=0)
    reps.add({"noise": torch.randn(len(x), 6), "signal": x}, epoch=3)
    results = hw.probe(reps, labels, control=False)
    assert [(r.layer, r.epoch) for r in results] == [("noise", 0), ("signal", 0), ("noise", 3), ("signal", 3)]
    by = {(r.layer, r.epoch): r.accuracy for r in results}
    assert by[("signal", 3)] > 0.95 and by[("noise", 3)] < 0.5


def test_probe_chart_replaces_results_of_the_same_layer_and_epoch():
    r1 = ProbeResult("a", 0.5, 0.6, 0.3, 0.2, 0.25, 30, 10, 4, epoch=1)
    r2 = ProbeResult("a", 0.9, 0.95, 0.3, 0.6, 0.25, 30, 10, 4, epoch=1)
    chart = hw.ProbeChart([r1])
    chart.add([r2, ProbeResult("a", 0.7, 0.8, None, None, 0.25, 30, 10, 4, epoch=2)])
    assert [(r["epoch"], r["accuracy"]) for r in chart.records] == [(1, 0.9), (2, 0.7)]
    spec = chart.to_altair().to_dict()
    assert len(spec["data"]["values"]) == 3 + 2  # probe, control, chance at epoch 1; no control at epoch 2
    with pytest.raises(RepresentationError, match="ProbeResult"):
        chart.add([{"layer": "a"}])


def test_similarity_matrix_across_checkpoints_matches_cka():
    x, _ = blobs()
    a = {"l1": x, "l2": torch.tanh(x @ torch.randn(6, 5, generator=torch.Generator().manual_seed(1)))}
    reps = hw.Representations(n=len(x))
    reps.add(a, epoch=0)
    reps.add({"l1": x * 2 + 1, "l2": torch.randn(len(x), 5)}, epoch=1)
    view = hw.SimilarityMatrix(reps, reps, epoch_a=0, epoch_b=1, names=("before", "after"))
    assert view.rows == ["l1", "l2"] and view.row_title == "before" and view.col_title == "after"
    assert view.values[0][0] == pytest.approx(1.0)  # scaling and shifting does not change CKA
    assert view.values[1][1] == pytest.approx(cka(a["l2"], reps.get("l2", 1)), abs=1e-6)
    within = hw.SimilarityMatrix(a)
    assert within.values[0][1] == within.values[1][0] and within.values[1][1] == 1.0
    with pytest.raises(RepresentationError, match="differ"):
        hw.SimilarityMatrix(a, {"l1": x[:10]})


def test_concept_scores_take_tcav_results_and_replace_repeated_rows():
    from hiddenwidgets.pipeline.concepts import ConceptError

    row = {"concept": "loop", "layer": "h", "target": 8, "score": 0.9, "score_std": float("nan"),
           "random_score": 0.5, "random_std": 0.1, "p_value": 0.01, "significant": True, "cav_accuracy": 0.8,
           "epoch": 1}

    class Result:
        def records(self):
            return [dict(row)]

    scores = hw.ConceptScores(Result(), class_names=[str(i) for i in range(10)])
    assert scores.records[0]["score_std"] is None  # NaN is not JSON: sent as null
    scores.add([{**row, "score": 0.4}, {**row, "epoch": 2}])
    assert [(r["epoch"], r["score"]) for r in scores.records] == [(1, 0.4), (2, 0.9)]
    assert len(scores.to_altair().to_dict()["data"]["values"]) == 2
    with pytest.raises(ConceptError, match="TCAV results"):
        scores.add([3])


def test_intervention_view_carries_each_edits_predictions_before_and_after():
    from hiddenwidgets.analysis.interventions import InterventionError, intervene
    from hiddenwidgets.pipeline.transport import decode

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    x = torch.randn(6, 3)
    up = intervene(model, x, "1", torch.ones(4), mode="clamp", value=50.0)
    same = intervene(model, x, "1", torch.ones(4), mode="clamp", value=0.0)
    view = hw.InterventionView({"up": up, "zero": same}, [f"row {i}" for i in range(6)])
    arrays = decode(view._data["header"]["index"], view._data["data"])
    assert arrays["0:before"].tolist() == up.predicted_before.tolist()
    assert arrays["0:after"].tolist() == up.predicted_after.tolist()
    assert [e["name"] for e in view.edits] == ["up", "zero"] and view.edits[0]["summary"]["changed"] == len(up.changed)
    assert view.example_kind == "text"
    with pytest.raises(InterventionError, match="same inputs"):
        hw.InterventionView({"a": up, "b": intervene(model, x[:3], "1", torch.ones(4))})
