"""Feature visualisation by optimisation (hiddenwidgets.analysis.featurevis): objectives, parameterisations,
transforms, the optimisation loop, and what it leaves behind on the model."""

from __future__ import annotations

import math
import sys
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from hiddenwidgets.analysis import featurevis as fv
from hiddenwidgets.analysis.featurevis import objectives as obj
from hiddenwidgets.analysis.featurevis.parameterizations import (
    ColorDecorrelation,
    FourierImage,
    PixelImage,
    fourier_scale,
)
from hiddenwidgets.analysis.featurevis.transforms import apply_transforms, default_transforms, jitter, pad
from hiddenwidgets.datasets import shapes

S = 32


pytestmark = pytest.mark.usefixtures("one_thread")


def small_cnn(channels: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(channels, 6, 3)), ("relu1", nn.ReLU()),
        ("conv2", nn.Conv2d(6, 8, 3, stride=2)), ("relu2", nn.ReLU()),
        ("pool", nn.AdaptiveAvgPool2d(1)), ("flat", nn.Flatten()), ("fc", nn.Linear(8, 5)),
    ]))


# ------------------------------------------------------------------------------------------------------------------
# golden: a hand-set oriented grating filter in the red channel
def grating_model(kx: int, ky: int, size: int = 13) -> nn.Module:
    """One unit: ReLU of a zero-mean cosine grating of frequency (kx, ky) cycles per S pixels, red channel only."""
    conv = nn.Conv2d(3, 1, size, bias=False)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    w = torch.cos(2 * math.pi * (kx * xx + ky * yy) / S)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0] = w - w.mean()
    return nn.Sequential(OrderedDict([("conv", conv), ("relu", nn.ReLU())]))


