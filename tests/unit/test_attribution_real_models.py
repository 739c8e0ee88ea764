"""hw.attribute on real architectures (tiny Hugging Face configs, random weights): layer layouts read right or
refused, models that are not f(x) -> logits, and the habits users bring from pytorch-grad-cam and Captum.

Every map is compared with a value computed here by hand from the paper's formula on activations reshaped by hand
(class token dropped, tokens to a grid, channels-last permuted), never with the package's own output."""

from __future__ import annotations

import warnings
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hiddenwidgets as hw
from hiddenwidgets.methods import METHODS

transformers = pytest.importorskip("transformers")


# -- models --------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    cfg = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=64, num_labels=5)
    return transformers.ViTForImageClassification(cfg).eval()


@pytest.fixture(scope="module")
def swin():
    torch.manual_seed(0)
    cfg = transformers.SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[1, 2],
                                  window_size=4, num_labels=5)
    return transformers.SwinForImageClassification(cfg).eval()


@pytest.fixture(scope="module")
def convnext():
    torch.manual_seed(0)
    cfg = transformers.ConvNextConfig(num_channels=3, num_stages=2, hidden_sizes=[8, 16], depths=[1, 1],
                                      num_labels=5)
    return transformers.ConvNextForImageClassification(cfg).eval()


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    cfg = transformers.ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                                    layer_type="basic", num_labels=5)
    return transformers.ResNetForImageClassification(cfg).eval()


@pytest.fixture(scope="module")
def bert():
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64, num_labels=3, max_position_embeddings=16)
    return transformers.BertForSequenceClassification(cfg).eval()


class LSTMClassifier(nn.Module):
    """ids (N, T) and lengths (N,) -> logits, through packed sequences."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embedding = nn.Embedding(50, 8, padding_idx=0)
        self.lstm = nn.LSTM(8, 8, batch_first=True)
        self.fc = nn.Linear(8, 3)

    def forward(self, ids, lengths):
        packed = nn.utils.rnn.pack_padded_sequence(self.embedding(ids), lengths, batch_first=True,
                                                   enforce_sorted=False)
        return self.fc(self.lstm(packed)[1][0][-1])


def gap_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(1, 4, 3, padding=1), relu1=nn.ReLU(), conv2=nn.Conv2d(4, 6, 3, padding=1), relu2=nn.ReLU(),
        gap=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(), fc=nn.Linear(6, 3))).eval()


IMAGES = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
X = torch.randn(4, 1, 7, 7, generator=torch.Generator().manual_seed(2))
TARGET = torch.tensor([1, 3])


def logits_of(model, *args, **kwargs):
    out = model(*args, **kwargs)
    return out if isinstance(out, torch.Tensor) else out.logits


def acts_and_grads(model, layer, inputs, target, score=None, **kwargs):
    """The layer's output (first tensor) and d(score)/d(output), by hand."""
    store = {}

    def hook(m, a, o):
        store["a"] = o[0] if isinstance(o, tuple) else o

    h = layer.register_forward_hook(hook)
    try:
        logits = logits_of(model, inputs, **kwargs)
    finally:
        h.remove()
    s = logits.gather(1, target.view(-1, 1)).sum() if score is None else score(logits).sum()
    return store["a"].detach(), torch.autograd.grad(s, store["a"])[0]


def grad_cam(a, g):
    """Grad-CAM on (N, K, h, w): ReLU(sum_k mean_ij(g) A^k)."""
    return torch.relu((g.mean((2, 3), keepdim=True) * a).sum(1))


def upsampled(m, size=(32, 32)):
    return F.interpolate(m.unsqueeze(1), size=size, mode="bilinear", align_corners=False).squeeze(1)


