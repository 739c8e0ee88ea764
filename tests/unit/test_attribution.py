"""Golden tests for the CAM family (issue 3's identities), the Captum adapters, and bad input."""

from __future__ import annotations

import warnings
from collections import OrderedDict

import pytest
import torch
from torch import nn

import hiddenwidgets as hw
from hiddenwidgets.methods import METHODS

warnings.filterwarnings("ignore", module="captum")


def gap_net(seed: int = 0) -> nn.Module:
    """conv features -> global average pooling -> linear: the network for which CAM is defined."""
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(1, 4, 3, padding=1), relu1=nn.ReLU(),
        conv2=nn.Conv2d(4, 6, 3, padding=1), relu2=nn.ReLU(),
        gap=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(), fc=nn.Linear(6, 3)))


def features(model, x, name="relu2"):
    out = {}
    h = getattr(model, name).register_forward_hook(lambda m, a, o: out.__setitem__("a", o.detach()))
    model(x)
    h.remove()
    return out["a"]


X = torch.randn(4, 1, 7, 7, generator=torch.Generator().manual_seed(1))
TARGET = torch.tensor([0, 1, 2, 1])


def test_grad_cam_equals_cam_over_hw_on_a_gap_linear_net():
    model = gap_net()
    a = features(model, X)  # (N, K, H, W)
    cam = torch.einsum("nk,nkhw->nhw", model.fc.weight[TARGET], a)  # Zhou et al.: sum_k w_ck A^k
    grad_cam = hw.attribute(model, X, "grad_cam", TARGET, layer="relu2", raw=True, relu=False)
    hw_ = a.shape[2] * a.shape[3]
    torch.testing.assert_close(grad_cam, cam / hw_)


@pytest.mark.parametrize("method", ["xgrad_cam", "hires_cam"])
@pytest.mark.parametrize("relu", [False, True])
def test_xgrad_cam_and_hires_cam_equal_grad_cam_on_a_gap_linear_net(method, relu):
    model = gap_net()
    want = hw.attribute(model, X, "grad_cam", TARGET, layer="relu2", raw=True, relu=relu)
    got = hw.attribute(model, X, method, TARGET, layer="relu2", raw=True, relu=relu)
    torch.testing.assert_close(got, want)


def test_grad_cam_before_relu_equals_captums_layer_grad_cam():
    from captum.attr import LayerGradCam

    model = gap_net(3).eval()
    ours = hw.attribute(model, X, "grad_cam", TARGET, layer="conv2", raw=True, relu=False)
    theirs = LayerGradCam(model, model.conv2).attribute(X, target=TARGET, relu_attributions=False).squeeze(1)
    torch.testing.assert_close(ours, theirs)


def test_smooth_grad_cam_pp_with_one_noise_free_sample_is_grad_cam_pp():
    model = gap_net(2)
    plain = hw.attribute(model, X, "grad_cam_plus_plus", TARGET, layer="conv2", raw=True)
    smooth = hw.attribute(model, X, "smooth_grad_cam_plus_plus", TARGET, layer="conv2", raw=True, n_samples=1,
                          stdev=0.0)
    torch.testing.assert_close(smooth, plain)
    noisy = hw.attribute(model, X, "smooth_grad_cam_plus_plus", TARGET, layer="conv2", raw=True, n_samples=4)
    assert not torch.allclose(noisy, plain)


def test_grad_cam_pp_weights_by_hand():
    # one channel, constant gradient g over the 2 x 2 map: alpha = g^2 / (2 g^2 + sum(A) g^3), w = 4 alpha relu(g)
    from hiddenwidgets.methods.grad_cam_plus_plus import plus_plus_weights

    a = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    g = torch.full_like(a, 0.5)
    alpha = 0.25 / (2 * 0.25 + 10 * 0.125)
    torch.testing.assert_close(plus_plus_weights(a, g, g**2, g**3), torch.tensor([[4 * alpha * 0.5]]))