def dominant_frequency(img: torch.Tensor) -> tuple[int, int]:
    """(fy, fx) of the largest non-DC FFT bin of an S×S image, in cycles per image, sign fixed so fx > 0."""
    f = torch.fft.fft2(img.double() - img.double().mean()).abs()
    f[0, 0] = 0
    i = int(f.argmax())
    fy, fx = i // S, i % S
    fy, fx = (fy - S if fy > S // 2 else fy), (fx - S if fx > S // 2 else fx)
    return (-fy, -fx) if fx < 0 or (fx == 0 and fy < 0) else (fy, fx)


@pytest.mark.parametrize("kx,ky", [(4, 2), (-2, 5)])
def test_optimised_image_has_the_filters_frequency_and_orientation(kx, ky):
    model = grating_model(kx, ky)
    kernel = torch.zeros(S, S)
    kernel[:13, :13] = model.conv.weight[0, 0].detach()
    expected = dominant_frequency(kernel)
    assert expected == dominant_frequency(torch.cos(2 * math.pi * (kx * torch.arange(S)[None] + ky * torch.arange(S)[
        :, None]) / S))  # the filter's own peak is the grating's frequency
    objective = obj.channel("relu", 0)
    result = fv.visualize(model, objective, shape=(3, S, S), steps=256, seed=0)  # defaults: Fourier, decorrelated
    red = result.images[0, 0]
    got = dominant_frequency(red)
    assert got == expected
    angle = math.degrees(math.atan2(got[0], got[1]))
    assert angle == pytest.approx(math.degrees(math.atan2(expected[0], expected[1])), abs=1e-9)
    # the image is a grating in red: the peak bin holds far more energy than any other bin outside the peak pair
    spec = torch.fft.fft2(red.double() - red.double().mean()).abs()
    peak = float(spec[got[0] % S, got[1] % S])
    spec[got[0] % S, got[1] % S] = spec[-got[0] % S, -got[1] % S] = 0
    assert peak > 1.5 * spec.max()
    # and it excites the unit more than any data set example (the procedural set has stripes of many angles)
    data = shapes(256, S, seed=1).images
    best = fv.evaluate(model, objective, data).max()
    assert result.values[0] > best
    assert result.values[0] == pytest.approx(float(fv.evaluate(model, objective, result.images)[0]), rel=1e-6)


# ------------------------------------------------------------------------------------------------------------------
# golden: parameterisations
def test_fourier_scale_of_a_4x4_image_by_hand():
    # bins (k, l), k in rows (fftfreq(4) = 0, 1/4, -1/2, -1/4), l in 0, 1/4, 1/2 (rfftfreq); f = |(fy, fx)|
    # 1 / max(f, 1/4): f <= 1/4 -> 4; f = sqrt(2)/4 -> 2 sqrt(2); f = 1/2 -> 2; f = sqrt(5)/4 -> 4 / sqrt(5);
    # f = sqrt(2)/2 -> sqrt(2)
    r2, r5 = math.sqrt(2), math.sqrt(5)
    raw = torch.tensor([[4, 4, 2],
                        [4, 2 * r2, 4 / r5],
                        [2, 4 / r5, r2],
                        [4, 2 * r2, 4 / r5]], dtype=torch.float64)
    expected = raw / raw.pow(2).mean().sqrt()
    torch.testing.assert_close(fourier_scale(4, 4), expected)


def test_fourier_image_is_the_inverse_fft_of_the_scaled_spectrum_by_hand():
    g = torch.Generator().manual_seed(3)
    p = FourierImage((1, 1, 4, 4), generator=g, dtype=torch.float64, sd=1.0)
    spec = torch.view_as_complex(p.spectrum.detach())[0, 0] * fourier_scale(4, 4)  # X[k, l], l = 0..2
    # the real image whose half spectrum is X (orthonormal): columns l = 0 and l = W/2 count once, the others
    # twice (for their conjugate partners), and only real parts survive
    want = np.zeros((4, 4))
    for m in range(4):
        for n in range(4):
            total = 0.0
            for k in range(4):
                for ll in range(3):
                    c = 1 if ll in (0, 2) else 2
                    total += c * (complex(spec[k, ll]) * np.exp(2j * np.pi * (k * m / 4 + ll * n / 4))).real
            want[m, n] = total / 4  # 1 / sqrt(H W)
    torch.testing.assert_close(p.spatial().detach()[0, 0], torch.tensor(want), atol=1e-12, rtol=0)
    # decode = sigmoid(spatial) without decorrelation
    torch.testing.assert_close(p.decode().detach()[0, 0], torch.sigmoid(torch.tensor(want)), atol=1e-12, rtol=0)


@pytest.mark.parametrize("kind", [PixelImage, FourierImage])
def test_parameterisations_start_from_given_images(kind):
    g = torch.Generator().manual_seed(0)
    images = torch.rand((2, 3, 7, 10), generator=g, dtype=torch.float64) * 0.9 + 0.05
    p = kind((2, 3, 7, 10), generator=g, dtype=torch.float64, decorrelation=ColorDecorrelation.imagenet())
    p.initialize(images)
    torch.testing.assert_close(p.decode().detach(), images, atol=1e-10, rtol=0)


def test_colour_decorrelation_is_invertible_and_is_the_square_root_of_the_data_covariance():
    g = torch.Generator().manual_seed(0)
    mix = torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.3, 0.0], [0.5, 0.4, 0.2]], dtype=torch.float64)
    z = torch.randn((50, 3, 8, 8), generator=g, dtype=torch.float64)
    data = torch.einsum("cd,ndhw->nchw", mix, z) * 0.1 + 0.5
    d = ColorDecorrelation.from_data(data)
    cov = torch.cov(data.transpose(0, 1).reshape(3, -1))
    evals = torch.linalg.eigvalsh(cov)
    torch.testing.assert_close(d.matrix @ d.matrix.T, cov / evals.max(), atol=1e-10, rtol=0)
    torch.testing.assert_close(d.matrix @ d.inverse_matrix, torch.eye(3, dtype=torch.float64), atol=1e-10, rtol=0)
    x = torch.rand((2, 3, 5, 5), generator=g, dtype=torch.float64)
    torch.testing.assert_close(d.correlate(d.decorrelate(x)), x, atol=1e-10, rtol=0)
    im = ColorDecorrelation.imagenet()
    torch.testing.assert_close(im.correlate(im.decorrelate(x)), x, atol=1e-10, rtol=0)
    assert float(im.matrix.norm(dim=0).max()) == pytest.approx(1.0)
    # decorrelated channels of the data are uncorrelated
    zc = d.decorrelate(data).transpose(0, 1).reshape(3, -1)
    c = torch.corrcoef(zc)
    assert (c - torch.eye(3, dtype=torch.float64)).abs().max() < 1e-8


