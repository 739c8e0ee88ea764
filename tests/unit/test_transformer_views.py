"""The transformer views without a browser: what they send is what the analysis computed, paging, edits,
live steps, static export with hostile token text, and what the attention view sends instead of full tensors."""

from __future__ import annotations

import json
import time
import warnings

import numpy as np
import pytest
import torch

import hiddenwidgets as hw
from hiddenwidgets.analysis import transformers as T
from hiddenwidgets.pipeline.transport import decode

pytest.importorskip("transformers")
from tests.unit.test_transformer_analysis import NanoGPT, gpt2, ids

warnings.filterwarnings("ignore", message=".*token_id must be.*")
pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: a second thread only spin-waits


class CharTokenizer:
    """A tokenizer for tests: one token per lower-case letter (ids 33..58)."""

    def __call__(self, text, return_tensors="pt"):
        return {"input_ids": torch.tensor([[ord(c) - 64 for c in text]])}

    def convert_ids_to_tokens(self, i):
        return [chr(64 + j) for j in i] if isinstance(i, list) else chr(64 + int(i))


def arrays(widget, trait="_state"):
    state = getattr(widget, trait)
    return state["header"], decode(state["header"]["index"], state["data"])


def test_logit_lens_view_sends_the_lens():
    model = gpt2()
    x = ids(1, 9)
    view = hw.LogitLens(model, x, k=3)
    header, a = arrays(view)
    lens = T.logit_lens(T.trace(model, x), k=3)
    np.testing.assert_array_equal(a["entropy"], lens.entropy[:, 0].numpy())
    np.testing.assert_array_equal(a["top_probs"], lens.topk_probs[:, 0].numpy())
    assert header["top"][-1][4][0] == f"#{int(lens.topk_ids[-1, 0, 4, 0])}"
    assert header["tokens"] == [f"#{int(i)}" for i in x[0]] and header["layers"][0] == "embeddings"
    with pytest.raises(hw.transformers.TransformerError, match="statistic"):
        hw.LogitLens(model, x, statistic="entropie")


def test_editing_the_text_recomputes_and_padding_is_not_shown():
    view = hw.LogitLens(gpt2(), "abc", tokenizer=CharTokenizer())
    assert view.editable and arrays(view)[0]["tokens"] == list("abc")
    view.set_state({"text": "hello"})  # what the browser sends after its debounce
    assert arrays(view)[0]["tokens"] == list("hello")
    mask = torch.tensor([[1, 1, 1, 0, 0]])
    padded = hw.LogitLens(gpt2(), {"input_ids": ids(1, 5), "attention_mask": mask})
    assert arrays(padded)[1]["entropy"].shape == (4, 3)
    assert not padded.editable


def test_text_without_a_tokenizer_is_refused_with_what_to_do():
    with pytest.raises(T.TransformerError, match=r"tokenizer.*tokens="):
        hw.LogitLens(gpt2(), "some text")


def test_encoder_is_refused_by_the_lens_view_but_shown_by_the_others():
    from transformers import BertConfig, BertModel

    bert = BertModel(BertConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, intermediate_size=64,
                                vocab_size=61)).eval()
    with pytest.raises(T.TransformerError, match=r"does not apply.*encoder"):
        hw.LogitLens(bert, ids(1, 6))
    assert arrays(hw.TokenFlow(bert, ids(1, 6)))[1]["norm"].shape == (3, 6)
    assert arrays(hw.AttentionView(bert, ids(1, 6)))[1]["entropy"].shape == (2, 4)


