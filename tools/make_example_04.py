"""Writes examples/04_representations.ipynb (kept as a script so the notebook's source is reviewable as code)."""

from notebooks import code, md, write_example

cells = [
    md("# What do the layers represent? Projections, probes and CKA through training\n\n"
       "A small CNN learns scikit-learn's 8×8 digits while a `RepresentationRecorder` keeps each layer's "
       "representation of all 1,797 images after every epoch (conv layers pooled by their global average per "
       "channel). The **projector** follows training live: pick a layer, scrub through epochs, hover a point to "
       "see its digit, draw a lasso (L) or a box (B) to select points (`projector.selection` in Python, even "
       "while a cell runs), click a point for its nearest neighbours in that layer (its prototypes). Then "
       "**linear probes** per layer and epoch, with Hewitt & Liang's control task, and **CKA** between layers "
       "and between checkpoints."),
    code("from collections import OrderedDict\n\n"
         "import torch\n"
         "import torch.nn.functional as F\n"
         "from sklearn.datasets import load_digits\n"
         "from torch import nn\n\n"
         "import hiddenwidgets as hw\n\n"
         "digits = load_digits()\n"
         "X = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0\n"
         "y = torch.tensor(digits.target)\n"
         "torch.manual_seed(0)\n"
         "perm = torch.randperm(len(X))\n"
         "train = perm[:1400]\n\n"
         "model = nn.Sequential(OrderedDict(\n"
         "    conv1=nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU()),\n"
         "    conv2=nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),\n"
         "    flatten=nn.Flatten(),\n"
         "    hidden=nn.Sequential(nn.Linear(32 * 16, 64), nn.ReLU()),\n"
         "    out=nn.Linear(64, 10)))\n"
         "LAYERS = [\"conv1\", \"conv2\", \"hidden\", \"out\"]"),
    md("## The projector, live\n\n"
       "Epoch 0 is recorded before any training; each later point is after one more epoch. The view shows the "
       "latest epoch while training runs (PCA pictures of consecutive epochs are rotated onto each other, so "
       "clusters do not flip); the slider and ▶ replay them."),
    code("recorder = hw.RepresentationRecorder(model, LAYERS, X)\n"
         "recorder.end_epoch(0)\n"
         "projector = hw.Projector(recorder.representations, y, examples=X, layer=\"hidden\",\n"
         "                         title=\"Digits CNN: one point per image\")\n"
         "projector"),
    code("EPOCHS = 12\n"
         "opt = torch.optim.Adam(model.parameters(), lr=2e-3)\n"
         "for epoch in range(1, EPOCHS + 1):\n"
         "    order = train[torch.randperm(len(train))]\n"
         "    for start in range(0, len(order), 64):\n"
         "        idx = order[start:start + 64]\n"
         "        loss = F.cross_entropy(model(X[idx]), y[idx])\n"
         "        opt.zero_grad()\n"
         "        loss.backward()\n"
         "        opt.step()\n"
         "    recorder.end_epoch(epoch)\n"
         "with torch.no_grad():\n"
         "    accuracy = (model(X[perm[1400:]]).argmax(1) == y[perm[1400:]]).float().mean().item()\n"
         "print(f\"held-out accuracy after {EPOCHS} epochs: {accuracy:.3f}; recorded epochs {projector.epochs}\")"),
    md("Select points in the view (or here, for a headless run) and read them back; each point's nearest "
       "neighbours in the layer's full space are its prototypes."),
    code("if not len(projector.selection):                 # nothing drawn yet: select the 4s, as the legend would\n"
         "    projector.select(torch.nonzero(y == 4).flatten())\n"
         "chosen = projector.selection\n"
         "print(f\"{len(chosen)} selected; labels: {torch.bincount(y[chosen], minlength=10).tolist()}\")\n"
         "idx, dist = projector.neighbours(int(chosen[0]))\n"
         "print(f\"nearest to image {int(chosen[0])} in '{projector.layer}': {idx.tolist()} (labels \"\n"
         "      f\"{y[idx].tolist()})\")"),
    md("## Linear probes per layer, through training\n\n"
       "Two labels: the digit, and whether it has a closed loop (0, 6, 8, 9). Each probe is a logistic "
       "regression on a stratified 75/25 split; the **control task** (Hewitt & Liang) gives every type a random "
       "label. Here a type is the image averaged to 4×4 and binarised at half intensity: 235 types, 96% of "
       "images share theirs with others, so a probe that memorises types scores above chance on the control. "
       "Selectivity = accuracy − control is what memorisation does not explain."),
    code("types = torch.unique((F.avg_pool2d(X, 2) > 0.5).flatten(1), dim=0, return_inverse=True)[1]\n"
         "digit_probes = hw.probe(recorder.representations, y, groups=types)\n"
         "probes = hw.ProbeChart(digit_probes, title=\"Probe: which digit?\")\n"
         "probes"),
    code("loops = torch.isin(y, torch.tensor([0, 6, 8, 9])).long()\n"
         "loop_probes = hw.probe(recorder.representations, loops, groups=types)\n"
         "last = {r.layer: r for r in digit_probes if r.epoch == EPOCHS}\n"
         "first = {r.layer: r for r in digit_probes if r.epoch == 0}\n"
         "for layer in LAYERS:\n"
         "    r, r0 = last[layer], first[layer]\n"
         "    loop = next(p for p in loop_probes if p.layer == layer and p.epoch == EPOCHS)\n"
         "    print(f\"{layer:>7}: digit {r0.accuracy:.2f} -> {r.accuracy:.2f} (control {r.control_accuracy:.2f}, \"\n"
         "          f\"selectivity {r.selectivity:+.2f}); closed loop {loop.accuracy:.2f}\")"),
    md("## CKA: which layers represent alike, and how far did each move?\n\n"
       "Linear CKA (Kornblith et al. 2019) is 1 for representations equal up to rotation and scale. Left: the "
       "layers against each other after training. Right: each layer at epoch 0 (untrained) against the trained "
       "one — the diagonal shows how much a layer changed."),
    code("reps = recorder.representations\n"
         "within = hw.SimilarityMatrix(reps, title=\"Linear CKA between layers (trained)\")\n"
         "across = hw.SimilarityMatrix(reps, reps, epoch_a=0, epoch_b=EPOCHS,\n"
         "                             names=(\"epoch 0\", f\"epoch {EPOCHS}\"))\n"
         "display(within, across)\n"
         "print(\"layer vs itself, untrained -> trained:\",\n"
         "      {layer: round(across.values[i][i], 3) for i, layer in enumerate(across.rows)})"),
    md("## Pages for a course\n\n`save_html` writes each view, with its data, as one offline page: the "
       "projector keeps every layer and epoch, the thumbnails and each point's neighbours."),
    code("for view, name in [(projector, \"projector_digits.html\"), (probes, \"probes_digits.html\"),\n"
         "                   (within, \"cka_layers.html\"), (across, \"cka_checkpoints.html\")]:\n"
         "    path = view.save_html(name)\n"
         "    print(f\"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)\")"),
]

write_example(cells, "04_representations.ipynb")