def untouched(model):
    assert all(not m._forward_hooks and not m._backward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert all(p.grad is None for p in model.parameters())


# -- transformer layouts -------------------------------------------------------------------------------------------
def test_vit_grad_cam_reads_tokens_as_a_grid_without_the_class_token(vit):
    layer = vit.vit.layers[1].layernorm_before
    a, g = acts_and_grads(vit, layer, IMAGES, TARGET)  # (N, 1 + 16, 32)
    grid = lambda t: t[:, 1:].reshape(2, 4, 4, 32).permute(0, 3, 1, 2)  # noqa: E731
    want = grad_cam(grid(a), grid(g))
    info = hw.attribute(vit, IMAGES, "grad_cam", TARGET, layer=layer, raw=True, return_info=True)
    torch.testing.assert_close(info.attributions, want)
    assert "a class token, then a 4 x 4 grid" in info.layers["vit.layers.1.layernorm_before"]
    assert info.output == "output.logits (ImageClassifierOutput)"
    # resized to the image bilinearly, and pytorch-grad-cam's explicit reshape_transform gives the same
    torch.testing.assert_close(hw.attribute(vit, IMAGES, "grad_cam", TARGET, layer=layer), upsampled(want))
    explicit = hw.attribute(vit, IMAGES, "grad_cam", TARGET, layer=layer, raw=True, reshape_transform=grid)
    torch.testing.assert_close(explicit, want)
    untouched(vit)


def test_map_layers_lists_the_layers_a_map_can_be_drawn_over(vit, bert):
    layers = hw.methods.map_layers(vit, IMAGES[:1])
    assert "a class token, then a 4 x 4 grid" in layers["vit.layers.1.layernorm_before"]
    assert "(N, C, H, W)" in layers["vit.embeddings.patch_embeddings.projection"]
    assert "classifier" not in layers and "vit.layers.1.attention.q_proj" in layers  # (N, 17, 32) tokens
    ids = torch.randint(1, 100, (1, 6), generator=torch.Generator().manual_seed(0))
    text = hw.methods.map_layers(bert, ids)
    assert "one 32-vector per input position" in text["bert.embeddings.word_embeddings"]
    assert "bert.pooler.dense" not in text  # (N, 32): no positions
    untouched(vit)


def test_vit_layer_methods_sum_features_and_report_the_class_token(vit):
    layer = "vit.layers.1"
    a, _ = acts_and_grads(vit, vit.vit.layers[1], IMAGES, TARGET)
    act = hw.attribute(vit, IMAGES, "layer_activation", layer=layer, raw=True)
    torch.testing.assert_close(act, a[:, 1:].sum(-1).reshape(2, 4, 4))
    info = hw.attribute(vit, IMAGES, "layer_integrated_gradients", TARGET, layer=layer, raw=True, return_info=True,
                        return_convergence_delta=True, n_steps=64)
    with torch.no_grad():
        change = (vit(IMAGES).logits - vit(torch.zeros_like(IMAGES)).logits).gather(1, TARGET.view(-1, 1))[:, 0]
    total = info.attributions.flatten(1).sum(1) + info.extra["class_token"]  # completeness, class token included
    torch.testing.assert_close(total, change - info.delta, atol=1e-5, rtol=1e-4)
    with pytest.raises(hw.AttributionError, match=r"LayerGradCam .* averages gradients .* class token.*grad_cam"):
        hw.attribute(vit, IMAGES, "layer_grad_cam", TARGET, layer=layer)


def test_token_layouts_that_fit_no_grid_are_refused_and_reshape_transform_reads_them():
    class TwoPrefix(nn.Module):  # DeiT-like: class and distillation tokens before a 4 x 4 grid
        def __init__(self):
            super().__init__()
            self.patch = nn.Conv2d(3, 8, 8, stride=8)
            self.block = nn.Linear(8, 8)
            self.head = nn.Linear(8, 5)

        def forward(self, x):
            t = self.patch(x).flatten(2).transpose(1, 2)
            t = torch.cat([t.mean(1, keepdim=True), t.amax(1, keepdim=True), t], dim=1)  # (N, 2 + 16, 8)
            return self.head(self.block(t)[:, 0])

    torch.manual_seed(0)
    model = TwoPrefix().eval()
    with pytest.raises(hw.AttributionError, match=r"\(2, 18, 8\).*L = 18.*reshape_transform"):
        hw.attribute(model, IMAGES, "grad_cam", TARGET, layer="block")
    grid = lambda t: t[:, 2:].reshape(t.shape[0], 4, 4, -1).permute(0, 3, 1, 2)  # noqa: E731
    a, g = acts_and_grads(model, model.block, IMAGES, TARGET)
    got = hw.attribute(model, IMAGES, "grad_cam", TARGET, layer="block", raw=True, reshape_transform=grid)
    torch.testing.assert_close(got, grad_cam(grid(a), grid(g)))
    with pytest.raises(hw.AttributionError, match=r"reshape_transform must map .* to \(N, C, h, w\)"):
        hw.attribute(model, IMAGES, "grad_cam", TARGET, layer="block", reshape_transform=lambda t: t[0])


def test_swin_layers_use_the_grid_they_are_called_with(swin):
    block = swin.swin.encoder.layers[0].blocks[0]  # returns (tokens (N, 64, 16), None), called with (8, 8)
    a, g = acts_and_grads(swin, block, IMAGES, TARGET)
    grid = lambda t: t.reshape(2, 8, 8, 16).permute(0, 3, 1, 2)  # noqa: E731
    info = hw.attribute(swin, IMAGES, "grad_cam", TARGET, layer=block, raw=True, return_info=True)
    torch.testing.assert_close(info.attributions, grad_cam(grid(a), grid(g)))
    assert "the (8, 8) grid the layer was called with" in info.layers["swin.encoder.layers.0.blocks.0"]
    stage = hw.attribute(swin, IMAGES, "grad_cam", TARGET, layer="swin.encoder.layers.0", raw=True,
                         return_info=True)  # downsamples: its output is on the (4, 4) grid
    assert stage.attributions.shape == (2, 4, 4) and "half the (8, 8) grid" in stage.layers["swin.encoder.layers.0"]
    # Captum's layer methods need every output to be a tensor: a clear refusal, not Captum's AttributeError
    with pytest.raises(hw.AttributionError, match=r"returns \(Tensor, NoneType\).*CAM method"):
        hw.attribute(swin, IMAGES, "layer_integrated_gradients", TARGET, layer=block)
    untouched(swin)


def test_channels_last_maps_are_permuted(convnext):
    layer = convnext.convnext.encoder.stages[1].layers[0].pwconv2  # Linear on (N, 4, 4, 16)
    a, g = acts_and_grads(convnext, layer, IMAGES, TARGET)
    info = hw.attribute(convnext, IMAGES, "grad_cam", TARGET, layer=layer, raw=True, return_info=True)
    torch.testing.assert_close(info.attributions, grad_cam(a.permute(0, 3, 1, 2), g.permute(0, 3, 1, 2)))
    assert "channels-last" in next(iter(info.layers.values()))

    class ChannelsLastStage(nn.Module):  # a container whose output is (N, H, W, C), as timm's Swin stages
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 48, 4, stride=4)

        def forward(self, x):
            return torch.relu(self.conv(x)).permute(0, 2, 3, 1)

    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(stage=ChannelsLastStage(), pool=nn.Flatten(1, 2), head=nn.Linear(48, 5)))
    wrapped = lambda x: model(x).mean(1)  # noqa: E731
    a, g = acts_and_grads(wrapped, model.stage, IMAGES, TARGET)
    info = hw.attribute(wrapped_module(wrapped, model), IMAGES, "grad_cam", TARGET, layer="m.stage", raw=True,
                        return_info=True)
    torch.testing.assert_close(info.attributions, grad_cam(a.permute(0, 3, 1, 2), g.permute(0, 3, 1, 2)))
    assert "dims 1-2 fit the 32 x 32 input, dims 2-3 do not" in info.layers["m.stage"]


