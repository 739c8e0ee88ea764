"""UnitAtlas, Python side: what it shows is what the backends compute, it computes only what is shown, caches per
(layer, objective, unit, seed, weights), cancels between steps, sends throttled binary frames, never disturbs a
training loop or the model, refuses bad input clearly, and puts everything it computed into its static page."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import OrderedDict

import numpy as np
import pytest
import torch
import traitlets
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import hiddenwidgets as hw
from hiddenwidgets.analysis import featurevis as fv
from hiddenwidgets.analysis.featurevis import objectives as obj
from hiddenwidgets.pipeline.concepts import ConceptStore
from hiddenwidgets.pipeline.transport import decode
from hiddenwidgets.widgets import UnitAtlas
from hiddenwidgets.widgets import unit_atlas as ua

from .test_concurrency import train

STEPS = 12


pytestmark = pytest.mark.usefixtures("one_thread")


def cnn(channels: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(channels, 6, 3, padding=1), bn=nn.BatchNorm2d(6), relu1=nn.ReLU(), pool=nn.MaxPool2d(2),
        conv2=nn.Conv2d(6, 5, 3, padding=1), relu2=nn.ReLU(), gap=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(),
        fc=nn.Linear(5, 3)))


def images(n: int = 40, channels: int = 3, size: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed))


def sent_messages(atlas: UnitAtlas) -> list[tuple[dict, list]]:
    """Record what the atlas sends (there is no front end in these tests)."""
    log: list[tuple[dict, list]] = []
    original = atlas.send

    def send(content, buffers=None):
        log.append((content, list(buffers or [])))
        original(content, buffers)

    atlas.send = send
    return log


def colour_units() -> nn.Module:
    """1×1 conv units wired to colours: unit 0 = R - (G + B) / 2 (red), 1 green, 2 blue."""
    conv = nn.Conv2d(3, 3, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1, -0.5, -0.5], [-0.5, 1, -0.5], [-0.5, -0.5, 1]]).reshape(3, 3, 1, 1))
        conv.bias.zero_()
    return nn.Sequential(OrderedDict(conv=conv, relu=nn.ReLU(), gap=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten()))


# ------------------------------------------------------------------------------------------------------------------
def test_a_page_shows_the_backends_own_results_for_the_snapshot():
    model, x = cnn(), images()
    atlas = UnitAtlas(model, x, ["relu1", "relu2"], steps=STEPS, page_size=4, decorrelate=False, k=3)
    atlas.wait()
    got = atlas.images()
    assert sorted(got) == [0, 1, 2, 3]  # the first page only: nothing else was asked for
    ref = fv.visualize(model, obj.channels("relu1", [0, 1, 2, 3]), shape=(3, 12, 12), steps=STEPS, seed=0,
                       decorrelate=False)
    for i, u in enumerate(range(4)):
        torch.testing.assert_close(got[u], ref.images[i], atol=0, rtol=0)
    rows = {r["unit"]: r for r in atlas.results()}
    assert [rows[u]["value"] for u in range(4)] == pytest.approx(ref.values.tolist(), abs=0)
    ex = fv.dataset_examples(model, x, "relu1", k=3, pool="mean")
    assert torch.equal(atlas.examples("relu1").top_indices, ex.top_indices)
    assert [rows[u]["top_score"] for u in range(4)] == pytest.approx(ex.top_values[:4, 0].tolist(), abs=0)
    atlas.close()


def test_the_detail_histogram_scores_are_the_ranking_scores_and_the_optimised_value_is_on_their_axis():
    model, x = cnn(), images()
    atlas = UnitAtlas(model, x, "relu2", steps=STEPS, k=3, facets=2, facet_examples=8, decorrelate=False)
    atlas.wait()
    values = {r["unit"]: r["value"] for r in atlas.results()}
    unit = max(values, key=values.get)  # a unit that is alive in this random network
    assert values[unit] > 0
    d = atlas.detail(unit)
    scores = d["scores"]
    assert len(scores) == 40
    # every example's score, by the same definition the top-k uses: the top-k are its k largest
    assert torch.equal(scores[:3], d["examples"].top_values[unit])
    # the channel objective on an example (its mean over positions) is that example's score (pool="mean")
    by_objective = fv.evaluate(model, obj.channel("relu2", unit), x)
    torch.testing.assert_close(scores, by_objective.sort(descending=True).values, atol=1e-6, rtol=0)
    # the negative optimisation lowers the unit below the optimised image, reported on the same measure
    assert d["negative"]["value"] < values[unit]
    assert float(fv.evaluate(model, obj.channel("relu2", unit), d["negative"]["image"][None])) == \
        pytest.approx(d["negative"]["value"], abs=1e-6)
    f = d["facets"]
    assert f.images.shape == (2, 3, 12, 12) and sum(len(m) for m in f.members) == 8
    state = atlas._detail_state("relu2", "channel", 0, unit)
    arrays = decode(state["header"]["index"], state["data"])
    assert int(arrays["hist_counts"].sum()) == 40 and state["header"]["comparable"]
    assert arrays["top_images"].dtype == np.uint8 and arrays["top_images"].shape[0] == 3
    assert arrays["top_boxes"].shape == (3, 4)  # the receptive field's box per example
    atlas.close()


def test_paging_computes_only_the_page_shown_and_refuses_pages_that_do_not_exist():
    atlas = UnitAtlas(cnn(), images(), "relu1", steps=4, page_size=4, decorrelate=False)
    atlas.wait()
    assert atlas.n_pages() == 2 and sorted(atlas.images()) == [0, 1, 2, 3]
    atlas.show(page=1)
    assert sorted(atlas.images()) == [0, 1, 2, 3, 4, 5]
    with pytest.raises(traitlets.TraitError, match=r"page must be in 0\.\.1"):
        atlas.page = 2
    with pytest.raises(traitlets.TraitError, match="unit 9 is not shown"):
        atlas.unit = 9
    atlas.close()


def test_results_are_cached_per_layer_objective_unit_seed_and_weights(monkeypatch):
    model = cnn()
    atlas = UnitAtlas(model, images(), ["relu1", "relu2"], steps=4, page_size=3, decorrelate=False)
    atlas.wait()
    calls: list[str] = []
    original = fv.visualize

    def counting(*args, **kwargs):
        calls.append(repr(args[1]))
        return original(*args, **kwargs)

    monkeypatch.setattr(fv, "visualize", counting)
    atlas.show(page=1)
    atlas.show(page=0)
    atlas.show("relu2")
    atlas.show("relu1")
    assert len(calls) == 2  # page 1 of relu1 and page 0 of relu2; the rest came from the cache
    atlas.show(seed=5)
    atlas.show(objective="neuron")
    atlas.show(seed=0)
    assert len(calls) == 5  # channel at seed 5, neuron at seeds 5 and 0: each a new computation
    atlas.show(objective="channel")
    assert len(calls) == 5  # ...but channel at seed 0 was cached
    first = atlas.images()[0].clone()
    with torch.no_grad():
        model.conv1.weight.mul_(2)
    atlas.refresh()
    assert len(calls) == 6 and atlas.version == 1  # new weights: computed again
    assert not torch.equal(atlas.images()[0], first)
    atlas.close()


def test_cancel_stops_between_steps_and_keeps_how_far_it_got():
    atlas = UnitAtlas(cnn(), images(), "relu1", steps=4, page_size=3, decorrelate=False)
    atlas.wait()
    atlas._steps = 100_000  # (a long optimisation)
    before = atlas.frames_sent
    atlas.show(page=1, wait=False)
    deadline = time.monotonic() + 60
    while atlas.frames_sent < before + 2 and time.monotonic() < deadline:  # a few steps in
        time.sleep(0.01)
    t0 = time.monotonic()
    atlas.cancel()
    atlas.wait(30)
    assert time.monotonic() - t0 < 10
    assert atlas.status.startswith("cancelled")
    state = atlas._tiles_state("relu1", "channel", 0, 1)
    arrays = decode(state["header"]["index"], state["data"])
    assert arrays["state"].tolist() == [2, 2, 2]  # stopped, shown as such
    assert all(0 < s < 100_000 for s in arrays["steps"].tolist())
    assert sorted(atlas.images()) == [0, 1, 2]  # a stopped image is not a result
    atlas._steps = 4
    atlas.show(page=0)
    atlas.show(page=1)  # asked again: computed in full
    assert sorted(atlas.images()) == [0, 1, 2, 3, 4, 5]
    atlas.close()


def test_frames_are_uint8_buffers_throttled_to_fps_and_results_are_binary():
    atlas = UnitAtlas(cnn(), images(), "relu1", steps=4, page_size=3, decorrelate=False, fps=5)
    atlas.wait()
    log = sent_messages(atlas)
    atlas._steps = 150
    atlas.show(page=1)
    frames = [(m, b) for m, b in log if m["type"] == "frame"]
    assert frames and atlas.frames_sent >= len(frames)
    seconds = atlas.optimising_seconds
    assert len(frames) <= 5 * seconds + 3, (len(frames), seconds)  # without the throttle: 150
    m, b = frames[-1]
    assert m["step"] == 150 and m["total"] == 150 and m["units"] == [3, 4, 5]  # the last step is always sent
    arrays = decode(m["index"], b[0])
    assert arrays["images"].dtype == np.uint8 and arrays["images"].shape == (3, 12, 12, 3)
    tiles = [(m, b) for m, b in log if m["type"] == "tiles"]
    assert tiles and all(isinstance(b[0], bytes) for _, b in tiles)
    text = json.dumps([m for m, _ in log])  # no image or score travels as a JSON list of numbers
    assert not re.search(r"\[(\s*-?\d+(\.\d+)?\s*,){20,}", text)
    atlas.close()


def test_a_fetch_from_a_view_sends_what_is_cached_and_computes_what_is_not():
    atlas = UnitAtlas(cnn(), images(), "relu1", steps=4, page_size=3, decorrelate=False)
    atlas.wait()
    log = sent_messages(atlas)
    atlas._on_custom(atlas, {"type": "fetch", "what": "page"}, [])
    assert [m["type"] for m, _ in log] == ["tiles"] and log[0][0]["header"]["units"] == [0, 1, 2]
    atlas.unit = 2
    atlas.wait()
    log.clear()
    atlas._on_custom(atlas, {"type": "fetch", "what": "detail"}, [])
    atlas.wait()
    assert log[0][0]["type"] == "detail" and log[0][0]["header"]["unit"] == 2
    atlas.close()


def test_a_unit_wired_to_red_is_labelled_red_on_its_tile():
    data = hw.datasets.shapes(120, 24, seed=0)
    atlas = UnitAtlas(colour_units(), data, "relu", steps=4, decorrelate=False)
    atlas.wait()
    labels = {r["unit"]: (r["concept"], r["iou"]) for r in atlas.results()}
    assert {u: c for u, (c, _) in labels.items()} == {0: "red", 1: "green", 2: "blue"}
    assert all(iou > 0.04 for _, iou in labels.values())
    state = atlas._tiles_state("relu", "channel", 0, 0)
    assert state["header"]["concepts"] == ["red", "green", "blue"]
    assert atlas.dissection().label(0) == fv.dissect(colour_units(), data, "relu").label(0)
    atlas.close()


def test_the_model_is_left_exactly_as_found():
    model = cnn()
    model.train()
    model.bn.eval()  # a mixed mode
    model.conv1.bias.requires_grad_(False)
    out = model(images(4)).sum()
    out.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    calls = []
    handle = model.relu1.register_forward_hook(lambda *a: calls.append(1))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    modes = {n: m.training for n, m in model.named_modules()}
    atlas = UnitAtlas(model, images(), ["relu1", "fc"], steps=4, page_size=3, facets=2, facet_examples=6)
    atlas.wait()
    atlas.detail(1)
    atlas.invert(0)
    atlas.show("fc")
    atlas.close()
    assert calls == []  # the user's hook never fired: the work ran on a copy
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert [p.requires_grad for p in model.parameters()] == [n != "conv1.bias" for n, _ in model.named_parameters()]
    assert all(torch.equal(model.get_parameter(n).grad, g) for n, g in grads.items())
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert len(model.relu1._forward_hooks) == 1 and sum(len(m._forward_hooks) for m in model.modules()) == 1
    handle.remove()


def test_vector_layers_use_the_units_value_and_whole_examples():
    x = images()
    atlas = UnitAtlas(cnn(), (x, torch.arange(40) % 3), "fc", steps=4, decorrelate=False,
                      class_names=["cat", "dog", "<b>bird</b>"], k=2)
    atlas.wait()
    state = atlas._tiles_state("fc", "channel", 0, 0)
    assert "the unit's value" in state["header"]["objective_text"] and state["header"]["comparable"]
    crops = decode(state["header"]["index"], state["data"])["crops"]
    assert crops.shape == (3, 2, 12, 12, 3)  # whole examples: a vector layer has no receptive field
    atlas.unit = 0
    atlas.wait()
    header = atlas._detail_state("fc", "channel", 0, 0)["header"]
    assert set(header["top_labels"]) <= {"cat", "dog", "<b>bird</b>"}  # names as text (the view uses textContent)
    atlas.close()


class Tokens(nn.Module):
    """(N, C, H, W) -> (N, H*W, C): patches as tokens, as a vision transformer's embedding gives them."""

    def forward(self, x):
        return x.flatten(2).transpose(1, 2)


