"""Golden tests of the network explainer: every drilled unit is recomputed from the numbers it displays, and must
equal what the model computed (hooked output, and an independent functional recomputation)."""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hiddenwidgets.analysis.explainer import ExplainerError, explain_network

ATOL = 1e-5


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(1, 4, 3, padding=1), bn1=nn.BatchNorm2d(4), relu1=nn.ReLU(inplace=True),
        pool1=nn.MaxPool2d(2),
        conv2=nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=1, groups=2), relu2=nn.ReLU(),
        pool2=nn.AvgPool2d(2, stride=1, padding=1), flatten=nn.Flatten(), fc=nn.Linear(6 * 3 * 3, 5),
        softmax=nn.Softmax(dim=1)))
    with torch.no_grad():  # non-trivial running statistics
        model.bn1.running_mean.uniform_(-0.5, 0.5)
        model.bn1.running_var.uniform_(0.5, 2.0)
        model.bn1.weight.uniform_(0.5, 1.5)
        model.bn1.bias.uniform_(-0.2, 0.2)
    return model


class Block(nn.Module):
    """A ResNet basic block: two convs, a projection shortcut, the add, the (reused) ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)) \
            if stride != 1 or c_in != c_out else None

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


def resnet() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(OrderedDict(stem=nn.Conv2d(3, 4, 3, padding=1), block1=Block(4, 4, 1),
                                     block2=Block(4, 8, 2), pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(),
                                     fc=nn.Linear(8, 3)))


def recompute(u: dict) -> float:
    """The unit's value from the numbers it displays only (no module, no recorded tensors)."""
    kind = u["kind"]
    if kind == "conv2d":
        products = u["patch"].astype(np.float64) * u["kernel"].astype(np.float64)
        np.testing.assert_allclose(products, u["products"], rtol=1e-6, atol=1e-7)
        return float(products.sum()) + u["bias"]
    if kind == "linear":
        products = u["x"].astype(np.float64) * u["weights"].astype(np.float64)
        top = np.abs(products[u["order"]])
        assert np.all(top[:-1] >= top[1:])  # largest contributions first
        return float(products.sum()) + u["bias"]
    if kind in ("maxpool2d", "adaptive_maxpool2d"):
        window = np.where(u["inside"].astype(bool), u["window"].astype(np.float64), -np.inf)
        assert int(np.argmax(window)) == u["argmax"]
        return float(window.max())
    if kind in ("avgpool2d", "adaptive_avgpool2d"):
        return float(u["window"].astype(np.float64).sum()) / u["divisor"]
    if kind == "batchnorm":
        return (u["input"] - u["mean"]) / math.sqrt(u["var"] + u["eps"]) * u["gamma"] + u["beta"]
    if kind == "activation":
        return {"relu": max(0.0, u["input"]), "identity": u["input"]}[u["function"]]
    if kind == "softmax":
        exps = np.exp(u["logits"].astype(np.float64) - u["max"])
        np.testing.assert_allclose(exps, u["exps"], rtol=1e-6)
        return float(exps[u["position"]] / exps.sum())
    if kind == "add":
        return u["a"] + u["b"]
    if kind == "flatten":
        return u["value"]
    raise AssertionError(f"no recomputation for {kind}")


def check_every_unit(trace, limit: int = 40) -> int:
    checked = 0
    rng = np.random.default_rng(0)
    for s in trace.steps:
        shape = tuple(s.output.shape)
        picks = [np.unravel_index(k, shape) for k in rng.choice(int(np.prod(shape)), min(limit, int(np.prod(shape))),
                                                                 replace=False)]
        for idx in picks:
            u = trace.unit(s.index, tuple(int(i) for i in idx))
            assert u["output"] == pytest.approx(float(s.output[tuple(idx)]))
            assert recompute(u) == pytest.approx(u["output"], abs=ATOL), (s.label, idx, u)
            assert u["value"] == pytest.approx(u["output"], abs=ATOL)
            checked += 1
    return checked