def wrapped_module(fn, inner):
    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = inner

        def forward(self, x):
            return fn(x)

    return Wrapped().eval()


def test_guided_grad_cam_is_captums_on_conv_layers_and_works_on_channels_last_ones():
    from captum.attr import GuidedBackprop, GuidedGradCam

    model = gap_net(3)
    ours = hw.attribute(model, X, "guided_grad_cam", torch.tensor([0, 1, 2, 1]), layer="conv2")
    theirs = GuidedGradCam(model, model.conv2).attribute(X, target=torch.tensor([0, 1, 2, 1]))
    torch.testing.assert_close(ours, theirs)

    class Net(nn.Module):  # a ReLU network with a channels-last layer (where Captum returns an empty tensor)
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = nn.Conv2d(3, 8, 4, stride=4)
            self.mix = nn.Linear(8, 8)
            self.relu = nn.ReLU()
            self.head = nn.Linear(8, 5)

        def forward(self, x):
            return self.head(self.relu(self.mix(self.relu(self.conv(x)).permute(0, 2, 3, 1))).mean((1, 2)))

    net = Net().eval()
    got = hw.attribute(net, IMAGES, "guided_grad_cam", TARGET, layer="mix")
    a, g = acts_and_grads(net, net.mix, IMAGES, TARGET)
    cam = F.interpolate(grad_cam(a.permute(0, 3, 1, 2), g.permute(0, 3, 1, 2)).unsqueeze(1), size=(32, 32))
    torch.testing.assert_close(got, GuidedBackprop(net).attribute(IMAGES, target=TARGET) * cam)


