"""Writes examples/08_course_explainer.ipynb (kept as a script so the notebook's source is reviewable as code)."""

from notebooks import code, md, write_example

cells = [
    md("# A network explained, unit by unit\n\n"
       "**CNN Explainer** (Wang et al., *IEEE VIS 2020*) shows every layer of a small CNN for one input, and on a "
       "click, the arithmetic of one unit: the input patch, the kernel, the products, their sum plus bias, the "
       "ReLU, the max of a pooling window, the softmax at the end. It works for one fixed network in a separate "
       "web app. `hw.NetworkExplainer` does the same for *your* model, in the notebook:\n\n"
       "- the layout comes from one forward pass (hooks on every module): columns in the order the modules ran, "
       "residual blocks boxed with their skip connection;\n"
       "- every number shown is the one the model computed (Python computes the arithmetic from the recorded "
       "tensors and the weights; the browser only displays it);\n"
       "- change the input from the gallery, or **draw a digit** with the mouse: the network's reading follows "
       "as you draw.\n\n"
       "The data are scikit-learn's handwritten digits (8×8 pixels, ink 0–16), which ship with scikit-learn."),
    code("import numpy as np\n"
         "import torch\n"
         "import torch.nn.functional as F\n"
         "from sklearn.datasets import load_digits\n"
         "from torch import nn\n\n"
         "import hiddenwidgets as hw\n\n"
         "# a network this small runs fastest on one core: each of torch's parallel regions would wake a second\n"
         "# thread, which costs more than the layer itself (most of a drawing's time when the cores are busy)\n"
         "torch.set_num_threads(1)\n\n"
         "digits = load_digits()\n"
         "x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0   # (1797, 1, 8, 8), ink in [0, 1]\n"
         "y = torch.tensor(digits.target)\n"
         "train, test = torch.arange(0, 1500), torch.arange(1500, len(x))\n\n"
         "torch.manual_seed(0)\n"
         "model = nn.Sequential(\n"
         "    nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),   # 8 maps of 4x4\n"
         "    nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),                     # 16 maps of 2x2\n"
         "    nn.Flatten(), nn.Linear(64, 10))"),
    md("## Train briefly"),
    code("opt = torch.optim.Adam(model.parameters(), lr=1e-2)\n"
         "order = torch.Generator().manual_seed(0)\n"
         "for _epoch in range(8):\n"
         "    model.train()\n"
         "    for idx in train[torch.randperm(len(train), generator=order)].split(64):\n"
         "        loss = F.cross_entropy(model(x[idx]), y[idx])\n"
         "        opt.zero_grad()\n"
         "        loss.backward()\n"
         "        opt.step()\n"
         "model.eval()\n"
         "with torch.no_grad():\n"
         "    accuracy = (model(x[test]).argmax(1) == y[test]).float().mean().item()\n"
         "print(f\"held-out accuracy {accuracy:.3f}\")"),
    md("## The explainer\n\n"
       "Columns from left to right: the input, then each module's output for it (feature maps as small images, "
       "the flattened vector and the scores as strips), and last the class probabilities. The model outputs "
       "scores (logits), so the explainer adds a softmax column and labels it as added. Click any unit: a "
       "convolution unit shows its receptive field with the kernel sliding there, and per input channel the "
       "patch, the kernel, their products and the sum; then bias, batch norm and ReLU. Click a probability for "
       "the softmax's exponentials and normaliser. Draw in the box to the right of the gallery."),
    code("gallery = x[test[:12]]\n"
         "view = hw.NetworkExplainer(model, gallery, class_names=[str(d) for d in range(10)],\n"
         "                           static_inputs=[0, 1, 2], title=\"Digits CNN, unit by unit\")\n"
         "view"),
    md("The same numbers from Python: the arithmetic of the unit at the centre of the first convolution's "
       "channel 0, recomputed from what the view shows, equals what the model computed."),
    code("trace = view.trace\n"
         "unit = trace.unit(0, (0, 4, 4))\n"
         "recomputed = float((unit[\"patch\"].astype(np.float64) * unit[\"kernel\"]).sum() + unit[\"bias\"])\n"
         "print(f\"conv unit (0, 4, 4): shown numbers give {recomputed:.6f}; \"\n"
         "      f\"the model computed {unit['output']:.6f}\")\n"
         "p = trace.unit(len(trace.steps) - 1, (int(y[test[0]]),))\n"
         "print(f\"p(class {int(y[test[0]])}) = exp / normaliser = {p['value']:.4f} (the model: {p['output']:.4f})\")"),
    md("## A drawn digit\n\n"
       "Drawing in the view sends the ink (the fraction of each of the 8×8 cells covered, as in the data set) to "
       "the kernel, at most one request at a time; the overview follows as you draw. From Python, the same is "
       "`view.show_drawing(ink)`: here a *7* drawn as an array."),
    code("ink = np.zeros((8, 8), np.float32)\n"
         "ink[1, 1:7] = 1.0                                    # the bar\n"
         "for r, c in [(2, 6), (3, 5), (4, 4), (5, 4), (6, 3), (7, 3)]:\n"
         "    ink[r, c] = 1.0                                  # the stroke down\n"
         "drawn = view.show_drawing(ink)\n"
         "print(f\"the network reads the drawing as {view.prediction} \"\n"
         "      f\"(p = {float(drawn.steps[-1].output[view.prediction]):.2f})\")\n"
         "view.show(0);   # back to the gallery's first digit"),
    md("## For the course page\n\n"
       "`save_html` writes one offline page: the overview and every unit's arithmetic for the inputs in "
       "`static_inputs` are embedded (the numbers Python computed from the model), so clicking works without a "
       "kernel; drawing needs the model, and the page says so."),
    code("path = view.save_html(\"explainer.html\")\n"
         "print(f\"wrote {path} ({path.stat().st_size / 1e6:.2f} MB for {len(view._static_inputs)} inputs)\")"),
]

write_example(cells, "08_course_explainer.ipynb")