def test_layer_cam_by_hand_and_score_cam_with_one_channel():
    model = gap_net(4)
    a = features(model, X, "relu2")
    x = X.clone().requires_grad_(True)
    out = {}

    def keep_grad(module, args, output):
        output.register_hook(lambda g: out.__setitem__("g", g))

    h = model.relu2.register_forward_hook(keep_grad)
    model(x).gather(1, TARGET.view(-1, 1)).sum().backward()
    h.remove()
    want = torch.relu((torch.relu(out["g"]) * a).sum(1))
    torch.testing.assert_close(hw.attribute(model, X, "layer_cam", TARGET, layer="relu2", raw=True), want)
    # Score-CAM on a one-channel layer: the softmax over one channel is 1, so the map is ReLU(A)
    one = nn.Sequential(OrderedDict(conv=nn.Conv2d(1, 1, 3, padding=1), gap=nn.AdaptiveAvgPool2d(1),
                                    flat=nn.Flatten(), fc=nn.Linear(1, 2)))
    a1 = features(one, X, "conv")
    torch.testing.assert_close(hw.attribute(one, X, "score_cam", 0, layer="conv", raw=True), torch.relu(a1[:, 0]))


def test_eigen_cam_projects_on_the_first_principal_component_with_a_positive_sign():
    # activations A^k(x, y) = u_k m(x, y) + c_k: centred, they are rank one along u, so the map is m - mean(m)
    torch.manual_seed(0)
    m = torch.rand(5, 5)
    u = torch.tensor([1.0, -2.0, 0.5])
    acts = (u[:, None, None] * m + torch.tensor([3.0, 1.0, 2.0])[:, None, None]).unsqueeze(0)
    cam = METHODS["eigen_cam"]().combine(acts, None)[0]
    expected = (m - m.mean()) * u.norm()
    sign = torch.sign((cam * expected).sum())
    torch.testing.assert_close(cam, expected * sign)
    total = acts.sum(1)[0]
    assert ((cam - cam.mean()) * (total - total.mean())).sum() > 0  # the documented sign convention


def test_integrated_gradients_matches_captum_called_directly():
    from captum.attr import IntegratedGradients

    model = gap_net(5).eval()
    ours = hw.attribute(model, X, "integrated_gradients", TARGET, n_steps=16)
    theirs = IntegratedGradients(model).attribute(X, target=TARGET, n_steps=16)
    torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_leaves_the_model_as_it_was(name):
    if name == "lrp":
        pytest.skip("LRP has no rule for Flatten/AdaptiveAvgPool2d: covered by the error test")
    model = gap_net(6).train()
    model.relu1.eval()  # mixed modes must come back exactly
    model.conv1.weight.requires_grad_(False)
    layer = "conv2" if METHODS[name].needs_layer else None
    out = hw.attribute(model, X, name, "predicted", layer=layer)
    assert out.shape in (X.shape, X.shape[:1] + X.shape[2:])
    assert torch.isfinite(out).all()
    assert model.training and not model.relu1.training and model.conv2.training
    assert not model.conv1.weight.requires_grad and model.conv2.weight.requires_grad
    assert all(not m._forward_hooks and not m._backward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_available_methods_lists_names_labels_layers_and_papers():
    listed = {m["name"]: m for m in hw.available_methods()}
    assert {"grad_cam", "score_cam", "integrated_gradients", "lime", "vargrad", "layer_conductance"} <= set(listed)
    assert listed["grad_cam"]["needs_layer"] and not listed["saliency"]["needs_layer"]
    assert all(m["paper"] and m["label"] for m in listed.values())


def test_bad_input_gets_clear_errors():
    model = gap_net()
    with pytest.raises(hw.AttributionError, match=r"Grad-CAM needs a layer: pass layer=NAME.*'conv2'"):
        hw.attribute(model, X, "grad_cam")
    with pytest.raises(hw.AttributionError, match=r"target 7 is out of range: the model outputs 3 classes"):
        hw.attribute(model, X, "saliency", 7)
    with pytest.raises(hw.AttributionError, match=r"shape \(4, 3, 7, 7\).*expects \(N, 1, \.\.\.\)"):
        hw.attribute(model, torch.randn(4, 3, 7, 7), "saliency")
    with pytest.raises(hw.AttributionError, match=r"unknown method 'gradcam'; did you mean \['grad_cam'"):
        hw.attribute(model, X, "gradcam")
    with pytest.raises(hw.AttributionError, match="no layer named 'conv9'"):
        hw.attribute(model, X, "grad_cam", layer="conv9")

    class Quantised(nn.Module):
        def forward(self, x):
            return torch.nn.functional.one_hot(x.flatten(1).sum(1).round().long().clamp(0, 2), 3).float()

    with pytest.raises(hw.AttributionError, match="use a perturbation method instead: occlusion"):
        hw.attribute(Quantised(), X, "integrated_gradients", 0)
    assert hw.attribute(Quantised(), X, "occlusion", 0).shape == X.shape  # perturbation methods still work
    with pytest.raises(hw.AttributionError, match=r"LRP .* has no propagation rule for Flatten"):
        hw.attribute(model, X, "lrp", 0)


def test_evaluation_mode_gives_every_module_its_own_mode_back():
    from hiddenwidgets.methods.base import evaluation_mode

    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(), nn.Sequential(nn.BatchNorm1d(2), nn.Linear(2, 1)))
    model.train()
    model[1].eval()  # mixed: one submodule already in eval
    before = [m.training for m in model.modules()]
    with evaluation_mode(model):
        assert not any(m.training for m in model.modules())
        model[2].train()  # a method that flips modes inside
        model[0].weight.requires_grad_(False)
    assert [m.training for m in model.modules()] == before
    assert model[0].weight.requires_grad
    model.eval()
    with evaluation_mode(model):
        model.train()
    assert not any(m.training for m in model.modules())  # eval stays eval