def test_methods_that_would_be_wrong_on_transformers_are_refused(vit):
    with pytest.raises(hw.AttributionError, match=r"DeepLift .* GELUActivation.*integrated_gradients"):
        hw.attribute(vit, IMAGES, "deep_lift", TARGET)
    with pytest.raises(hw.AttributionError, match=r"Guided Backprop .* has none .*saliency"):
        hw.attribute(vit, IMAGES, "guided_backprop", TARGET)
    with pytest.raises(hw.AttributionError, match=r"Guided Grad-CAM .* has none"):
        hw.attribute(vit, IMAGES, "guided_grad_cam", TARGET, layer="vit.layers.1")
    untouched(vit)


def test_a_non_converged_integral_warns_and_captum_warnings_are_not_swallowed(convnext):
    # ConvNeXt's LayerNorm after the stem turns sharply near the zero baseline: 8 steps miss the change
    with pytest.warns(UserWarning, match=r"convergence delta .* do not add up"):
        info = hw.attribute(convnext, IMAGES, "integrated_gradients", TARGET, n_steps=8, return_info=True)
    assert any("convergence delta" in w for w in info.warnings)
    with pytest.warns(UserWarning, match="Internal batch size cannot be less than the number of input examples"):
        hw.attribute(gap_net(), X, "layer_conductance", 0, layer="conv2", internal_batch_size=2)


# -- text and other forward signatures -----------------------------------------------------------------------------
def test_token_ids_get_a_suggestion_and_bert_embedding_ig_is_complete(bert):
    ids = torch.randint(1, 100, (3, 6), generator=torch.Generator().manual_seed(0))
    ids[1, 4:] = 0
    mask = (ids != 0).long()
    with pytest.raises(hw.AttributionError, match=r"layer_integrated_gradients', layer='bert.embeddings."
                                                  r"word_embeddings' \(found as model.get_input_embeddings\(\)\)"):
        hw.attribute(bert, ids, "integrated_gradients", 1)
    bert.train()  # left as found, dropout off during the call
    attr, delta = hw.attribute(bert, ids, "layer_integrated_gradients", 1, layer="bert.embeddings",
                               forward_kwargs={"attention_mask": mask}, return_convergence_delta=True)
    assert attr.shape == (3, 6) and bert.training and all(m.training for m in bert.modules())
    with torch.no_grad():
        bert.eval()
        change = (bert(ids, attention_mask=mask).logits - bert(torch.zeros_like(ids), attention_mask=mask).logits)
        bert.train()
    torch.testing.assert_close(attr.sum(1), change[:, 1] - delta, atol=1e-6, rtol=1e-4)
    assert delta.abs().max() < 1e-3  # Captum's delta, returned: the integral converged
    positional = hw.attribute(bert, ids, "layer_integrated_gradients", 1, layer="bert.embeddings",
                              additional_forward_args=(mask,))
    torch.testing.assert_close(positional, attr)  # BERT's second positional argument is attention_mask
    unmasked = hw.attribute(bert, ids, "layer_integrated_gradients", 1, layer="bert.embeddings")
    assert not torch.allclose(unmasked[1], attr[1])  # the mask reached the model
    bert.eval()
    untouched(bert)


