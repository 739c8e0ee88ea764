"""Writes examples/03_information_plane.ipynb (kept as a script so the notebook's source is reviewable as code)."""

from notebooks import code, md, write_example

cells = [
    md("# The information plane, live: Shwartz-Ziv & Tishby, and Saxe et al.\n\n"
       "*Opening the Black Box of Deep Neural Networks via Information* trains a 12-10-7-5-4-3-2 tanh network on a "
       "12-bit task and plots each hidden layer T as a point (I(X;T), I(T;Y)) per epoch: the points first rise "
       "(**fitting**), later move left (**compression**); the gradients go from a **drift** phase (mean ≫ std "
       "over mini-batches) to a **diffusion** phase (std ≫ mean). *On the information bottleneck theory of deep "
       "learning* (Saxe et al.) found that a ReLU network, measured with KDE bounds, does not compress.\n\n"
       "Both runs take about 2.5 minutes on one CPU core. We train for 3,000 epochs (the paper: 10,000), enough "
       "for the deepest layers to compress; more epochs show more."),
    code("from collections import OrderedDict\n\n"
         "import torch\n"
         "import torch.nn.functional as F\n"
         "from torch import nn\n\n"
         "import hiddenwidgets as hw\n\n"
         "torch.set_num_threads(1)   # narrow layers train fastest on one thread (and do not stall on a busy CPU)\n"
         "X, y = hw.datasets.twelve_bit_task()        # 4096 patterns x 12 bits; H(Y) = 0.99916 bits\n"
         "torch.manual_seed(0)\n"
         "train_idx = torch.randperm(len(X))[: int(0.85 * len(X))]\n"
         "LAYERS = [f\"l{i}\" for i in range(1, 7)]\n\n"
         "def network(activation):\n"
         "    widths = [12, 10, 7, 5, 4, 3, 2]\n"
         "    blocks = OrderedDict((f\"l{i + 1}\", nn.Sequential(nn.Linear(widths[i], widths[i + 1]), activation()))\n"
         "                         for i in range(6))\n"
         "    blocks[\"out\"] = nn.Linear(2, 2)\n"
         "    return nn.Sequential(blocks)\n\n"
         "def train(model, plane, epochs, lr=4e-4, batch=256):\n"
         "    opt = torch.optim.Adam(model.parameters(), lr=lr)\n"
         "    for _ in range(epochs):\n"
         "        order = train_idx[torch.randperm(len(train_idx))]\n"
         "        for start in range(0, len(order), batch):\n"
         "            idx = order[start:start + batch]\n"
         "            loss = F.cross_entropy(model(X[idx]), y[idx])\n"
         "            opt.zero_grad()\n"
         "            loss.backward()\n"
         "            plane.step()            # gradient statistics of this mini-batch\n"
         "            opt.step()\n"
         "        plane.end_epoch()           # records the layers on all 4096 patterns at log-spaced epochs\n"
         "    return loss.item()"),
    md("## tanh, binning: fitting, then compression\n\n"
       "Each unit is digitised into 30 bins on [-1, 1] (the paper's estimator); every input pattern is distinct, "
       "so I(X;T) = H(T) ≤ 12 bits and I(T;Y) ≤ H(Y) = 0.99916 bits. Hover a point for its layer and epoch; the "
       "estimator menu recomputes every recorded epoch without retraining."),
    code("EPOCHS = 3000\n"
         "torch.manual_seed(1)\n"
         "tanh_net = network(nn.Tanh)\n"
         "tanh_plane = hw.InformationPlane(tanh_net, LAYERS, X, y, n_epochs=EPOCHS, points=80,\n"
         "                                 title=\"tanh network, binning\")\n"
         "tanh_plane"),
    code("final_loss = train(tanh_net, tanh_plane, EPOCHS)\n"
         "est = tanh_plane.estimates()\n"
         "peak = est[\"I_XT\"].max(axis=0)\n"
         "for name, top, last in zip(LAYERS, peak, est[\"I_XT\"][-1], strict=True):\n"
         "    print(f\"{name}: I(X;T) peaked at {top:5.2f} bits, \"\n"
         "          f\"ends at {last:5.2f} (compression {top - last:4.2f})\")\n"
         "print(f\"final loss {final_loss:.3f}; drift -> diffusion at epochs {tanh_plane.phase_transition()}\")"),
    md("## ReLU, KDE upper bound: no compression (Saxe et al.)\n\n"
       "The KDE bound measures the layer with added Gaussian noise (variance 1e-3, Saxe et al.'s) on a fixed "
       "subset of 1,024 patterns, so it saturates at log2 1024 = 10 bits."),
    code("torch.manual_seed(0)\n"
         "relu_net = network(nn.ReLU)\n"
         "for m in relu_net.modules():          # He initialisation and a small positive bias keep this narrow ReLU\n"
         "    if isinstance(m, nn.Linear):      # network from dying in its 2-unit layer\n"
         "        nn.init.kaiming_normal_(m.weight, nonlinearity=\"relu\")\n"
         "        nn.init.constant_(m.bias, 0.1)\n"
         "relu_plane = hw.InformationPlane(relu_net, LAYERS, X, y, n_epochs=1000, points=50, estimator=\"kde_upper\",\n"
         "                                 value_range=\"observed\", title=\"ReLU network, KDE upper bound\")\n"
         "relu_plane"),
    code("final_loss = train(relu_net, relu_plane, 1000)\n"
         "est = relu_plane.estimates()\n"
         "for name, first, last in zip(LAYERS, est[\"I_XT\"][0], est[\"I_XT\"][-1], strict=True):\n"
         "    print(f\"{name}: I(X;T) {first:5.2f} -> {last:5.2f} bits\")\n"
         "print(f\"final loss {final_loss:.3f}\")"),
    md("## The same data, restyled; and pages for a course\n\n"
       "`to_altair()` gives an Altair chart of the current estimates to restyle and save; display it with `chart` "
       "where your front end renders Vega-Lite 6 (Altair's renderers load Vega from a CDN, so this notebook, "
       "meant to run offline, saves the spec instead). `save_html` writes each view as one offline page."),
    code("chart = tanh_plane.to_altair().properties(width=360, height=260)\n"
         "chart.save(\"information_plane_tanh.vl.json\")\n"
         "print(f\"saved a Vega-Lite spec with {len(tanh_plane.records())} points\")"),
    code("pages = [(tanh_plane, \"information_plane_tanh.html\"), (relu_plane, \"information_plane_relu.html\")]\n"
         "for plane, name in pages:\n"
         "    path = plane.save_html(name)\n"
         "    print(f\"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)\")"),
]

write_example(cells, "03_information_plane.ipynb")