def test_sequence_layers_use_the_feature_mean_over_tokens_and_a_concept_store_labels_units(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(patch=nn.Conv2d(3, 8, 4, stride=4), tokens=Tokens(), mlp=nn.Linear(8, 6),
                                      pool=nn.Flatten(), head=nn.Linear(6 * 9, 2)))
    x = images()
    store = ConceptStore(tmp_path / "concepts.json", examples=40)
    store.create("bright", torch.nonzero(x.mean(dim=(1, 2, 3)) > 0.5).flatten().tolist())
    atlas = UnitAtlas(model, x, ["mlp", "patch"], steps=4, decorrelate=False, k=2, concepts=store)
    atlas.wait()
    assert atlas.layer_info["mlp"] == {"units": list(range(6)), "kind": "sequence", "count": 6}
    ref = fv.visualize(model, obj.channels("mlp", list(range(6))), shape=(3, 12, 12), steps=4, seed=0,
                       decorrelate=False)
    torch.testing.assert_close(atlas.images()[5], ref.images[5], atol=0, rtol=0)
    state = atlas._tiles_state("mlp", "channel", 0, 0)
    assert state["header"]["dissection_note"] == "dissection needs a conv layer (N, C, H, W)"
    assert decode(state["header"]["index"], state["data"])["crops"].shape == (6, 2, 12, 12, 3)
    atlas.show("patch")  # a conv layer: image-level concepts from the store label its units
    assert {r["concept"] for r in atlas.results("patch")} == {"bright"}
    assert atlas.settings["concepts"] == ["bright"]
    atlas.close()