@pytest.mark.parametrize("shape", [(1, 28, 28), (5, 29, 31), (3, 224, 224)])
def test_any_channel_count_and_size_decodes_to_images_in_0_1(shape):
    g = torch.Generator().manual_seed(0)
    for kind in (PixelImage, FourierImage):
        p = kind((2, *shape), generator=g)
        x = p.decode()
        assert x.shape == (2, *shape) and x.min() > 0 and x.max() < 1


# ------------------------------------------------------------------------------------------------------------------
# transforms
def test_jitter_is_an_exact_pixel_shift_and_transforms_keep_the_size():
    g = torch.Generator().manual_seed(1)
    x = torch.rand((1, 1, 12, 12), generator=g)
    y = jitter(2)(x, torch.Generator().manual_seed(5))
    found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
             if torch.equal(y[..., 2:-2, 2:-2], torch.roll(x, (dy, dx), dims=(2, 3))[..., 2:-2, 2:-2])]
    assert len(found) == 1  # a copy of the input shifted by whole pixels: no resampling
    for size in (28, 64, 128, 224):
        x = torch.rand((1, 3, size, size), generator=g)
        out = apply_transforms(default_transforms(size), x, torch.Generator().manual_seed(0))
        assert out.shape == x.shape
    assert [t.name for t in default_transforms(28)] == ["pad", "jitter"]  # no zoom or rotation below 64 px
    x = torch.rand((1, 1, 6, 6), generator=g)
    torch.testing.assert_close(apply_transforms([pad(3)], x, g), x)  # padding alone is undone by the crop


# ------------------------------------------------------------------------------------------------------------------
# objectives: values by hand
def test_objective_values_by_hand_and_composition():
    model = small_cnn()
    g = torch.Generator().manual_seed(2)
    x = torch.rand((3, 3, 20, 20), generator=g)
    acts = {}
    hooks = [getattr(model, n).register_forward_hook(lambda m, i, o, n=n: acts.__setitem__(n, o.detach()))
             for n in ("conv1", "conv2", "fc")]
    model(x)
    for h in hooks:
        h.remove()
    a1, a2, logits = acts["conv1"], acts["conv2"], acts["fc"]
    v = torch.tensor([1.0, -2.0, 0.5, 0.0, 0.0, 3.0, 0.0, 1.0])
    vhat = v / v.norm()
    assert a2.shape == (3, 8, 8, 8)
    expected = (2 * a1[:, 4].mean(dim=(1, 2)) - a2[:, 1, 4, 4] + 0.5 * torch.einsum("nchw,c->n", a2, vhat) / 64
                - logits[:, 2] / 4 + a2.pow(2).mean(dim=(1, 2, 3)))
    objective = (2 * obj.channel("conv1", 4) - obj.neuron("conv2", 1) + obj.direction("conv2", v) * 0.5
                 - obj.class_logit(2) / 4 + obj.layer("conv2"))
    torch.testing.assert_close(fv.evaluate(model, objective, x), expected.double(), atol=1e-5, rtol=0)
    assert str(objective) == ("2 * channel('conv1', 4) - neuron('conv2', 1) + 0.5 * direction('conv2', <vector of 8>)"
                              " - 0.25 * class_logit(2) + layer('conv2')")
    # a direction with one entry per unit of the flattened layer (TCAV's pool="flatten")
    w = torch.randn(8 * 8 * 8, generator=g)
    flat = fv.evaluate(model, obj.direction("conv2", w), x)
    torch.testing.assert_close(flat, (a2.reshape(3, -1) @ (w / w.norm())).double(), atol=1e-5, rtol=0)
    # batch=i: a term for one image only
    per = fv.evaluate(model, obj.channel("conv1", 0, batch=0) + obj.channel("conv1", 1, batch=2), x)
    torch.testing.assert_close(per, torch.stack([a1[0, 0].mean(), torch.tensor(0.0), a1[2, 1].mean()]).double(),
                               atol=1e-6, rtol=0)
    many = fv.evaluate(model, obj.channels("conv1", [5, 0, 3]), x)
    torch.testing.assert_close(many, torch.stack([a1[0, 5].mean(), a1[1, 0].mean(), a1[2, 3].mean()]).double(),
                               atol=1e-6, rtol=0)
    with pytest.raises(fv.FeatureVisualizationError, match=r"one unit per image: pass batch=2 \(the batch has 3\)"):
        fv.evaluate(model, obj.channels("conv1", [5, 0]), x)


