"""Writes examples/02_attribution.ipynb (kept as a script so the notebook's source is reviewable as code)."""

from notebooks import code, md, write_example

cells = [
    md("# Which pixels made the prediction? Ten attribution methods side by side\n\n"
       "A small CNN is trained here on scikit-learn's 8×8 digits; `hw.AttributionExplorer` then shows, for 8 "
       "test images, the maps of gradient methods (Saliency, Integrated Gradients, Input × Gradient, Guided "
       "Backprop), the CAM family (Grad-CAM, Grad-CAM++, LayerCAM, Score-CAM) and a perturbation method "
       "(Occlusion), with each cell's deletion and insertion AUC (RISE: lower deletion and higher insertion mean "
       "the map points at what the model uses) and its run time. Tick more methods in the view; the target, "
       "layer and opacity are there too. Slow methods show progress and can be cancelled."),
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
         "train, test = perm[:1400], perm[1400:]\n\n"
         "model = nn.Sequential(OrderedDict(\n"
         "    conv1=nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU()),\n"
         "    conv2=nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU()),\n"
         "    pool=nn.AdaptiveAvgPool2d(2), flatten=nn.Flatten(), fc=nn.Linear(128, 10)))\n"
         "opt = torch.optim.Adam(model.parameters(), lr=3e-3)\n"
         "for _ in range(20):\n"
         "    for idx in train[torch.randperm(len(train))].split(64):\n"
         "        loss = F.cross_entropy(model(X[idx]), y[idx])\n"
         "        opt.zero_grad()\n"
         "        loss.backward()\n"
         "        opt.step()\n"
         "with torch.no_grad():\n"
         "    accuracy = (model(X[test]).argmax(1) == y[test]).float().mean().item()\n"
         "print(f\"test accuracy {accuracy:.3f}\")"),
    code("images, labels = X[test[:8]], y[test[:8]]\n"
         "explorer = hw.AttributionExplorer(\n"
         "    model, images, labels, class_names=[str(d) for d in range(10)], layer=\"conv2\",\n"
         "    selected=[\"saliency\", \"integrated_gradients\", \"input_x_gradient\", \"guided_backprop\",\n"
         "              \"grad_cam\", \"grad_cam_plus_plus\", \"layer_cam\", \"score_cam\", \"occlusion\",\n"
         "              \"eigen_cam\"],\n"
         "    title=\"Digits CNN: 10 methods on 8 test images\")\n"
         "explorer"),
    md("The same numbers in Python: mean deletion and insertion AUC per method (`explorer.to_altair()` charts "
       "them; Altair's renderers need a network connection, so this offline notebook prints them)."),
    code("explorer.wait()\n"
         "rows = explorer.metrics()\n"
         "for method in explorer.selected_methods:\n"
         "    mine = [r for r in rows if r[\"method\"] == method and r[\"error\"] is None]\n"
         "    dele = sum(r[\"deletion\"] for r in mine) / len(mine)\n"
         "    ins = sum(r[\"insertion\"] for r in mine) / len(mine)\n"
         "    print(f\"{method:22s} deletion {dele:.3f}  insertion {ins:.3f}\")"),
    md("## Sanity check (Adebayo et al.)\n\n"
       "A map that stays the same when the model's weights are randomised does not explain the model. "
       "`sanity_check` randomises layers from the top, on a copy of the model, and reports the rank correlation "
       "with the original maps."),
    code("from hiddenwidgets.methods import sanity_check\n\n"
         "for method, layer in [(\"saliency\", None), (\"grad_cam\", \"conv2\")]:\n"
         "    def explain(m, method=method, layer=layer):\n"
         "        return hw.attribute(m, images, method, labels, layer=layer)\n"
         "    rows = sanity_check(model, images, explain)\n"
         "    print(method, [(r[\"layer\"], round(r[\"spearman\"], 2)) for r in rows])"),
    code("path = explorer.save_html(\"attribution.html\")\n"
         "print(f\"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)\")"),
]

write_example(cells, "02_attribution.ipynb")
