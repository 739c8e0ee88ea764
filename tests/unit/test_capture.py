from __future__ import annotations

import dataclasses
from collections import OrderedDict

import pytest
import torch
from torch import nn

from hiddenwidgets import Capture, CaptureError, LayerError, select_tensor


def small_cnn() -> nn.Module:
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(1, 4, 3, padding=1), relu1=nn.ReLU(), conv2=nn.Conv2d(4, 4, 3, padding=1),
        flatten=nn.Flatten(), fc1=nn.Linear(4 * 6 * 6, 3),
    ))


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def test_unknown_layer_lists_the_closest_valid_names():
    with pytest.raises(LayerError) as err:
        Capture(small_cnn(), ["conv3"])
    msg = str(err.value)
    assert "no layer named 'conv3'" in msg
    assert "Closest names: 'conv2', 'conv1'" in msg  # closest first
    assert "model.named_modules()" in msg


def test_bad_layer_arguments_are_rejected_with_the_expected_form():
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        Capture("not a model", ["x"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one layer"):
        Capture(small_cnn(), [])


@dataclasses.dataclass
class Out:
    note: str
    hidden: torch.Tensor
    logits: torch.Tensor


class ModelOutputLike(OrderedDict):
    """Like transformers' ModelOutput: an ordered mapping."""


@pytest.mark.parametrize(("output", "where", "numel"), [
    ((torch.zeros(1), torch.ones(2)), "output[0]", 1),
    (["text", torch.ones(2)], "output[1]", 2),
    ({"a": "text", "b": torch.ones(3)}, "output['b']", 3),
    (Out("x", torch.ones(4), torch.zeros(5)), "output.hidden", 4),
    (ModelOutputLike(last_hidden_state=torch.ones(6)), "output['last_hidden_state']", 6),
])
def test_first_tensor_is_picked_and_named(output, where, numel):
    tensor, source = select_tensor(output)
    assert source == where
    assert tensor.numel() == numel


def test_selectors_pick_by_index_key_attribute_or_callable():
    out = Out("x", torch.ones(4), torch.zeros(5))
    assert select_tensor(out, "logits")[0].numel() == 5
    assert select_tensor((torch.zeros(1), torch.ones(2)), 1)[1] == "output[1]"
    assert select_tensor({"h": torch.ones(2)}, "h")[1] == "output['h']"
    picked, source = select_tensor(out, lambda o: o.logits * 2)
    assert picked.numel() == 5 and source.endswith("(output)")


def test_output_without_tensor_and_bad_selectors_get_clear_errors():
    with pytest.raises(CaptureError, match=r"holds no tensor \(tuple\(str, int\)\)"):
        select_tensor(("a", 1))
    with pytest.raises(CaptureError, match="selector 'nope' does not match"):
        select_tensor({"h": torch.ones(1)}, "nope")
    with pytest.raises(CaptureError, match="expected a Tensor"):
        select_tensor({"h": "text"}, "h")


def test_armed_layers_deliver_every_call_with_its_index_until_disarmed():
    model = small_cnn()
    seen = []
    cap = Capture(model, ["conv1", "fc1"]).attach(lambda name, t, call: seen.append((name, tuple(t.shape), call)))
    x = torch.randn(2, 1, 6, 6)
    model(x)
    assert seen == []
    assert cap.reset_counts() == {"conv1": (1, 0), "fc1": (1, 0)}  # counted even when not armed
    cap.arm()
    model(x)
    model(x)
    assert [(n, s, c.index, c.training) for n, s, c in seen] == [
        ("conv1", (2, 4, 6, 6), 0, True), ("fc1", (2, 3), 0, True),
        ("conv1", (2, 4, 6, 6), 1, True), ("fc1", (2, 3), 1, True)]
    cap.disarm()
    model(x)
    assert len(seen) == 4
    assert cap.reset_counts() == {"conv1": (3, 0), "fc1": (3, 0)}
    cap.detach()


def test_no_grad_forwards_are_skipped_by_default_and_kept_on_request():
    model = small_cnn()
    seen = []
    cap = Capture(model, ["fc1"]).attach(lambda name, t, call: seen.append((name, call.training)))
    cap.arm()
    with torch.no_grad():
        model(torch.randn(1, 1, 6, 6))
    model.eval()  # eval mode with autograd on (a validation pass without no_grad) is not training either
    model(torch.randn(1, 1, 6, 6))
    model.train()
    assert seen == [] and cap.armed == {"fc1"}
    assert cap.reset_counts() == {"fc1": (0, 2)}
    model(torch.randn(1, 1, 6, 6))
    assert seen == [("fc1", True)]
    cap.arm_other()
    with torch.no_grad():
        model(torch.randn(1, 1, 6, 6))
    assert seen[-1] == ("fc1", False)
    cap.detach()
    keep = Capture(model, ["fc1"], grad_only=False).attach(lambda name, t, call: seen.append("no-grad"))
    keep.arm()
    with torch.no_grad():
        model(torch.randn(1, 1, 6, 6))
    assert seen[-1] == "no-grad"
    keep.detach()


def test_hooks_are_removed_on_detach_on_exception_and_on_keyboard_interrupt():
    model = small_cnn()
    cap = Capture(model, ["conv1", "conv2", "fc1"]).attach(lambda *a: None)
    assert hook_count(model) == 3
    cap.detach()
    cap.detach()  # idempotent
    assert hook_count(model) == 0

    with pytest.raises(RuntimeError, match="boom"), Capture(model, ["conv1"]).attach(lambda *a: None):
        assert hook_count(model) == 1
        raise RuntimeError("boom")
    assert hook_count(model) == 0

    with pytest.raises(KeyboardInterrupt), Capture(model, ["conv1", "fc1"]).attach(lambda *a: None):
        model(torch.randn(1, 1, 6, 6))
        raise KeyboardInterrupt
    assert hook_count(model) == 0


def test_the_model_is_never_changed():
    model = small_cnn().eval()
    model.conv1.weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cap = Capture(model, ["conv1", "fc1"], gradients=True).attach(lambda *a: None, lambda *a: None)
    cap.arm()
    model(torch.randn(2, 1, 6, 6)).sum().backward()
    cap.detach()
    assert model.training is False and all(not m.training for m in model.modules())
    assert model.conv1.weight.requires_grad is False and model.fc1.weight.requires_grad is True
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert hook_count(model) == 0


def test_gradient_hook_sees_dloss_doutput_and_leaves_the_gradient_unchanged():
    torch.manual_seed(0)
    model = small_cnn()
    grads = {}
    outs = {}
    cap = Capture(model, ["conv2"], gradients=True)
    cap.attach(lambda name, t, c: outs.__setitem__(name, t), lambda name, g, c: grads.__setitem__(name, g.clone()))
    cap.arm()
    x = torch.randn(3, 1, 6, 6)
    model(x).pow(2).sum().backward()
    with_hook = [p.grad.clone() for p in model.parameters()]
    cap.detach()
    # reference: the same gradient through retain_grad, with no capture at all
    model.zero_grad()
    h = model.conv2(model.relu1(model.conv1(x)))
    h.retain_grad()
    model.fc1(model.flatten(h)).pow(2).sum().backward()
    assert torch.allclose(grads["conv2"], h.grad)
    assert all(torch.allclose(a, p.grad) for a, p in zip(with_hook, model.parameters(), strict=True))


def test_inplace_relu_after_a_hooked_layer_still_backpropagates():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(inplace=True), nn.Linear(4, 1))
    got = []
    cap = Capture(model, ["0"], gradients=True).attach(lambda *a: None, lambda n, g, c: got.append(g.shape))
    cap.arm()
    model(torch.randn(2, 4)).sum().backward()
    cap.detach()
    assert got == [torch.Size([2, 4])]


def test_describe_says_which_tensor_is_watched():
    lstm = nn.LSTM(3, 5, batch_first=True)
    model = nn.Sequential(OrderedDict(lstm=lstm))

    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = lstm

        def forward(self, x):
            return self.lstm(x)[0]

    wrapper = Wrapper()
    cap = Capture(wrapper, ["lstm"]).attach(lambda *a: None)
    assert cap.describe() == {"lstm": "not captured yet"}
    cap.arm()
    wrapper(torch.randn(2, 7, 3))
    assert cap.describe() == {"lstm": "output[0]"}
    cap.detach()
    assert model is not None