def test_lstm_called_with_lengths():
    model = LSTMClassifier().eval()
    ids = torch.randint(1, 50, (3, 5), generator=torch.Generator().manual_seed(0))
    ids[2, 3:] = 0
    lengths = torch.tensor([5, 4, 3])
    with pytest.raises(hw.AttributionError, match=r"missing 1 required positional argument: 'lengths'.*"
                                                  r"additional_forward_args"):
        hw.attribute(model, ids, "layer_integrated_gradients", 0, layer="embedding")
    attr, delta = hw.attribute(model, ids, "layer_integrated_gradients", 0, layer="embedding",
                               additional_forward_args=(lengths,), return_convergence_delta=True)
    with torch.no_grad():
        change = model(ids, lengths)[:, 0] - model(torch.zeros_like(ids), lengths)[:, 0]
    torch.testing.assert_close(attr.sum(1), change - delta, atol=1e-6, rtol=1e-4)
    a, g = acts_and_grads(lambda x: model(x, lengths), model.embedding, ids, torch.zeros(3, dtype=torch.long))
    want = torch.relu((g.mean(1, keepdim=True) * a).sum(2))  # Grad-CAM with the tokens as positions
    got = hw.attribute(model, ids, "grad_cam", 0, layer="embedding", additional_forward_args=(lengths,))
    torch.testing.assert_close(got, want)
    ablated = hw.attribute(model, ids, "feature_ablation", 0, additional_forward_args=(lengths,))
    gone = ids.clone()
    gone[:, 0] = 0
    with torch.no_grad():
        torch.testing.assert_close(ablated[:, 0], model(ids, lengths)[:, 0] - model(gone, lengths)[:, 0])
    with pytest.raises(hw.AttributionError, match="PackedSequence"):
        hw.attribute(model, ids, "grad_cam", 0, layer="lstm", additional_forward_args=(lengths,))
    untouched(model)


def test_model_outputs_are_read_as_stated(resnet):
    x = IMAGES.clone().requires_grad_(True)
    grad = torch.autograd.grad(resnet(x).logits.gather(1, TARGET.view(-1, 1)).sum(), x)[0]
    info = hw.attribute(resnet, IMAGES, "saliency", TARGET, return_info=True)
    torch.testing.assert_close(info.attributions, grad.abs())
    assert info.output == "output.logits (ImageClassifierOutputWithNoAttention)"
    maps = info.attributions.sum(1)
    got = hw.methods.deletion_insertion(resnet, IMAGES, maps, TARGET, steps=4)  # the metrics read .logits too
    want = hw.methods.deletion_insertion(wrapped_module(lambda x: resnet(x).logits, resnet), IMAGES, maps, TARGET,
                                         steps=4)
    torch.testing.assert_close(got["deletion_curve"], want["deletion_curve"])

    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = gap_net()

        def forward(self, x):
            return self.net(x), x.mean()

    assert hw.attribute(Pair(), X, "saliency", 1, return_info=True).output == "output[0] of a tuple of 2"

    class Named(Pair):
        def forward(self, x):
            return {"scores": self.net(x), "aux": x.mean()}

    with pytest.raises(hw.AttributionError, match=r"dict with fields \['scores', 'aux'\] and no 'logits'"):
        hw.attribute(Named(), X, "saliency", 1)