def test_custom_objectives_are_offered_by_name_and_their_errors_are_shown():
    def smooth(layer, unit):
        return obj.channel(layer, unit) - 0.5 * obj.total_variation()

    atlas = UnitAtlas(cnn(), images(), "relu1", steps=4, page_size=2, decorrelate=False,
                      objectives={"smooth": smooth, "broken": lambda layer, unit: 3.0})
    atlas.wait()
    assert atlas.objectives == ["channel", "neuron", "smooth", "broken"]
    atlas.show(objective="smooth")
    ref = fv.visualize(atlas._snapshot.model, smooth("relu1", 1), shape=(3, 12, 12), steps=4, seed=0,
                       decorrelate=False)
    torch.testing.assert_close(atlas.images()[1], ref.images[0], atol=0, rtol=0)
    with pytest.raises(fv.FeatureVisualizationError, match=r"objectives\['broken'\]\('relu1', 0\) returned float"):
        atlas.show(objective="broken")
    assert atlas._tiles_state("relu1", "broken", 0, 0)["header"]["error"].startswith("FeatureVisualizationError")
    atlas.show(objective="channel")  # usable again
    atlas.close()


def test_a_dataloader_is_read_in_order_without_touching_the_global_random_stream():
    x = images()
    loader = DataLoader(TensorDataset(x, torch.zeros(40)), batch_size=16, shuffle=True)
    model = cnn()
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    a = UnitAtlas(model, loader, "relu2", steps=4, decorrelate=False, k=3)
    a.wait()
    a.detail(0)  # several passes over the loader on the worker thread
    assert torch.equal(torch.rand(3), expected)  # the atlas drew nothing from the global stream
    b = UnitAtlas(cnn(), x, "relu2", steps=4, decorrelate=False, k=3)
    a.wait()
    b.wait()
    ea, eb = a.examples(), b.examples()
    assert torch.equal(ea.top_values, eb.top_values)
    alive = ea.top_values[:, -1] > 0  # (a dead unit's zeros tie: any of them is a right answer)
    assert alive.sum() >= 2 and torch.equal(ea.top_indices[alive], eb.top_indices[alive])
    assert all(torch.equal(a.images()[u], b.images()[u]) for u in range(5))
    torch.testing.assert_close(a.invert(17).example, x[17])
    a.close()
    b.close()