def test_small_cnn_every_step_recorded_in_order_and_units_recompute():
    model = small_cnn()
    x = torch.randn(1, 8, 8, generator=torch.Generator().manual_seed(3))
    trace = explain_network(model, x)
    assert [s.name for s in trace.steps] == ["conv1", "bn1", "relu1", "pool1", "conv2", "relu2", "pool2", "flatten",
                                             "fc", "softmax"]
    assert not any(s.added for s in trace.steps)  # the model ends in a softmax: nothing added
    # recorded tensors are the model's: compare with an independent functional forward
    with torch.no_grad():
        model.eval()
        a = F.conv2d(x[None], model.conv1.weight, model.conv1.bias, padding=1)
        np.testing.assert_allclose(trace.steps[0].output.numpy(), a[0].numpy(), atol=1e-6)
        # in-place ReLU: the bn output stays the pre-ReLU value
        b = F.batch_norm(a, model.bn1.running_mean, model.bn1.running_var, model.bn1.weight, model.bn1.bias,
                         eps=model.bn1.eps)
        assert (b < 0).any()
        np.testing.assert_allclose(trace.steps[1].output.numpy(), b[0].numpy(), atol=1e-6)
        np.testing.assert_allclose(trace.steps[-1].output.numpy(), model(x[None])[0].numpy(), atol=1e-6)
    assert trace.steps[-1].output.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert check_every_unit(trace) > 200
    assert trace.graph == "torch.fx"
    assert [s.sources for s in trace.steps[:3]] == [[-1], [0], [1]]


def test_conv_unit_padding_stride_groups_by_hand():
    model = small_cnn()
    x = torch.randn(1, 8, 8, generator=torch.Generator().manual_seed(4))
    trace = explain_network(model, x)
    u = trace.unit("conv1", (2, 0, 7))  # corner: the patch reaches into the padding
    assert u["rows"].tolist() == [-1, 0, 1] and u["cols"].tolist() == [6, 7, 8]
    assert u["inside"].tolist() == [[0, 0, 0], [1, 1, 0], [1, 1, 0]]
    assert u["patch"][0, 1, 0] == pytest.approx(float(x[0, 0, 6])) and u["patch"][0, 0, 0] == 0
    g = trace.unit("conv2", (4, 1, 1))  # groups=2: output channel 4 reads input channels 2, 3 only
    assert g["channels"].tolist() == [2, 3] and g["group"] == 1
    assert g["rows"].tolist() == [1, 2, 3] and g["cols"].tolist() == [1, 2, 3]  # stride 2, padding 1
    assert [c["name"] for c in g["then"]] == ["relu2"]
    assert g["then"][0]["output"] == pytest.approx(max(0.0, g["output"]), abs=ATOL)
    c = trace.unit("conv1", (1, 3, 3))
    assert [t["kind"] for t in c["then"]] == ["batchnorm", "activation"]
    p = trace.unit("pool2", (0, 0, 0))  # avg pool with padding 1, count_include_pad: divisor 4
    assert p["divisor"] == 4 and p["inside"].tolist() == [[0, 0], [0, 1]]


def test_resnet_blocks_are_groups_with_their_skip():
    model = resnet()
    x = torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(5))
    trace = explain_network(model, x)
    names = [s.label for s in trace.steps]
    assert "block1 + skip" in names and "block2 + skip" in names
    assert [g.name for g in trace.groups] == ["block1", "block2"]
    g1, g2 = trace.groups
    assert trace.steps[g1.skip_from].name == "stem"  # identity skip: from the block's input
    add2 = trace.steps[g2.add]
    assert {trace.steps[i].name for i in add2.sources} == {"block2.bn2", "block2.downsample.1"}
    ds = next(s for s in trace.steps if s.name == "block2.downsample.0")
    assert trace.steps[ds.sources[0]].label == "block1.relu (call 2)"  # a branch from the block's input
    assert trace.steps[-1].added and trace.steps[-1].kind == "softmax"  # logits: a labelled softmax added
    with torch.no_grad():
        assert torch.allclose(trace.steps[-2].output, model.eval()(x[None])[0], atol=1e-6)
    assert check_every_unit(trace, limit=25) > 200


def test_unknown_layer_shows_input_and_output_and_says_so():
    class Square(nn.Module):
        def forward(self, x):
            return x * x

    model = nn.Sequential(nn.Linear(4, 3), Square())
    trace = explain_network(model, torch.randn(4), softmax=False)
    u = trace.unit(1, (2,))
    assert u["value"] is None and "does not know" in u["note"] and "Square" in u["note"]
    assert u["output"] == pytest.approx(float(trace.steps[1].output[2]))


