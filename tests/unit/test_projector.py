"""The Projector widget's Python side: cached projections, selection mirror, example pages, neighbours, export."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from hiddenwidgets.analysis.matrices import RepresentationError
from hiddenwidgets.analysis.representations import Representations
from hiddenwidgets.pipeline.transport import decode
from hiddenwidgets.widgets import Projector


def feats(n=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    centres = torch.randn(3, 16, generator=g) * 4
    return {"early": torch.randn(n, 8, generator=g),
            "late": centres[labels] + torch.randn(n, 16, generator=g)}, labels


def points(p: Projector) -> np.ndarray:
    return decode(p._points["header"]["index"], p._points["data"])["xy"]


def test_projection_is_sent_cached_and_switches_layers():
    f, labels = feats()
    p = Projector(f, labels, examples=torch.rand(300, 1, 8, 8))
    try:
        p.wait()
        assert p._points["header"]["key"] == "late|None|pca"
        np.testing.assert_array_equal(points(p), p.coordinates("late"))
        p.layer = "early"
        p.wait()
        assert p._points["header"]["key"] == "early|None|pca" and points(p).shape == (300, 2)
        cached = p._cache[("late", None, "pca")]
        p.layer = "late"
        p.wait()
        assert p._cache[("late", None, "pca")] is cached  # not recomputed
        assert p.color_fields["label"] == {"kind": "category", "names": ["0", "1", "2"]}
    finally:
        p.close()


def test_selection_from_the_view_is_mirrored_sorted_and_bounded():
    f, labels = feats()
    p = Projector(f, labels)
    seen = []
    p.observe(lambda c: seen.append(c["new"].tolist()), "selection")
    try:
        p._on_custom(p, {"type": "select"}, [np.array([7, 3, 3, 999, -1], dtype="<i4").tobytes()])
        assert p.selection.tolist() == [3, 7] and seen[-1] == [3, 7]
        assert decode(p._selection["header"]["index"], p._selection["data"])["indices"].tolist() == [3, 7]
        torch.testing.assert_close(p.selected_features("early"), f["early"][[3, 7]])
        p._on_custom(p, {"type": "select", "count": 3}, [])  # indices lost on the way: keep the old selection
        assert p.selection.tolist() == [3, 7] and "3 points but 0 indices arrived" in p.status
        p._on_custom(p, {"type": "select", "count": 0}, [b""])
        with pytest.raises(RepresentationError, match="nothing is selected"):
            p.selected_features()
        with pytest.raises(RepresentationError, match="out of range: there are 300 points"):
            p.select([0, 300])
    finally:
        p.close()


def test_examples_are_served_in_pages_and_neighbours_on_request():
    f, labels = feats()
    images = torch.rand(300, 3, 64, 64)
    p = Projector(f, labels, examples=images)
    sent = []
    p.send = lambda msg, buffers=None: sent.append((msg, buffers))
    try:
        p._on_custom(p, {"type": "examples", "page": 1}, [])
        msg, bufs = sent[-1]
        page = decode(msg["header"]["index"], bufs[0])["images"]
        assert msg["page"] == 1 and page.shape == (300 - 256, 48, 48, 3) and page.dtype == np.uint8
        p._on_custom(p, {"type": "neighbours", "index": 5}, [])
        msg, _ = sent[-1]
        idx, _ = p.neighbours(5)
        assert msg["indices"] == idx.tolist() and len(idx) == 8 and 5 not in idx
        # the nearest neighbours in the late layer share the point's cluster
        assert (labels[idx] == labels[5]).float().mean() > 0.9
    finally:
        p.close()


def test_texts_and_bad_examples():
    f, labels = feats(n=10)
    p = Projector(f, labels, examples=[f"sentence {i} <b>" for i in range(10)])
    try:
        header, data = p.examples.page(0)
        assert header["texts"][3] == "sentence 3 <b>" and data == b""
    finally:
        p.close()
    with pytest.raises(RepresentationError, match="examples has 9 entries but there are 10 points"):
        Projector(f, labels, examples=[str(i) for i in range(9)])
    with pytest.raises(RepresentationError, match="labels has 11 entries but there are 10 examples"):
        Projector(f, torch.arange(11))


def test_recorded_epochs_follow_training_and_pca_does_not_flip():
    reps = Representations(n=200)
    g = torch.Generator().manual_seed(1)
    base = torch.randn(200, 6, generator=g) * torch.tensor([6.0, 3, 1, 1, 1, 1])
    reps.add({"h": base}, epoch=0)
    p = Projector(reps)
    try:
        p.wait()
        first = points(p).copy()
        reps.add({"h": -base * 1.01}, epoch=1)  # the same geometry, sign flipped: PCA's axes would flip
        p.wait()
        assert p.epochs == [0, 1] and p._points["header"]["key"] == "h|1|pca"
        np.testing.assert_allclose(points(p), first * 1.01, rtol=1e-3, atol=1e-3)
    finally:
        p.close()


def test_static_page_carries_projections_pages_and_neighbours():
    f, labels = feats(n=120)
    p = Projector(f, labels, examples=torch.rand(120, 1, 8, 8))
    try:
        p.wait()
        from hiddenwidgets.pipeline.export import page

        text = page(p)
        payload = json.loads(re.search(r'id="hw-payload">(.*?)</script>', text, re.S).group(1))
        static = payload["state"]["_static"]
        assert set(static["points"]) == {"early|None|pca", "late|None|pca"}
        assert set(static["pages"]) == {"0"}
        assert static["neighbours"]["key"] == "late|None|pca"
        paths = [tuple(b["path"]) for b in payload["buffers"]]
        assert ("_static", "neighbours", "data") in paths and ("_static", "pages", "0", "data") in paths
    finally:
        p.close()


def test_an_epoch_recorded_again_replaces_its_picture_and_later_aligned_ones():
    reps = Representations(n=100)
    g = torch.Generator().manual_seed(2)
    reps.add({"h": torch.randn(100, 4, generator=g)}, epoch=0)
    reps.add({"h": torch.randn(100, 4, generator=g)}, epoch=1)
    p = Projector(reps)
    try:
        p.wait()
        old0, old1 = p.coordinates("h", 0).copy(), p.coordinates("h", 1).copy()
        new = torch.randn(100, 4, generator=g) * 5
        reps.add({"h": new}, epoch=0)  # the training cell ran again
        p.wait()
        assert not np.allclose(p.coordinates("h", 0), old0)
        assert not np.allclose(p.coordinates("h", 1), old1)  # aligned to the new epoch 0
        version = p._points["header"]["version"]
        reps.add({"h": new * 2}, epoch=1)
        p.wait()
        assert p._points["header"]["version"] > version  # the view gets the new picture under the same key
    finally:
        p.close()


def test_labels_with_gaps_images_channel_last_and_dict_outputs():
    f, labels = feats(n=12)
    lab = labels.float()
    lab[3] = float("nan")
    p = Projector(f, lab)
    try:
        codes = decode(p._colors["header"]["index"], p._colors["data"])["label"]
        assert codes[3] == -1 and p.color_fields["label"]["names"] == ["0", "1", "2"]
    finally:
        p.close()
    with pytest.raises(RepresentationError, match="channel-last"):
        Projector(f, labels, examples=torch.rand(12, 8, 8, 3))

    class DictNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Linear(5, 3)

        def forward(self, x):
            return {"logits": self.body(x)}

    q = Projector.from_model(DictNet(), torch.randn(12, 5), ["body"])
    try:
        assert "prediction" in q.color_fields
    finally:
        q.close()


def test_a_recorded_epoch_is_projected_only_when_a_view_or_python_asks():
    reps = Representations(n=50)
    reps.add({"h": torch.randn(50, 3)}, epoch=0)
    p = Projector(reps)
    sent = []
    try:
        p.wait()
        p.send = lambda msg, buffers=None: sent.append(msg)
        reps.add({"h": torch.randn(50, 3)}, epoch=1)
        import time

        time.sleep(0.2)
        assert p.epochs == [0, 1] and ("h", 1, "pca") not in p._cache  # no view asked: nothing computed
        p._on_custom(p, {"type": "points", "layer": "h", "epoch": -1, "method": "pca"}, [])
        p.wait()
        assert p._points["header"]["key"] == "h|1|pca"
        reps.add({"h": torch.randn(50, 3)}, epoch=1)  # recorded again: the views are told
        assert sent[-1] == {"type": "stale", "keys": ["h|1|pca"]}
    finally:
        p.close()