def test_tuple_inputs_and_keyword_arguments():
    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = gap_net()

        def forward(self, a, b, scale=1.0):
            return self.net(a + 2 * b) * scale

    model = TwoInputs().eval()
    a, b = X.clone().requires_grad_(True), X.flip(-1).requires_grad_(True)
    ga, gb = torch.autograd.grad(model(a, b, scale=3.0)[:, 1].sum(), (a, b))
    a, b = a.detach(), b.detach()
    got = hw.attribute(model, (a, b), "input_x_gradient", 1, forward_kwargs={"scale": 3.0})
    torch.testing.assert_close(got[0], a * ga)
    torch.testing.assert_close(got[1], b * gb)
    occluded = hw.attribute(model, (a, b), "feature_ablation", 1)
    assert isinstance(occluded, tuple) and occluded[1].shape == b.shape


# -- habits of pytorch-grad-cam and Captum -------------------------------------------------------------------------
def test_callable_targets_give_the_softmax_probability_by_hand():
    model = gap_net(1)
    prob = lambda logits: logits.softmax(dim=1)[:, 2]  # noqa: E731
    x = X.clone().requires_grad_(True)
    grad = torch.autograd.grad(prob(model(x)).sum(), x)[0]
    torch.testing.assert_close(hw.attribute(model, X, "saliency", prob), grad.abs())
    torch.testing.assert_close(hw.attribute(model, X, "input_x_gradient", prob), X * grad)
    a, g = acts_and_grads(model, model.relu2, X, None, score=prob)
    torch.testing.assert_close(hw.attribute(model, X, "grad_cam", prob, layer="relu2", raw=True), grad_cam(a, g))
    ablated = hw.attribute(model, X, "feature_ablation", prob)  # a perturbation method: the first 1 x 1 patch
    gone = X.clone()
    gone[:, :, 0, 0] = 0
    with torch.no_grad():
        torch.testing.assert_close(ablated[:, 0, 0, 0], prob(model(X)) - prob(model(gone)))
    per_input = [lambda out: out.softmax(0)[2]] * 4  # pytorch-grad-cam's targets: one callable per input
    torch.testing.assert_close(hw.attribute(model, X, "grad_cam", per_input, layer="relu2", raw=True),
                               grad_cam(a, g))
    with pytest.raises(hw.AttributionError, match=r"one callable mapping the \(B, classes\) logits"):
        hw.attribute(model, X, "saliency", per_input)
    with pytest.raises(hw.AttributionError, match=r"one score per input, shape \(4,\); it returned \(4, 3\)"):
        hw.attribute(model, X, "saliency", lambda logits: logits)


def test_several_layers_are_resized_and_averaged():
    model = gap_net(2)
    one = hw.attribute(model, X, "grad_cam", 1, layer="relu1")
    two = hw.attribute(model, X, "grad_cam", 1, layer="relu2")
    torch.testing.assert_close(hw.attribute(model, X, "grad_cam", 1, layer=["relu1", model.relu2]), (one + two) / 2)
    norm = lambda t: (t - t.amin((1, 2), keepdim=True)) / (t.amax((1, 2), keepdim=True) - t.amin((1, 2), True))  # noqa
    both = hw.attribute(model, X, "grad_cam", 1, layer=["relu1", "relu2"], normalize=True)
    torch.testing.assert_close(both, norm((norm(one) + norm(two)) / 2))
    ig = hw.attribute(model, X, "layer_integrated_gradients", 1, layer=["conv1", "conv2"], raw=True)
    assert ig.shape == (4, 7, 7)  # same grid: raw maps can be averaged

    pooled = nn.Sequential(OrderedDict(conv=nn.Conv2d(1, 4, 3, padding=1), pool=nn.MaxPool2d(2),
                                       gap=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(), fc=nn.Linear(4, 3)))
    with pytest.raises(hw.AttributionError, match=r"different shapes .* raw=True"):
        hw.attribute(pooled, X, "grad_cam", 1, layer=["conv", "pool"], raw=True)
    with pytest.raises(hw.AttributionError, match="takes one layer"):
        hw.attribute(model, X, "guided_grad_cam", 1, layer=["conv1", "conv2"])