def test_live_steps_record_history_and_the_slider_shows_an_older_one():
    model = NanoGPT()
    view = hw.LogitLens(model, ids(1, 8), every=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(6):
        loss = torch.nn.functional.cross_entropy(model(ids(4, 8)).flatten(0, 1), ids(4, 8).flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        view.step()
    assert view.steps == [2, 4, 6]
    latest = arrays(view)[1]["entropy"]
    view.set_state({"shown_step": 2})
    older = arrays(view)[1]["entropy"]
    assert arrays(view)[0]["step"] == 2 and not np.allclose(older, latest)
    view.set_state({"shown_step": -1})
    np.testing.assert_array_equal(arrays(view)[1]["entropy"], latest)
    assert model.training  # the view computed in eval mode and gave the mode back


def test_attention_view_pages_and_sends_thumbnails_not_tensors():
    model = gpt2()
    x = ids(1, 40)
    view = hw.AttentionView(model, x, page_size=16, thumb=8)
    header, a = arrays(view)
    tr = T.trace(model, x, attention=True)
    assert a["thumbs"].shape == (3, 4, 8, 8) and a["thumbs"].dtype == np.uint8
    ent = T.head_entropy(tr.attentions, tr.mask).mean(-1)[:, 0]
    np.testing.assert_allclose(a["entropy"], ent.numpy(), rtol=1e-5)
    assert [sorted(o) == list(range(4)) for o in header["order"]] == [True] * 3
    assert all(np.all(np.diff(a["entropy"][layer][header["order"][layer]]) >= 0) for layer in range(3))
    view.set_state({"head": [2, 1], "page": 1})
    ph, pa = arrays(view, "_pattern")
    assert (ph["layer"], ph["head"], ph["q0"], ph["pages"]) == (2, 1, 16, 3)
    full = tr.attentions[2, 0, 1]
    np.testing.assert_array_equal(pa["pattern"], full[16:32, ph["k0"]:ph["k0"] + pa["pattern"].shape[1]].numpy())
    np.testing.assert_allclose(pa["outside"] + pa["pattern"].sum(-1), 1.0, rtol=1e-5)
    offsets, profile = T.distance_profile(tr.attentions, tr.mask)
    np.testing.assert_allclose(pa["profile"], profile[2, 1].numpy(), rtol=1e-5, atol=1e-7)
    assert ph["offset0"] == int(offsets[0]) == -39
    assert len(view._state["data"]) + len(view._pattern["data"]) < 3 * 4 * 40 * 40 * 4 / 2


def test_token_flow_view_with_decodability():
    x = torch.randint(0, 5, (1, 30), generator=torch.Generator().manual_seed(0))
    view = hw.TokenFlow(gpt2(), x, decodability=True)
    header, a = arrays(view)
    flow = T.token_flow(T.trace(gpt2(), x))
    np.testing.assert_array_equal(a["cos_out"], flow.cos_to_final[:, 0].numpy())
    assert a["decodable"].shape == (4,) and 0 <= header["chance"] <= 1


def test_too_long_a_sequence_is_refused_with_the_limit():
    with pytest.raises(T.TransformerError, match="at most 1024"):
        hw.TokenFlow(gpt2(), torch.zeros(1, 1025, dtype=torch.long))


def test_static_export_keeps_hostile_token_text_as_text(tmp_path):
    tokens = [["<script>alert(1)</script>", "&amp;", "b", "</script>", "e"]]
    pages = []
    for view in (hw.LogitLens(gpt2(), ids(1, 5), tokens=tokens), hw.AttentionView(gpt2(), ids(1, 5), tokens=tokens),
                 hw.TokenFlow(gpt2(), ids(1, 5), tokens=tokens)):
        text = view.save_html(tmp_path / f"{view._view_file}.html").read_text()
        assert "<script>alert" not in text and "</script>\",\"" not in text
        payload = text.split('id="hw-payload">', 1)[1].split("</script>", 1)[0]
        state = json.loads(payload)["state"]
        assert state["_state"]["header"]["tokens"] == tokens[0]
        pages.append(text)
    assert len(pages) == 3


def test_an_edit_while_another_thread_trains_runs_on_a_snapshot():
    """The view's edit arrives on the comm thread while the training thread steps the model: it is computed on a
    copy of the weights taken between two steps, so the training model never leaves train mode."""
    import threading

    model = NanoGPT()
    model.train()
    view = hw.LogitLens(model, "abc", tokenizer=CharTokenizer(), every=10_000)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    modes, stop = [], threading.Event()

    def train():
        for _ in range(400):
            if stop.is_set():
                break
            modes.append(model.training)
            loss = model(ids(2, 8)).logsumexp(-1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            view.step()
            time.sleep(0.005)

    thread = threading.Thread(target=train)
    thread.start()
    try:
        while len(modes) < 5:
            time.sleep(0.01)
        with pytest.warns(UserWarning, match="training on another thread"):
            view.set_state({"text": "bcd"})
    finally:
        stop.set()
        thread.join()
    assert arrays(view)[0]["tokens"] == list("bcd") and all(modes)