def test_model_is_not_changed():
    model = resnet().train()
    model.block1.bn1.eval()
    for p in model.stem.parameters():
        p.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    explain_network(model, torch.randn(3, 8, 8))
    assert model.training and not model.block1.bn1.training and model.block2.bn1.training
    assert not model.stem.weight.requires_grad and model.fc.weight.requires_grad
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN stats not updated
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_untraceable_model_falls_back_and_says_so():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 2)

        def forward(self, x):
            h = self.a(x)
            if h.sum() > 0:  # control flow on values: torch.fx cannot trace it
                h = torch.relu(h)
            return self.b(h)

    trace = explain_network(Branchy(), torch.randn(3))
    assert trace.graph == "execution order"
    assert any("torch.fx cannot trace" in n for n in trace.notes)


def test_bad_input_refused():
    model = small_cnn()
    with pytest.raises(ExplainerError, match="floating-point"):
        explain_network(model, torch.zeros(1, 8, 8, dtype=torch.long))
    trace = explain_network(model, torch.randn(1, 8, 8))
    with pytest.raises(ExplainerError, match="outside"):
        trace.unit("conv1", (4, 0, 0))
    with pytest.raises(ExplainerError, match="did you mean 'conv1'"):
        trace.step("conv_1")
    with pytest.raises(TypeError, match="softmax"):
        explain_network(model, torch.randn(1, 8, 8), soft_max=True)


@pytest.mark.usefixtures("one_thread")
def test_explaining_while_a_background_job_trains_leaves_the_training_undisturbed():
    import threading

    from .test_concurrency import batches, cnn, train

    ref_model = cnn()
    ref_grads, _ = train(ref_model, batches())
    model = cnn()
    monitor = __import__("hiddenwidgets").ActivationMonitor(model, ["2"], every=1)
    gate = threading.Event()
    results: dict = {}
    explained = []

    def loop():
        results["grads"], results["modes"] = train(model, batches(), monitor, pace=lambda: gate.wait(10))

    with pytest.warns(UserWarning, match="training on another thread"):
        job = monitor.run_in_background(loop)
        for k in range(4):  # explained between two steps (paused), then during the steps
            trace = explain_network(model, torch.randn(1, 8, 8))
            explained.append(trace.unit(0, (0, 1, 1))["value"] - trace.unit(0, (0, 1, 1))["output"])
            if k == 1:
                gate.set()
        gate.set()
        assert job.wait(120)
    assert all(results["modes"])
    assert all(torch.equal(a, b) for a, b in zip(results["grads"], ref_grads, strict=True))
    assert max(abs(d) for d in explained) < ATOL  # the copy's arithmetic is consistent with its own output
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()) == 0
    monitor.close()