class ToChannelsLast(nn.Module):
    def forward(self, x):
        return x.permute(0, 2, 3, 1)


def test_units_follow_the_layers_axis_channels_last_maps_and_1d_convolutions():
    torch.manual_seed(0)
    # a ConvNeXt-style Linear over channels-last (N, H, W, C) maps: its units are the last axis
    model = nn.Sequential(OrderedDict([("conv", nn.Conv2d(3, 4, 3)), ("last", ToChannelsLast()),
                                       ("lin", nn.Linear(4, 5))]))
    x = torch.rand((2, 3, 9, 9))
    out = model(x).detach()  # (2, 7, 7, 5)
    torch.testing.assert_close(fv.evaluate(model, obj.channel("lin", 2), x), out[..., 2].mean(dim=(1, 2)).double(),
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(fv.evaluate(model, obj.neuron("lin", 4, position=(1, 6)), x), out[:, 1, 6, 4].double(),
                               atol=1e-6, rtol=0)
    # a 1-D convolution's (N, C, L) output: units on axis 1, positions along L
    conv1d = nn.Sequential(OrderedDict([("c", nn.Conv1d(3, 4, 3))]))
    s = torch.rand((2, 3, 10))
    o = conv1d(s).detach()  # (2, 4, 8)
    torch.testing.assert_close(fv.evaluate(conv1d, obj.channel("c", 1), s), o[:, 1].mean(dim=1).double(),
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(fv.evaluate(conv1d, obj.neuron("c", 3, position=5), s), o[:, 3, 5].double(),
                               atol=1e-6, rtol=0)
    r = fv.dataset_examples(conv1d, s, "c", k=2)
    torch.testing.assert_close(r.top_values, o.amax(dim=2).T.sort(dim=1, descending=True).values.double())
    assert r.top_positions.shape == (4, 2, 1)


def test_diversity_by_hand():
    # two images with Gram matrices G1, G2: each gets -cos(G1, G2) / 2
    model = nn.Sequential(OrderedDict([("id", nn.Identity())]))
    x = torch.tensor([[[[1.0, 2.0]], [[0.0, 1.0]]], [[[1.0, 0.0]], [[1.0, 1.0]]]])  # (2, C=2, 1, 2)
    grams = [xi.reshape(2, -1) @ xi.reshape(2, -1).T for xi in x]
    cos = float(torch.nn.functional.cosine_similarity(grams[0].reshape(1, -1), grams[1].reshape(1, -1)))
    got = fv.evaluate(model, obj.diversity("id"), x)
    torch.testing.assert_close(got, torch.tensor([-cos / 2, -cos / 2], dtype=torch.float64))


def test_regularisers_by_hand():
    model = nn.Sequential(OrderedDict([("id", nn.Identity())]))
    x = torch.tensor([[[[0.0, 1.0], [1.0, 1.0]]]])  # one 2×2 grey image
    # TV: one interior pixel (0, 0): dx = 1, dy = 1 -> sqrt(2)
    torch.testing.assert_close(fv.evaluate(model, obj.total_variation(), x), torch.tensor([math.sqrt(2)]).double())
    torch.testing.assert_close(fv.evaluate(model, obj.total_variation(beta=2), x), torch.tensor([2.0]).double())
    torch.testing.assert_close(fv.evaluate(model, obj.l1(), x), torch.tensor([0.5]).double())
    torch.testing.assert_close(fv.evaluate(model, obj.l2(), x), torch.tensor([0.25]).double())
    torch.testing.assert_close(fv.evaluate(model, obj.alpha_norm(alpha=6), x), torch.tensor([0.5 ** 6]).double())


def test_a_layer_modified_in_place_downstream_is_read_before_the_change():
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict([("conv", nn.Conv2d(1, 2, 3)), ("relu", nn.ReLU(inplace=True)),
                                       ("flat", nn.Flatten()), ("fc", nn.Linear(2 * 26 * 26, 3))]))
    x = torch.rand((2, 1, 28, 28))
    pre = model.conv(x).detach()
    assert (pre[:, 1] < 0).any()
    logits = model(x).detach()
    got = fv.evaluate(model, obj.channel("conv", 1) + obj.neuron("fc", 0), x)  # the forward pass goes on
    torch.testing.assert_close(got, (pre[:, 1].mean(dim=(1, 2)) + logits[:, 0]).double(), atol=1e-5, rtol=0)
    r = fv.visualize(model, obj.layer("conv") + 1e-3 * obj.class_logit(0), shape=(1, 28, 28), steps=3)
    assert r.steps == 3  # the backward pass through the copy works (no in-place error)


# ------------------------------------------------------------------------------------------------------------------
# the optimisation
def test_negative_objectives_minimise():
    # one linear unit: the centre neuron of the red grating filter; its range over images in [0, 1] is ±Σ|w|/2
    model = grating_model(4, 2)
    w = model.conv.weight[0, 0].detach()
    bound = float(w.abs().sum()) / 2
    kw = dict(shape=(3, S, S), steps=64, transforms=None)
    up = fv.visualize(model, obj.neuron("conv", 0), **kw)
    down = fv.visualize(model, -obj.neuron("conv", 0), **kw)
    value_down = fv.evaluate(model, obj.neuron("conv", 0), down.images)[0]
    assert value_down < -0.8 * bound and up.values[0] > 0.8 * bound
    assert down.values[0] == pytest.approx(-float(value_down), rel=1e-6)
    # the minimising image is the filter's negative: its red patch anti-correlates with the weights
    patch = down.images[0, 0, 10:23, 10:23]  # the centre (10, 10) of the 20×20 map sees pixels 10..22
    assert torch.corrcoef(torch.stack([patch.flatten(), w.flatten()]))[0, 1] < -0.9


def test_same_seed_same_images_and_the_global_rng_is_untouched():
    model = small_cnn()
    state = torch.get_rng_state()
    a = fv.visualize(model, obj.channel("conv2", 0), shape=(3, 64, 64), steps=6, seed=7)  # zoom and rotation on
    assert torch.equal(state, torch.get_rng_state())
    b = fv.visualize(model, obj.channel("conv2", 0), shape=(3, 64, 64), steps=6, seed=7)
    c = fv.visualize(model, obj.channel("conv2", 0), shape=(3, 64, 64), steps=6, seed=8)
    assert torch.equal(a.images, b.images) and torch.equal(a.history, b.history)
    assert not torch.equal(a.images, c.images)
    assert a.transforms[2].startswith("random_scale") and a.decorrelation == "imagenet" and a.param == "fourier"


def test_progress_sees_every_step_and_can_cancel():
    model = small_cnn(channels=1)
    calls = []

    def progress(step, total, images, value):
        calls.append((step, total, tuple(images.shape), images.dtype, value))
        return step < 3

    r = fv.visualize(model, obj.channel("conv1", 0), shape=(1, 28, 28), batch=2, steps=10, progress=progress)
    assert [c[0] for c in calls] == [1, 2, 3] and all(c[1] == 10 for c in calls)
    assert calls[0][2] == (2, 1, 28, 28) and calls[0][3] == torch.float32
    assert r.cancelled and r.steps == 3 and len(r.history) == 3
    assert [c[4] for c in calls] == pytest.approx(r.history.tolist())
    assert r.decorrelation == "none"  # one channel: nothing to decorrelate
    every = []
    fv.visualize(model, obj.channel("conv1", 0), shape=(1, 28, 28), steps=7, progress_every=3,
                 progress=lambda s, t, i, v: every.append(s))
    assert every == [3, 6, 7]


class Counting(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


def test_the_forward_pass_stops_after_the_last_layer_read():
    model = small_cnn()
    model.fc = Counting(model.fc)
    a = fv.visualize(model, obj.channel("conv2", 1), shape=(3, S, S), steps=5, seed=3)
    assert model.fc.calls == 1  # only the first step's full pass (which checks the layers) reaches fc
    b = fv.visualize(model, obj.channel("conv2", 1), shape=(3, S, S), steps=5, seed=3, stop_early=False)
    assert model.fc.calls == 1 + 5 + 1
    torch.testing.assert_close(a.images, b.images)
    fv.visualize(model, obj.channel("conv2", 1) + obj.class_logit(0), shape=(3, S, S), steps=2)
    assert model.fc.calls == 7 + 2 + 1  # logits needed: every pass is complete


def test_nan_objective_stops_and_reports_the_step():
    class Fragile(nn.Module):  # sqrt(0.6 - mean pixel) becomes NaN once the image gets bright
        def forward(self, x):
            return torch.sqrt(0.6 - x.mean(dim=(1, 2, 3), keepdim=True)).expand(-1, 2, 4, 4) + 0 * x[:, :2, :4, :4]

    model = nn.Sequential(OrderedDict([("f", Fragile())]))
    with pytest.raises(fv.FeatureVisualizationError, match=r"at step (\d+) of 200") as err:
        fv.visualize(model, -obj.channel("f", 0), shape=(3, 8, 8), steps=200, lr=0.1, transforms=None)
    assert err.value.step > 1


def hook_state(model: nn.Module) -> dict:
    out = {}
    for name, m in model.named_modules():
        for attr, value in vars(m).items():
            if "hook" in attr and isinstance(value, dict):
                out[(name, attr)] = list(value)
    mod = torch.nn.modules.module
    for attr in dir(mod):
        if attr.startswith("_global") and isinstance(getattr(mod, attr), dict):
            out[("global", attr)] = list(getattr(mod, attr))
    return out


def python_calls(model: nn.Module, x: torch.Tensor) -> int:
    """The number of Python function calls one forward pass makes: every hook left behind would add some."""
    count = 0

    def prof(frame, event, arg):
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    with torch.no_grad():
        sys.setprofile(prof)
        try:
            model(x)
        finally:
            sys.setprofile(None)
    return count


def test_one_hundred_visualisations_leave_the_model_exactly_as_found():
    model = small_cnn(channels=1)
    model.train()
    model.conv1.eval()  # a mix of modes must come back as it was
    model.fc.weight.requires_grad_(False)
    modes = {n: m.training for n, m in model.named_modules()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    hooks = hook_state(model)
    x = torch.rand((4, 1, 28, 28), generator=torch.Generator().manual_seed(0))
    calls = python_calls(model, x)
    objectives = [obj.channel("conv2", 1), obj.layer("conv1") - 0.1 * obj.total_variation(),
                  obj.class_logit(3), obj.neuron("fc", 2), obj.channel("conv2", 99), obj.channel("fc", 0)]
    outcomes = {"ok": 0, "error": 0, "cancelled": 0}
    for i in range(100):
        try:
            r = fv.visualize(model, objectives[i % len(objectives)], shape=(1, 28, 28), steps=2, seed=i,
                             stop_early=i % 2 == 0, progress=(lambda *a: False) if i % 7 == 0 else None)
            outcomes["cancelled" if r.cancelled else "ok"] += 1
        except fv.FeatureVisualizationError:
            outcomes["error"] += 1
    assert outcomes["ok"] > 40 and outcomes["error"] > 20 and outcomes["cancelled"] > 5
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(p, params[n]) for n, p in model.named_parameters())
    assert hook_state(model) == hooks
    assert python_calls(model, x) == calls  # the forward pass does exactly the work it did before


# ------------------------------------------------------------------------------------------------------------------
# bad input
def test_a_channel_objective_on_a_layer_without_positions_suggests_neuron_or_direction():
    with pytest.raises(fv.FeatureVisualizationError, match=r"no spatial.*neuron\('fc', 0\).*direction\('fc', v\)"):
        fv.visualize(small_cnn(), obj.channel("fc", 0), shape=(3, S, S), steps=1)


def test_unit_out_of_range_says_how_many_units_there_are():
    with pytest.raises(fv.FeatureVisualizationError, match=r"unit 8 is out of range.*8 channels \(indices 0\.\.7\)"):
        fv.visualize(small_cnn(), obj.channel("conv2", 8), shape=(3, S, S), steps=1)
    with pytest.raises(fv.FeatureVisualizationError, match=r"class 5 is out of range: the model outputs 5 classes"):
        fv.visualize(small_cnn(), obj.class_logit(5), shape=(3, S, S), steps=1)


def test_an_input_the_model_cannot_take_says_what_it_expected():
    mlp = nn.Sequential(OrderedDict([("flat", nn.Flatten()), ("fc1", nn.Linear(784, 16)), ("relu", nn.ReLU()),
                                     ("fc2", nn.Linear(16, 10))]))
    with pytest.raises(fv.FeatureVisualizationError,
                       match=r"cannot take inputs of shape \(1, 1, 32, 32\).*'fc1' \(Linear\).*expects 784 features.*"
                             r"28×28 with 1 channel\(s\): pass shape=\(1, 28, 28\)"):
        fv.visualize(mlp, obj.neuron("fc2", 3), shape=(1, 32, 32), steps=1)
    with pytest.raises(fv.FeatureVisualizationError, match=r"'conv1' \(Conv2d\).*expects 3 input channels"):
        fv.visualize(small_cnn(), obj.channel("conv2", 0), shape=(1, S, S), steps=1)
    assert fv.visualize(mlp, obj.neuron("fc2", 3), shape=(1, 28, 28), steps=2).values.shape == (1,)


def test_non_image_models_say_which_objectives_apply():
    mlp = nn.Sequential(OrderedDict([("fc1", nn.Linear(6, 8)), ("relu", nn.ReLU()), ("fc2", nn.Linear(8, 3))]))
    with pytest.raises(fv.FeatureVisualizationError, match=r"applies to images.*direction, neuron, layer, class_logit"):
        fv.visualize(mlp, obj.neuron("fc2", 0), shape=(6,), param="fourier")
    r = fv.visualize(mlp, obj.class_logit(1) - 0.1 * obj.l2(center=0), shape=(6,), steps=30)
    assert r.param == "vector" and r.images.shape == (1, 6) and r.values[0] > 0
    embed = nn.Sequential(OrderedDict([("emb", nn.Embedding(20, 4)), ("flat", nn.Flatten()), ("fc", nn.Linear(12, 2))]))
    with pytest.raises(fv.FeatureVisualizationError, match=r"token ids.*inputs_embeds.*direction, neuron"):
        fv.visualize(embed, obj.neuron("fc", 0), shape=(3,), steps=1)
    # the embeddings themselves can be optimised, through forward=
    r = fv.visualize(embed, obj.neuron("fc", 0), shape=(3, 4), steps=5,
                     forward=lambda m, e: m.fc(m.flat(e)))
    assert r.images.shape == (1, 3, 4)


def test_unknown_keywords_and_layers():
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'step' .*did you mean 'steps'.*Valid keyword"):
        fv.visualize(small_cnn(), obj.channel("conv2", 0), shape=(3, S, S), step=3)
    with pytest.raises(fv.FeatureVisualizationError, match=r"no layer named 'conv3'.*Closest names: 'conv2', 'conv1'"):
        fv.visualize(small_cnn(), obj.channel("conv3", 0), shape=(3, S, S))
    with pytest.raises(TypeError,
                       match=r"unexpected keyword argument 'position'\. Valid keyword arguments: layer, unit"):
        obj.channel("conv1", 0, position=(1, 1))
    with pytest.raises(fv.FeatureVisualizationError, match="terms for image 1 of the batch; pass batch=2"):
        fv.visualize(small_cnn(), obj.channel("conv1", 0, batch=1), shape=(3, S, S), batch=1)


def test_a_zero_weight_drops_its_term_and_an_empty_objective_is_refused():
    model = small_cnn()
    o = obj.channel("conv2", 0) + 0 * obj.total_variation()  # a weight slider at 0
    assert str(o) == "channel('conv2', 0)" and o.keys == ["conv2"]
    assert fv.visualize(model, o, shape=(3, S, S), steps=1).steps == 1
    with pytest.raises(fv.FeatureVisualizationError, match="no terms"):
        fv.visualize(model, 0 * obj.channel("conv2", 0), shape=(3, S, S), steps=1)