def test_normalize_is_opt_in_and_scales_each_example_to_0_1():
    model = gap_net(3)
    raw = hw.attribute(model, X, "integrated_gradients", 1)
    norm = hw.attribute(model, X, "integrated_gradients", 1, normalize=True)
    assert raw.min() < 0  # raw values by default
    flat, want = norm.flatten(1), raw.flatten(1)
    want = (want - want.min(1, keepdim=True).values) / (want.max(1, keepdim=True).values
                                                         - want.min(1, keepdim=True).values)
    torch.testing.assert_close(flat, want)


def test_unknown_keywords_raise_type_error_naming_the_valid_ones():
    import inspect

    from captum.attr import IntegratedGradients

    model = gap_net()
    with pytest.raises(TypeError, match=r"grad_cam got unexpected keyword argument 'rleu' \('rleu': did you mean "
                                        r"'relu'\?\)\. Its options: aug_smooth, eigen_smooth, relu"):
        hw.attribute(model, X, "grad_cam", 1, layer="relu2", rleu=False)
    with pytest.raises(TypeError, match=r"'nsteps': did you mean 'n_steps'"):
        hw.attribute(model, X, "integrated_gradients", 1, nsteps=8)
    captum_names = set(inspect.signature(IntegratedGradients.attribute).parameters) - {
        "self", "inputs", "target", "additional_forward_args"}
    assert METHODS["integrated_gradients"].option_names() == captum_names
    with pytest.raises(TypeError, match="eigen_cam got unexpected keyword argument 'eigen_smooth'"):
        hw.attribute(model, X, "eigen_cam", 1, layer="relu2", eigen_smooth=True)


def test_convergence_delta_is_returned_as_captum_returns_it():
    from captum.attr import IntegratedGradients

    model = gap_net(4)
    attr, delta = hw.attribute(model, X, "integrated_gradients", 2, n_steps=20, return_convergence_delta=True)
    want, want_delta = IntegratedGradients(model).attribute(X, target=2, n_steps=20, return_convergence_delta=True)
    torch.testing.assert_close(attr, want)
    torch.testing.assert_close(delta, want_delta)


def test_eigen_smooth_and_aug_smooth_by_hand():
    model = gap_net(5)
    a, g = acts_and_grads(model, model.relu2, X, torch.full((4,), 1))
    weighted = (g.mean((2, 3), keepdim=True) * a).flatten(2).transpose(1, 2)  # (N, positions, K)
    centred = weighted - weighted.mean(1, keepdim=True)
    proj = (centred @ torch.linalg.svd(centred, full_matrices=False)[2][:, 0, :, None])[..., 0]
    plain = weighted.sum(2)
    sign = torch.sign(((proj - proj.mean(1, keepdim=True)) * (plain - plain.mean(1, keepdim=True))).sum(1))
    want = torch.relu(proj * sign[:, None]).reshape(4, 7, 7)
    torch.testing.assert_close(hw.attribute(model, X, "grad_cam", 1, layer="relu2", raw=True, eigen_smooth=True),
                               want)
    maps = []
    for flip in (False, True):
        for scale in (0.9, 1.0, 1.1):
            x = X * scale
            m = hw.attribute(model, x.flip(-1) if flip else x, "grad_cam", 1, layer="relu2", raw=True)
            maps.append(m.flip(-1) if flip else m)
    torch.testing.assert_close(hw.attribute(model, X, "grad_cam", 1, layer="relu2", raw=True, aug_smooth=True),
                               torch.stack(maps).mean(0))