def test_dilated_windows_by_hand():
    """The shared window geometry (row = i·stride − padding + dilation·r) for a dilated conv and a dilated pool."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=2, dilation=2), nn.MaxPool2d(3, stride=2, padding=1, dilation=2),
                          nn.Flatten(), nn.Linear(2 * 3 * 3, 2))
    trace = explain_network(model, torch.randn(1, 7, 7, generator=torch.Generator().manual_seed(6)))
    u = trace.unit(0, (1, 0, 6))
    assert u["rows"].tolist() == [-2, 0, 2] and u["cols"].tolist() == [4, 6, 8]
    assert u["inside"].tolist() == [[0, 0, 0], [1, 1, 0], [1, 1, 0]]  # row −2 and column 8 are padding
    p = trace.unit(1, (0, 1, 2))  # rows 1·2 − 1 + 2r, columns 2·2 − 1 + 2q
    assert p["rows"].tolist() == [1, 3, 5] and p["cols"].tolist() == [3, 5, 7]
    assert p["inside"].tolist() == [[1, 1, 0]] * 3  # the 7x7 map ends at column 6
    assert check_every_unit(trace, limit=20) > 40


def test_unit_refused_once_the_weights_changed():
    model = small_cnn()
    trace = explain_network(model, torch.randn(1, 8, 8))
    assert trace.unit("conv1", (0, 1, 1))["value"] == pytest.approx(trace.unit("conv1", (0, 1, 1))["output"],
                                                                    abs=ATOL)
    with torch.no_grad():
        model.conv1.weight.add_(0.1)  # an optimizer step, as far as the trace can tell
    with pytest.raises(ExplainerError, match="changed after this trace was recorded"):
        trace.unit("conv1", (0, 1, 1))
    assert trace.unit("fc", (0,))["value"] == pytest.approx(trace.unit("fc", (0,))["output"], abs=ATOL)


@pytest.mark.usefixtures("one_thread")
def test_view_follows_a_background_job_at_step_boundaries_without_disturbing_it():
    """NetworkExplainer(refresh=...) while monitor.run_in_background trains: pictures are made from copies taken
    between two optimizer steps (each equals a forward pass of the weights saved at the step it names), and the
    training is bitwise what it is without the view (gradients, modes), with no hooks left on the model."""
    import threading
    import time

    import hiddenwidgets as hw
    from hiddenwidgets.pipeline.transport import decode

    from .test_concurrency import batches, cnn, train

    ref_grads, _ = train(cnn(), batches())
    model = cnn()
    images = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(9))
    monitor = hw.ActivationMonitor(model, ["2"], every=1)
    view = hw.NetworkExplainer(model, images, refresh=0.05)
    assert view.following and view.weights["copy"] and view.refresh == 0.05
    saved: dict[int, dict] = {}
    results: dict = {}

    def pace():
        saved[len(saved) + 1] = {k: v.clone() for k, v in model.state_dict().items()}
        time.sleep(0.01)

    def loop():
        results["grads"], results["modes"] = train(model, batches(), monitor, pace=pace)

    pictures: dict[int, tuple] = {}
    job = monitor.run_in_background(loop)
    while job.running:
        with view._state_lock:  # the trace, the overview and the weights they name change together
            step = view.weights["step"]
            if step is not None and step not in pictures:
                arrays = decode(view._overview["header"]["index"], view._overview["data"])
                pictures[step] = (arrays[f"s{len(view.layers) - 1}"].copy(), view.unit(0, (1, 2, 3))["output"])
        time.sleep(0.005)
    assert job.wait(60)
    assert all(results["modes"])
    assert all(torch.equal(a, b) for a, b in zip(results["grads"], ref_grads, strict=True))
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()) == 0
    # the user's gradients are where the last step left them
    assert torch.equal(torch.cat([p.grad.reshape(-1) for p in model.parameters()]), ref_grads[-1])
    assert len([s for s in pictures if s > 0]) >= 2, pictures.keys()
    for step, (probs, conv) in pictures.items():
        if step == 0:
            continue
        twin = cnn()
        twin.load_state_dict(saved[step])
        with torch.no_grad():
            expected = torch.softmax(twin.eval()(images[:1])[0], 0)
            expected_conv = float(twin[0](images[:1])[0, 1, 2, 3])
        np.testing.assert_allclose(probs, expected.numpy(), atol=1e-6)
        assert conv == pytest.approx(expected_conv, abs=1e-6)
    # the job ended: one more look takes the final weights, then nothing changes and nothing is recomputed
    deadline = time.monotonic() + 10
    while view.weights["step"] != len(saved) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert view.weights["step"] == len(saved)
    made = view.refreshes
    time.sleep(0.3)
    assert view.refreshes == made
    # its page names the step of the weights whose numbers it embeds (and does not claim to follow)
    static = view.static_state()["_static"]
    assert static["weights"]["step"] == len(saved)
    assert static["weights"]["text"].startswith(f"training step {len(saved)} (copied ")
    assert "following" not in static["weights"]["text"]
    arrays = decode(static["inputs"]["0"]["overview"]["header"]["index"], static["inputs"]["0"]["overview"]["data"])
    twin = cnn()
    twin.load_state_dict(saved[len(saved)])
    with torch.no_grad():
        expected = torch.softmax(twin.eval()(images[:1])[0], 0)
    np.testing.assert_allclose(arrays[f"s{len(view.layers) - 1}"], expected.numpy(), atol=1e-6)
    # a drawing while following is explained on the same copy, and a unit names its weights
    sent = []
    view.send = lambda content, buffers=None: sent.append((content, buffers))
    view._on_custom(view, {"type": "draw", "seq": 1}, [memoryview(np.ones((8, 8), np.float32).tobytes())])
    assert view.selected == -1 and view.trace.steps[0].module is not model[0]
    view._on_custom(view, {"type": "unit", "step": 0, "index": [0, 1, 1], "key": "k"}, [])
    assert sent[-1][0]["header"]["weights_step"] == len(saved)
    thread = view._follower
    view.close()
    assert not view.following and not thread.is_alive() and view.refresh == 0
    assert not any(t.name == "hiddenwidgets-explainer-follow" and t.is_alive() for t in threading.enumerate())
    with pytest.raises(ExplainerError, match="refresh"):
        hw.NetworkExplainer(model, images, refresh=-1)
    monitor.close()
