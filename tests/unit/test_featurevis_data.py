"""Feature visualisation against data (hiddenwidgets.analysis.featurevis): data set examples, network dissection,
multifaceted visualisation, inversion, and the procedural shapes data set."""

from __future__ import annotations

import math
from collections import OrderedDict
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from hiddenwidgets.analysis import featurevis as fv
from hiddenwidgets.datasets import SHAPE_CONCEPTS, shapes
from hiddenwidgets.pipeline.concepts import ConceptStore

pytestmark = pytest.mark.usefixtures("one_thread")


def conv_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(3, 6, 3)), ("relu1", nn.ReLU()),
        ("conv2", nn.Conv2d(6, 8, 3, stride=2)), ("relu2", nn.ReLU()),
        ("pool", nn.AdaptiveAvgPool2d(1)), ("flat", nn.Flatten()), ("fc", nn.Linear(8, 4)),
    ]))


def layer_output(model: nn.Module, layer: str, x: torch.Tensor) -> torch.Tensor:
    out = {}
    h = dict(model.named_modules())[layer].register_forward_hook(lambda m, i, o: out.__setitem__("a", o.detach()))
    try:
        with torch.no_grad():
            model(x)
    finally:
        h.remove()
    return out["a"]


# ------------------------------------------------------------------------------------------------------------------
# data set examples
@pytest.mark.parametrize("pool", ["max", "mean"])
def test_streaming_top_k_equals_topk_over_the_whole_activation_tensor(pool):
    model = conv_net()
    g = torch.Generator().manual_seed(0)
    x = torch.rand((101, 3, 20, 20), generator=g)
    loader = DataLoader(TensorDataset(x, torch.zeros(101)), batch_size=13)  # 13 does not divide 101
    k = 7
    r = fv.dataset_examples(model, loader, "conv2", k=k, pool=pool)
    a = layer_output(model, "conv2", x)  # (101, 8, 8, 8)
    flat = a.reshape(101, 8, -1)
    hi, hi_at = flat.max(dim=2)
    lo, lo_at = flat.min(dim=2)
    if pool == "mean":
        hi = lo = flat.mean(dim=2)
    top = hi.topk(k, dim=0)
    bottom = lo.topk(k, dim=0, largest=False)
    assert r.units == list(range(8)) and r.n_examples == 101 and not r.cancelled
    torch.testing.assert_close(r.top_values, top.values.T.double(), atol=0, rtol=0)
    torch.testing.assert_close(r.top_indices, top.indices.T, atol=0, rtol=0)
    torch.testing.assert_close(r.bottom_values, bottom.values.T.double(), atol=0, rtol=0)
    torch.testing.assert_close(r.bottom_indices, bottom.indices.T, atol=0, rtol=0)
    at = hi_at.gather(0, top.indices)  # (k, 8): flat position of each top example's maximum
    torch.testing.assert_close(r.top_positions, torch.stack([at // 8, at % 8], dim=2).transpose(0, 1))
    at = lo_at.gather(0, bottom.indices)
    torch.testing.assert_close(r.bottom_positions, torch.stack([at // 8, at % 8], dim=2).transpose(0, 1))
    # the kept examples are the loader's, and no more than units × 2k of them are kept
    torch.testing.assert_close(r.images(3), x[top.indices[:, 3]])
    torch.testing.assert_close(r.images(5, "bottom"), x[bottom.indices[:, 5]])
    assert len(r.kept) <= 8 * 2 * k


def test_a_subset_of_units_more_k_than_examples_and_cancelling():
    model = conv_net()
    x = torch.rand((30, 3, 20, 20), generator=torch.Generator().manual_seed(1))
    a = layer_output(model, "relu1", x).amax(dim=(2, 3))  # (30, 6)
    r = fv.dataset_examples(model, x, "relu1", units=[5, 2], k=50, keep_images=False)
    assert r.k == 30
    torch.testing.assert_close(r.top_values, a[:, [5, 2]].T.sort(dim=1, descending=True).values.double())
    seen = []
    r = fv.dataset_examples(model, DataLoader(x, batch_size=8), "conv2", k=3,
                            progress=lambda done, total: seen.append((done, total)) or done < 16)
    assert r.cancelled and r.n_examples == 16 and seen == [(8, 30), (16, 30)]
    b = layer_output(model, "conv2", x[:16]).amax(dim=(2, 3))
    torch.testing.assert_close(r.top_indices, b.topk(3, dim=0).indices.T)
    with pytest.raises(fv.FeatureVisualizationError, match=r"unit 6 is out of range: layer 'relu1' has 6 units"):
        fv.dataset_examples(model, x, "relu1", units=[6])


def test_receptive_field_and_crops_of_two_3x3_convs():
    # conv 3×3 then conv 3×3 with stride 2: map position (y, x) sees input rows 2y..2y+4 and columns 2x..2x+4
    model = conv_net()
    rf = fv.receptive_field(model, "conv2", (3, 20, 20))
    assert rf.map_size == (8, 8) and rf.center == (4, 4)
    assert rf.box == (8, 8, 13, 13) and rf.size == (5, 5) and rf.stride == (2.0, 2.0)
    assert rf.box_at(0, 7) == (0, 14, 5, 19)
    x = torch.rand((40, 3, 20, 20), generator=torch.Generator().manual_seed(2))
    r = fv.dataset_examples(model, x, "conv2", k=4)
    crops = r.crops(1)
    assert crops.shape == (4, 3, 5, 5)
    for i in range(4):
        y, xx = r.top_positions[1, i].tolist()
        assert r.top_boxes[1, i].tolist() == [2 * y, 2 * xx, 2 * y + 5, 2 * xx + 5]
        torch.testing.assert_close(crops[i], x[r.top_indices[1, i], :, 2 * y:2 * y + 5, 2 * xx:2 * xx + 5])


def test_vector_layers_have_no_positions_or_crops():
    model = conv_net()
    x = torch.rand((20, 3, 20, 20), generator=torch.Generator().manual_seed(3))
    r = fv.dataset_examples(model, x, "fc", k=2)
    assert r.top_positions.shape == (4, 2, 0) and r.top_boxes is None
    torch.testing.assert_close(r.top_values, layer_output(model, "fc", x).topk(2, dim=0).values.T.double())
    with pytest.raises(fv.FeatureVisualizationError, match="no spatial positions"):
        r.crops(0)


# ------------------------------------------------------------------------------------------------------------------
# the procedural data set
def test_shapes_are_deterministic_and_their_masks_and_labels_agree():
    d = shapes(40, 32, seed=5)
    e = shapes(40, 32, seed=5)
    assert torch.equal(d.images, e.images) and torch.equal(d.objects, e.objects)
    assert not torch.equal(d.images, shapes(40, 32, seed=6).images)
    assert d.images.shape == (40, 3, 32, 32) and d.images.dtype == torch.float32
    assert d.images.min() >= 0 and d.images.max() <= 1
    m = d.masks()
    assert m.shape == (40, len(SHAPE_CONCEPTS), 32, 32) and d.concepts == list(SHAPE_CONCEPTS)
    assert torch.equal(d.labels, m.any(dim=(2, 3)))
    k = {name: i for i, name in enumerate(d.concepts)}
    obj = ~m[:, k["background"]]
    for family in (["red", "green", "blue", "yellow"], ["circle", "square", "triangle"],
                   ["solid", "stripes", "dots", "checker"]):
        count = m[:, [k[c] for c in family]].sum(dim=1)
        assert torch.equal(count, obj.long())  # every object pixel has exactly one colour, shape and texture
    # a red pixel is red: R clearly above G and B, on the object's lit and dark parts alike
    red = m[:, k["red"]]
    px = d.images.permute(0, 2, 3, 1)[red]
    assert (px[:, 0] > 2 * px[:, 1:].max(dim=1).values).all()
    assert torch.equal(torch.cat([b[1] for b in d.batches(16)]), m)


# ------------------------------------------------------------------------------------------------------------------
# dissection
def colour_units() -> nn.Module:
    """1×1 conv units wired to colours: unit 0 = R - (G + B) / 2 (red), 1 green, 2 blue, 3 = brightness."""
    conv = nn.Conv2d(3, 4, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1, -0.5, -0.5], [-0.5, 1, -0.5], [-0.5, -0.5, 1],
                                        [1 / 3, 1 / 3, 1 / 3]]).reshape(4, 3, 1, 1))
        conv.bias.zero_()
    return nn.Sequential(OrderedDict([("conv", conv), ("pool", nn.AdaptiveAvgPool2d(1))]))


def test_a_unit_wired_to_red_is_labelled_red():
    d = shapes(200, 32, seed=0)
    r = fv.dissect(colour_units(), d, "conv")
    for unit, colour in ((0, "red"), (1, "green"), (2, "blue")):
        concept, iou = r.label(unit)
        assert concept == colour
        others = torch.cat([r.iou[unit, :r.concepts.index(colour)], r.iou[unit, r.concepts.index(colour) + 1:]])
        assert iou > 1.5 * float(others.max()) and iou > 0.04  # 0.04: the paper's detector threshold
    assert r.best()[0]["concept"] in ("red", "green", "blue") and r.n_examples == 200


def dense_dissection(model, layer, images, masks, quantile, image_labels):
    """The whole computation at once on tensors, as the paper defines it."""
    a = layer_output(model, layer, images)  # (N, U, h, w)
    u = a.shape[1]
    m = math.ceil((1 - Fraction(str(quantile))) * a[:, 0].numel())  # exactly: 0.02 × 6050 = 121
    thresholds = a.transpose(0, 1).reshape(u, -1).sort(dim=1, descending=True).values[:, m - 1]
    up = F.interpolate(a, size=masks.shape[2:], mode="bilinear", align_corners=False)
    mu = (up >= thresholds[None, :, None, None]).double()
    full = image_labels.double()[:, :, None, None].expand(-1, -1, *masks.shape[2:])
    lab = torch.cat([masks.double(), full], dim=1)
    inter = torch.einsum("nuhw,nkhw->uk", mu, lab)
    union = mu.sum(dim=(0, 2, 3))[:, None] + lab.sum(dim=(0, 2, 3))[None, :] - inter
    return thresholds, inter / union


def test_streaming_dissection_equals_the_dense_computation(tmp_path):
    torch.manual_seed(4)
    model = nn.Sequential(OrderedDict([("conv", nn.Conv2d(3, 5, 3, stride=2)), ("relu", nn.ReLU())]))
    d = shapes(50, 24, seed=2)
    red = torch.nonzero(d.labels[:, d.concepts.index("red")]).flatten().tolist()
    store = ConceptStore(tmp_path / "concepts.json", examples=50)
    store.create("has red", red)
    store.create("first half", list(range(25)))
    r = fv.dissect(model, (d.images, d.masks()), "relu", concepts=d.concepts, image_concepts=store, quantile=0.98,
                   batch_size=7)
    labels = torch.zeros((50, 2), dtype=torch.bool)
    labels[red, 0] = True
    labels[:25, 1] = True
    thresholds, iou = dense_dissection(model, "relu", d.images, d.masks(), 0.98, labels)
    assert r.concepts == [*d.concepts, "has red", "first half"]
    torch.testing.assert_close(r.thresholds, thresholds.double(), atol=0, rtol=0)
    torch.testing.assert_close(r.iou, iou, atol=1e-12, rtol=0)
    # the same from a loader of (images, masks) batches, and from a mapping of image-level concepts
    loader = DataLoader(TensorDataset(d.images, d.masks()), batch_size=16)
    r2 = fv.dissect(model, loader, "relu", concepts=d.concepts, image_concepts={"has red": red,
                                                                                 "first half": range(25)},
                    quantile=0.98)
    torch.testing.assert_close(r2.iou, r.iou, atol=1e-12, rtol=0)


def test_dissection_bad_input_and_cancel():
    d = shapes(20, 16, seed=0)
    model = colour_units()
    with pytest.raises(fv.FeatureVisualizationError, match=r"'fc' gives \(20, 4\); dissection needs a conv layer"):
        fv.dissect(conv_net(), d, "fc")
    with pytest.raises(fv.FeatureVisualizationError, match="iterator, which can be read only once"):
        fv.dissect(model, iter(d.batches(4)), "conv", concepts=d.concepts)
    with pytest.raises(fv.FeatureVisualizationError, match=r"lists example 20, but the data has 20 examples"):
        fv.dissect(model, d.images, "conv", image_concepts={"x": [20]})
    with pytest.raises(fv.Cancelled):
        fv.dissect(model, d, "conv", batch_size=8, progress=lambda done, total: done < 16)


# ------------------------------------------------------------------------------------------------------------------
# facets
def red_or_blue_unit() -> nn.Module:
    """conv1 (1×1): a red and a blue detector; conv2 (1×1): unit 0 = their sum (it fires for red or for blue)."""
    c1 = nn.Conv2d(3, 2, 1)
    c2 = nn.Conv2d(2, 1, 1)
    with torch.no_grad():
        c1.weight.copy_(torch.tensor([[1, -0.5, -0.5], [-0.5, -0.5, 1]]).reshape(2, 3, 1, 1))
        c1.bias.zero_()
        c2.weight.fill_(1.0)
        c2.bias.zero_()
    return nn.Sequential(OrderedDict([("conv1", c1), ("relu1", nn.ReLU()), ("conv2", c2)]))


def test_facets_separate_the_two_things_a_unit_responds_to():
    d = shapes(400, 32, seed=3)
    k = {c: i for i, c in enumerate(d.concepts)}
    only_red = d.labels[:, k["red"]] & ~d.labels[:, k["blue"]]
    only_blue = d.labels[:, k["blue"]] & ~d.labels[:, k["red"]]
    red_idx = torch.nonzero(only_red).flatten()[:20]
    blue_idx = torch.nonzero(only_blue).flatten()[:20]
    examples = torch.cat([d.images[red_idx], d.images[blue_idx]])
    model = red_or_blue_unit()
    r = fv.facets(model, "conv2", 0, examples, n_facets=2, feature_layer="relu1", steps=32, seed=0)
    truth = torch.cat([torch.zeros(20), torch.ones(20)]).long()
    assert torch.equal(r.labels, truth) or torch.equal(r.labels, 1 - truth)
    red_facet = int(r.labels[0])
    assert r.means[red_facet, 0].mean() > r.means[red_facet, 2].mean()  # the red cluster's mean image is red
    assert r.means[1 - red_facet, 2].mean() > r.means[1 - red_facet, 0].mean()
    start = fv.evaluate(model, fv.objectives.channel("conv2", 0), r.means)
    assert (r.values > start).all()  # optimisation from each mean image raised the unit
    members = r.member_images(examples, red_facet)
    assert members.shape == (20, 3, 32, 32)
    acts = r.activations[r.members[red_facet]]
    assert torch.equal(acts, acts.sort(descending=True).values)  # members sorted by activation
    assert "center_bias('conv2', 0" in r.objective


# ------------------------------------------------------------------------------------------------------------------
# inversion
def test_inverting_the_input_layer_reproduces_the_input():
    model = conv_net()
    x0 = shapes(1, 20, seed=4).images[0]
    r = fv.invert(model, x0, fv.INPUT, steps=200, tv_weight=0, alpha_weight=0)
    assert r.pixel_error[0] < 0.01 and r.code_error[0] < 0.01
    r = fv.invert(model, x0, [fv.INPUT, "relu1", "pool"], steps=200, normalize=((0.5,) * 3, (0.25,) * 3))
    assert r.layers == [fv.INPUT, "relu1", "pool"] and r.images.shape == (3, 3, 20, 20)
    assert r.pixel_error[0] < 0.05  # with the default priors, which pull a little
    # one 8-number code after global pooling keeps far less of the image than 6 feature maps do
    assert r.pixel_error[2] > r.pixel_error[1] + 0.05
    assert r.code_error[1] < 0.15 and r.code_error[2] < 0.1  # both codes are matched closely