def test_the_class_count_follows_a_swapped_head():
    model = gap_net()
    with pytest.raises(hw.AttributionError, match="target 7 is out of range: the model outputs 3 classes"):
        hw.attribute(model, X, "saliency", 7)
    model.fc = nn.Linear(6, 10)
    out = hw.attribute(model, X, "saliency", 7)
    x = X.clone().requires_grad_(True)
    torch.testing.assert_close(out, torch.autograd.grad(model(x)[:, 7].sum(), x)[0].abs())
    with pytest.raises(hw.AttributionError, match="target 12 is out of range: the model outputs 10 classes"):
        hw.attribute(model, X, "grad_cam", 12, layer="relu2")


def test_bad_input_is_refused_at_the_boundary_with_the_parameter_named():
    model = gap_net()
    with pytest.raises(hw.AttributionError, match=r"inputs is an empty batch \(shape \(0, 1, 7, 7\)\)"):
        hw.attribute(model, X[:0], "saliency", 1)
    with pytest.raises(hw.AttributionError, match=r"target must be integer class indices; got 1.7"):
        hw.attribute(model, X, "saliency", 1.7)
    with pytest.raises(hw.AttributionError, match=r"target must be integer class indices; got a torch.float32"):
        hw.attribute(model, X, "grad_cam", torch.tensor([1.0, 2.0, 0.0, 1.0]), layer="relu2")
    with pytest.raises(hw.AttributionError, match="got 2 targets for 4 inputs"):
        hw.attribute(model, X, "saliency", [1, 2])
    with pytest.raises(hw.AttributionError, match="forward_kwargs must be a dict"):
        hw.attribute(model, X, "saliency", 1, forward_kwargs=[1])
    with pytest.raises(hw.AttributionError, match="takes no layer"):
        hw.attribute(model, X, "saliency", 1, layer="relu2")
    with pytest.raises(hw.AttributionError, match=r"no positions.*raw=True"):
        hw.attribute(model, X, "layer_integrated_gradients", 1, layer="flatten")
    assert hw.attribute(model, X, "layer_integrated_gradients", 1, layer="flatten", raw=True).shape == (4, 6)


@pytest.mark.parametrize("call", ["several_layers", "aug_smooth", "callable", "lrp_refused", "guided", "vit_lig"])
def test_new_paths_leave_the_model_as_found(call, vit):
    model = gap_net(6).train()
    model.relu1.eval()
    model.conv1.weight.requires_grad_(False)
    before = {name: set(vars(m)) for name, m in model.named_modules()}
    if call == "several_layers":
        hw.attribute(model, X, "layer_cam", 1, layer=["conv1", "relu2"], normalize=True)
    elif call == "aug_smooth":
        hw.attribute(model, X, "grad_cam_plus_plus", 1, layer="relu2", aug_smooth=True, eigen_smooth=True)
    elif call == "callable":
        hw.attribute(model, X, "integrated_gradients", lambda out: out.softmax(1)[:, 0])
    elif call == "lrp_refused":
        with pytest.raises(hw.AttributionError, match="no propagation rule for Flatten"):
            hw.attribute(model, X, "lrp", 1)
    elif call == "guided":
        hw.attribute(model, X, "guided_grad_cam", 1, layer="relu2")
    else:
        vit.train()
        with warnings.catch_warnings():  # 4 steps: the convergence warning is not what this test is about
            warnings.simplefilter("ignore")
            hw.attribute(vit, IMAGES, "layer_integrated_gradients", TARGET, layer="vit.layers.0", n_steps=4)
        assert all(m.training for m in vit.modules())
        vit.eval()
        untouched(vit)
    assert model.training and not model.relu1.training and model.conv2.training
    assert not model.conv1.weight.requires_grad and model.conv2.weight.requires_grad
    assert {name: set(vars(m)) for name, m in model.named_modules()} == before  # no attribute left behind
    untouched(model)