@pytest.mark.parametrize("method", ["saliency", "integrated_gradients", "smoothgrad", "layer_grad_cam"])
def test_the_users_input_tensor_is_left_as_given(method):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 3)).eval()
    x = torch.randn(2, 1, 6, 6)
    copy = x.clone()
    hw.attribute(model, x, method, target=1, layer="0" if method == "layer_grad_cam" else None)
    assert not x.requires_grad and x.grad is None and torch.equal(x, copy)


def test_score_cam_by_hand_whatever_the_batch_crossing_images_and_channels():
    model = gap_net(4)
    a = features(model, X, "relu2")  # (n, k, h, w)
    n, k = a.shape[:2]
    masks = nn.functional.interpolate(a, size=X.shape[2:], mode="bilinear", align_corners=False)
    flat = masks.flatten(2)
    lo, hi = flat.amin(2)[..., None, None], flat.amax(2)[..., None, None]
    masks = torch.where(hi > lo, (masks - lo) / (hi - lo), torch.zeros_like(masks))
    with torch.no_grad():
        base = model(torch.zeros_like(X)).softmax(1)
        scores = torch.stack([torch.stack([model(X[i : i + 1] * masks[i, c]).softmax(1)[0, TARGET[i]]
                                           - base[i, TARGET[i]] for c in range(k)]) for i in range(n)])
    want = torch.relu((scores.softmax(1)[:, :, None, None] * a).sum(1))  # Wang et al. 2020, eq. (4)-(5)
    for batch in (None, 1, k + 1, 3 * k - 1):  # chosen, one at a time, and batches that straddle images
        got = hw.attribute(model, X, "score_cam", TARGET, layer="relu2", raw=True, batch_size=batch)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    # a callable target is scored one image's rows at a time, also inside a batch that holds several images
    by_score = hw.attribute(model, X, "score_cam", lambda logits: logits.softmax(1)[:, 1], layer="relu2", raw=True,
                            batch_size=k + 1)
    classes = hw.attribute(model, X, "score_cam", torch.ones_like(TARGET), layer="relu2", raw=True, batch_size=1)
    torch.testing.assert_close(by_score, classes, rtol=1e-4, atol=1e-6)