def test_bad_input_is_refused_with_what_to_do():
    model, x = cnn(), images()
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['step'\]; valid ones: objective, "
                                        r"objectives, units, page_size, steps"):
        UnitAtlas(model, x, "relu1", step=3)
    with pytest.raises(fv.FeatureVisualizationError, match="relu1"):
        UnitAtlas(model, x, "relu_1")  # the closest name is suggested
    with pytest.raises(fv.FeatureVisualizationError, match=r"in \[0, 1\] before normalisation.*normalize="):
        UnitAtlas(model, x * 4 - 2, "relu1")
    with pytest.raises(fv.FeatureVisualizationError, match=r"images \(N, C, H, W\)"):
        UnitAtlas(model, torch.rand(10, 12), "relu1")
    with pytest.raises(fv.FeatureVisualizationError, match="could not run on the data's examples"):
        UnitAtlas(model, images(channels=1), "relu1")
    with pytest.raises(fv.FeatureVisualizationError, match="objective must be one of"):
        UnitAtlas(model, x, "relu1", objective="channels")
    with pytest.raises(fv.FeatureVisualizationError, match=r"unit 6 is out of range: layer 'relu1' has 6 units"):
        UnitAtlas(model, x, "relu1", units=[0, 6])
    with pytest.raises(fv.FeatureVisualizationError, match="page_size must be a positive int"):
        UnitAtlas(model, x, "relu1", page_size=0)
    with pytest.raises(fv.FeatureVisualizationError, match=r"fps must be a number in \(0, 30\]"):
        UnitAtlas(model, x, "relu1", fps=100)
    with pytest.raises(fv.FeatureVisualizationError, match="iterator"):
        UnitAtlas(model, iter([x]), "relu1")
    with pytest.raises(fv.FeatureVisualizationError, match="labels has 3 entries for 40 examples"):
        UnitAtlas(model, x, "relu1", labels=[0, 1, 2])
    atlas = UnitAtlas(model, x, "relu1", steps=2, decorrelate=False)
    with pytest.raises(traitlets.TraitError, match="no layer 'relu2' in this atlas"):
        atlas.layer = "relu2"
    with pytest.raises(traitlets.TraitError, match=r"inversion_example must be -1 or an example 0\.\.39"):
        atlas.inversion_example = 40
    atlas.close()


