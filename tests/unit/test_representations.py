"""Pooling, extraction, projection and neighbours (hiddenwidgets.analysis.representations)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hiddenwidgets.analysis.matrices import RepresentationError, as_matrix
from hiddenwidgets.analysis.representations import (
    RepresentationRecorder,
    Representations,
    align,
    layer_features,
    nearest,
    pool,
    project,
)


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Dropout(0.5), nn.Flatten(),
                         nn.Linear(4 * 8 * 8, 5))


def test_pool_conv_is_global_average_and_sequence_mean_skips_padding():
    t = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    assert torch.equal(pool(t), t.mean(dim=(2, 3)))
    assert torch.equal(pool(t, "max"), t[:, :, 1, 1])
    seq = torch.tensor([[[1.0], [3.0], [100.0]], [[2.0], [4.0], [6.0]]])  # (2, 3, 1); example 0 has padding last
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert pool(seq, "mean", mask).flatten().tolist() == [2.0, 4.0]
    assert pool(seq, "max", mask).flatten().tolist() == [3.0, 6.0]
    assert pool(seq, "first").flatten().tolist() == [1.0, 2.0]
    assert pool(seq, "tokens", mask).flatten().tolist() == [1.0, 3.0, 2.0, 4.0, 6.0]
    with pytest.raises(RepresentationError, match="sequence layers"):
        pool(t, "first")
    with pytest.raises(RepresentationError, match=r"\(N, T\)"):
        pool(seq, "mean", torch.ones(2, 2))


def test_layer_features_restores_mode_and_hooks_and_ignores_dropout():
    model = small_cnn().train()
    x = torch.randn(10, 1, 8, 8)
    feats = layer_features(model, x, ["1", "4"], batch_size=3)
    assert feats["1"].shape == (10, 4) and feats["4"].shape == (10, 5)
    assert model.training and all(m.training for m in model.modules())
    assert not any(m._forward_hooks for m in model.modules())
    again = layer_features(model, x, ["4"])  # eval mode inside: dropout off, so the same features
    torch.testing.assert_close(again["4"], feats["4"])
    with torch.no_grad():
        torch.testing.assert_close(feats["4"], model.eval()(x))


def test_layer_features_with_a_mapping_uses_the_attention_mask():
    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 3)

        def forward(self, input_ids, attention_mask):
            return (self.emb(input_ids),)  # a tuple, like transformer layers

    m = Seq()
    ids = torch.tensor([[1, 2, 0], [3, 4, 5]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    feats = layer_features(m, {"input_ids": ids, "attention_mask": mask}, ["emb"], batch_size=1)
    expected = torch.stack([m.emb.weight[[1, 2]].mean(0), m.emb.weight[[3, 4, 5]].mean(0)]).detach()
    torch.testing.assert_close(feats["emb"], expected)


def test_pca_matches_the_top_principal_axes_with_a_fixed_sign():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(500, 2, generator=g) * torch.tensor([5.0, 1.0])
    basis, _ = torch.linalg.qr(torch.randn(6, 6, generator=g))
    x = z @ basis[:2] + 0.01 * torch.randn(500, 6, generator=g)
    xy = project(x)
    # coordinates are the data in the basis of the first two principal axes: they recover z up to sign
    for k in range(2):
        corr = np.corrcoef(xy[:, k], z[:, k].numpy())[0, 1]
        assert abs(corr) > 0.999
    assert np.var(xy[:, 0]) > np.var(xy[:, 1])
    flipped = project(-x)  # the sign convention makes the picture independent of the data's sign
    np.testing.assert_allclose(np.abs(flipped), np.abs(xy), atol=1e-4)
    np.testing.assert_allclose(project(x), xy, atol=1e-5)


def reference_pca(x: np.ndarray, dims: int = 2) -> np.ndarray:
    """Coordinates on the top principal axes, from the SVD of the centred data in float64 (up to sign)."""
    c = x.astype(np.float64) - x.astype(np.float64).mean(axis=0)
    _, _, vt = np.linalg.svd(c, full_matrices=False)
    return c @ vt[:dims].T


@pytest.mark.parametrize("offset", [0.5, 1e4])
def test_pca_coordinates_match_float64_whether_or_not_the_layer_has_a_large_offset(offset):
    """Small means take the covariance XᵀX - n·mean·meanᵀ without a centred copy; a large offset (here 10^4 times
    the spread, where that subtraction in float32 would lose every digit) is centred first. Both agree with the
    float64 SVD of the centred data to 1e-4 of the coordinates' scale."""
    g = torch.Generator().manual_seed(3)
    z = torch.randn(3000, 2, generator=g) * torch.tensor([4.0, 2.0])
    basis, _ = torch.linalg.qr(torch.randn(40, 40, generator=g))
    x = (z @ basis[:2] + 0.3 * torch.randn(3000, 40, generator=g) + offset).float()
    x[:, 7] = 0.0  # a dead unit
    got, want = project(x), reference_pca(x.numpy())
    scale = np.abs(want).max()
    for k in range(2):
        sign = np.sign(np.dot(got[:, k], want[:, k]))
        np.testing.assert_allclose(sign * got[:, k], want[:, k], atol=1e-4 * scale)