def test_save_html_holds_everything_computed_and_escapes_concept_names(tmp_path):
    data = hw.datasets.shapes(60, 16, seed=1)
    reds = torch.nonzero(data.labels[:, data.concepts.index("red")]).flatten().tolist()
    atlas = UnitAtlas(colour_units(), data, "relu", steps=4, facets=2, facet_examples=6, decorrelate=False,
                      concepts={"</script><b>red things</b>": reds})
    atlas.wait()
    atlas.detail(0)
    atlas.invert(3)
    path = atlas.save_html(tmp_path / "atlas.html")
    text = path.read_text()
    assert "</script><b>" not in text
    payload = json.loads(re.search(r'id="hw-payload">(.*?)</script>', text, re.S).group(1))
    static = payload["state"]["_static"]
    assert list(static["pages"]) == ["relu|channel|0|0"]
    assert list(static["details"]) == ["relu|channel|0|0"] and list(static["inversions"]) == ["3"]
    assert "</script><b>red things</b>" in atlas.settings["concepts"]
    assert len(payload["buffers"]) >= 3  # images travel as binary buffers (base64 in the page)
    assert "connect-src 'none'" in text
    atlas.close()


# ------------------------------------------------------------------------------------------------------------------
STEPS_TRAIN = 30


def batches():
    g = torch.Generator().manual_seed(1)
    return [(torch.rand(8, 3, 12, 12, generator=g), torch.randint(0, 3, (8,), generator=g))
            for _ in range(STEPS_TRAIN)]


def test_a_training_loop_in_another_thread_gets_bitwise_identical_gradients_while_the_atlas_computes():
    reference = cnn()
    ref_grads, _ = train(reference, batches())
    model = cnn()
    monitor = hw.ActivationMonitor(model, ["relu2"], every=1)
    results: dict = {}
    started = threading.Event()

    def loop():
        started.set()
        results["grads"], results["modes"] = train(model, batches(), monitor, pace=lambda: time.sleep(0.02))

    thread = threading.Thread(target=loop)  # the user's own thread
    thread.start()
    started.wait(10)
    atlas = UnitAtlas(model, images(), ["relu1", "relu2"], steps=6, page_size=3, facets=2, facet_examples=6,
                      decorrelate=False)
    atlas.show(page=1)
    atlas.detail(0, layer="relu2")
    atlas.invert(2)
    atlas.refresh()  # weights copied between two steps of the running loop
    thread.join(120)
    atlas.close()
    assert "at training step" in atlas.weights
    assert all(results["modes"])
    for step, (got, want) in enumerate(zip(results["grads"], ref_grads, strict=True)):
        assert torch.equal(got, want), f"step {step}: gradients differ from the unobserved run"
    monitor.close()


def test_traits_set_from_another_thread_while_the_worker_computes_reach_it():
    """The view's clicks arrive on a kernel subshell thread: they only enqueue; the worker picks them up."""
    atlas = UnitAtlas(cnn(), images(), "relu1", steps=4, page_size=3, decorrelate=False)
    t = threading.Thread(target=lambda: atlas.set_state({"page": 1}))
    t.start()
    t.join(10)
    atlas.wait()
    assert {3, 4, 5} <= set(atlas.images())  # (page 0 is skipped or stopped if the view left it before it ended)
    atlas.close()


def test_helpers():
    x = torch.rand(2, 3, 300, 150)
    out = ua.to_uint8(x)
    assert out.shape == (2, 128, 64, 3) and out.dtype == np.uint8
    assert ua.to_uint8(torch.ones(1, 1, 4, 4)).tolist() == [[[[255]] * 4] * 4]
    assert ua._span([3, 4, 5]) == "3–5" and ua._span([1, 4]) == "1, 4"