def test_projection_errors_say_what_to_do():
    with pytest.raises(RepresentationError, match="1 feature"):
        project(torch.randn(10, 1))
    with pytest.raises(RepresentationError, match=r"method \(the projection\) must be one of 'pca', 'umap', 'tsne'"):
        project(torch.randn(10, 3), "isomap")
    x = torch.randn(10, 3)
    x[4, 1] = float("nan")
    with pytest.raises(RepresentationError, match=r"NaN or inf in 1 of 10 examples .*example 4"):
        project(x)
    with pytest.raises(RepresentationError, match="pool conv or sequence"):
        as_matrix(torch.randn(4, 2, 2))


def test_align_undoes_a_rotation_and_reflection():
    g = np.random.default_rng(0)
    ref = g.normal(size=(50, 2)).astype(np.float32)
    theta = 0.7
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]) @ np.diag([1, -1])
    moved = ref @ rot.T.astype(np.float32) + 3
    np.testing.assert_allclose(align(ref, moved), ref, atol=1e-4)


def test_nearest_excludes_itself_and_orders_by_distance():
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
    idx, dist = nearest(x, 0, k=2)
    assert idx.tolist() == [1, 3] and dist.tolist() == pytest.approx([1.0, 2.0])
    idx, _ = nearest(x, 1, k=3, metric="cosine")
    assert idx[0] == 2  # same direction
    with pytest.raises(RepresentationError, match="out of range"):
        nearest(x, 4)


def test_recorder_records_scheduled_epochs_and_notifies():
    model = small_cnn()
    x = torch.randn(12, 1, 8, 8)
    rec = RepresentationRecorder(model, ["1", "4"], x, epochs=[0, 2])
    seen = []
    rec.representations.subscribe(lambda epoch, layers: seen.append((epoch, layers)))
    assert [rec.end_epoch() for _ in range(3)] == [True, False, True]
    assert seen == [(0, ["1", "4"]), (2, ["1", "4"])]
    reps = rec.representations
    assert reps.epochs == [0, 2] and reps.layers == ["1", "4"]
    assert reps.get("4").shape == (12, 5)  # latest epoch by default
    with pytest.raises(RepresentationError, match="epoch 1"):
        reps.get("4", 1)


def test_representations_refuse_layers_of_different_lengths():
    reps = Representations.from_features({"a": torch.randn(5, 3)})
    with pytest.raises(RepresentationError, match="has 4 examples but this set has 5"):
        reps.add({"b": torch.randn(4, 3)})


def test_layer_features_copy_outputs_that_an_in_place_op_changes_later():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(inplace=True), nn.Linear(6, 2))
    x = torch.randn(20, 4)
    feats = layer_features(model, x, ["0"])["0"]
    assert (feats < 0).any()  # the Linear's own output, before the in-place ReLU
    torch.testing.assert_close(feats, model[0](x).detach())


def test_pca_of_wide_layers_is_deterministic_and_leaves_the_global_random_stream_alone():
    g = torch.Generator().manual_seed(0)
    wide = torch.randn(300, 5000, generator=g)
    wide[:, 0] *= 40  # two dominant directions of different variance
    wide[:, 1] *= 25
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    xy = project(wide)
    assert torch.rand(1) == before  # projecting drew nothing from torch's global generator
    np.testing.assert_allclose(project(wide), xy, atol=1e-4)
    for k in range(2):  # 300 examples of 5,000 noisy features: the top axes are found, up to sampling noise
        assert abs(np.corrcoef(xy[:, k], wide[:, k].numpy())[0, 1]) > 0.95
    big = torch.randn(4500, 4200, generator=g)  # more examples and features than the exact methods take
    big[:, 0] *= 12
    big[:, 1] *= 8
    torch.manual_seed(123)
    xy = project(big)
    assert torch.rand(1) == before
    for k in range(2):
        assert abs(np.corrcoef(xy[:, k], big[:, k].numpy())[0, 1]) > 0.99
    few = torch.randn(8, 5000, generator=g)  # fewer examples than components asked of a randomised method
    assert project(few).shape == (8, 2)


def test_a_recorder_keeps_one_row_per_example():
    with pytest.raises(RepresentationError, match="one row per example"):
        RepresentationRecorder(small_cnn(), ["1"], torch.randn(4, 1, 8, 8), pool="tokens")
