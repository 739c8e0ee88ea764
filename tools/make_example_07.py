"""Writes examples/07_feature_visualization.ipynb (kept as a script so the notebook's source is reviewable as code)."""

from notebooks import code, md, write_example

cells = [
    md("# Feature visualisation: a unit atlas\n\n"
       "What does a unit respond to? A small CNN learns to tell circles, squares and triangles apart in "
       "`hw.datasets.shapes`, procedural colour images that ship with the package (each pixel is labelled with its "
       "object's colour, shape and texture, so units can be *dissected*). The **UnitAtlas** then shows each unit "
       "of two layers the way OpenAI Microscope does, computed live in the notebook:\n\n"
       "- the image **optimised** to excite the unit (Olah et al. 2017, *Feature Visualization*), updating live "
       "while it is optimised, with the objective's value, progress and a Cancel button;\n"
       "- its **top data set examples**, cropped to the unit's receptive field;\n"
       "- its **dissection label**: the concept whose masks overlap the unit's strongest activations most "
       "(Bau et al. 2017, *Network Dissection*; IoU above 0.04 makes a unit a detector in the paper);\n"
       "- on click, its **facets** (Nguyen et al. 2016: the top examples clustered, each cluster's mean image "
       "optimised), its bottom examples, the histogram of its activation over the data, and the image that "
       "*lowers* it most.\n\n"
       "An inversion panel reconstructs one example from each layer's code (Mahendran & Vedaldi 2015). "
       "Everything is computed on a background thread on a private copy of the weights, so the kernel stays free "
       "and a training loop running meanwhile is not disturbed."),
    code("from collections import OrderedDict\n\n"
         "import torch\n"
         "import torch.nn.functional as F\n"
         "from torch import nn\n\n"
         "import hiddenwidgets as hw\n"
         "from hiddenwidgets.analysis import featurevis as fv\n\n"
         "data = hw.datasets.shapes(1200, 32, seed=0, max_objects=1)   # one object per image, with concept masks\n"
         "colour, shape = data.attributes[:, 0, 0], data.attributes[:, 0, 1]\n"
         "COLOURS = [\"red\", \"green\", \"blue\", \"yellow\"]\n"
         "SHAPES = [\"circle\", \"square\", \"triangle\"]\n\n"
         "def block(c_in, c_out):\n"
         "    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU())\n\n"
         "torch.manual_seed(0)\n"
         "model = nn.Sequential(OrderedDict(\n"
         "    conv1=block(3, 12), pool1=nn.MaxPool2d(2), conv2=block(12, 16), pool2=nn.MaxPool2d(2),\n"
         "    conv3=block(16, 16), pool3=nn.AdaptiveMaxPool2d(1), flatten=nn.Flatten(), out=nn.Linear(16, 3)))"),
    md("## Train\n\nThe task is the shape; colour is irrelevant to it, but the first layer still sees colours."),
    code("train, test = torch.arange(1000), torch.arange(1000, 1200)\n"
         "opt = torch.optim.Adam(model.parameters(), lr=2e-3)\n"
         "order = torch.Generator().manual_seed(0)\n"
         "for _epoch in range(6):\n"
         "    model.train()\n"
         "    for idx in train[torch.randperm(len(train), generator=order)].split(50):\n"
         "        loss = F.cross_entropy(model(data.images[idx]), shape[idx])\n"
         "        opt.zero_grad()\n"
         "        loss.backward()\n"
         "        opt.step()\n"
         "model.eval()\n"
         "with torch.no_grad():\n"
         "    accuracy = (model(data.images[test]).argmax(1) == shape[test]).float().mean().item()\n"
         "print(f\"held-out shape accuracy {accuracy:.3f}\")"),
    md("## The atlas\n\n"
       "Pick the layer and the objective (*channel*: the unit's mean over positions; *neuron*: the unit at the "
       "centre) at the top; the page's units are optimised together, and the next page is computed when you go "
       "there. Each tile: the unit's optimised image and its objective value, its top 4 examples cropped to "
       "the receptive field, and its dissection label with the IoU (grey below the paper's 0.04). Click a tile "
       "for the unit's detail. Results are cached per layer, objective, unit, seed and weights; *use current "
       "weights* copies the model's weights again (e.g. after more training)."),
    code("atlas = hw.UnitAtlas(model, data, [\"conv1\", \"conv3\"], labels=shape, class_names=SHAPES, steps=64,\n"
         "                  facets=2, title=\"Shapes CNN: units of conv1 and conv3\")\n"
         "atlas"),
    md("The view computes what it shows; from Python, `atlas.wait()` waits for it (the view keeps updating "
       "meanwhile) and `atlas.results()` lists what was computed. The optimised images of `conv1` are colours and "
       "edges; dissection labels most of its units with a colour, and the unit whose optimised image is the "
       "reddest is the one dissection calls *red*: two independent methods agree."),
    code("atlas.wait()\n"
         "for r in atlas.results(\"conv1\"):\n"
         "    print(f\"conv1 unit {r['unit']:>2}: objective {r['value']:.2f}, dissection: {r['concept']} \"\n"
         "          f\"(IoU {r['iou']:.3f})\")\n"
         "images = atlas.images(\"conv1\")\n"
         "redness = {u: float((im[0] - (im[1] + im[2]) / 2).mean()) for u, im in images.items()}\n"
         "reddest = max(redness, key=redness.get)\n"
         "label = {r[\"unit\"]: (r[\"concept\"], r[\"iou\"]) for r in atlas.results(\"conv1\")}[reddest]\n"
         "print(f\"the reddest optimised image is conv1 unit {reddest}; dissection labels it {label[0]} \"\n"
         "      f\"(IoU {label[1]:.3f})\")"),
    md("`conv3` is three layers deep: its units see most of the image, and dissection labels some of them with "
       "shapes."),
    code("atlas.show(\"conv3\")\n"
         "for r in atlas.results(\"conv3\"):\n"
         "    print(f\"conv3 unit {r['unit']:>2}: objective {r['value']:.2f}, dissection: {r['concept']} \"\n"
         "          f\"(IoU {r['iou']:.3f})\")"),
    md("## A polysemantic unit and its facets\n\n"
       "A unit whose top examples are of two kinds responds to more than one thing. Its **facets** separate "
       "them: its top 32 examples are clustered by the layer's activations, and the unit is optimised from each "
       "cluster's mean image. We take the `conv3` unit whose top 32 examples hold the most examples of their "
       "*second* most frequent shape, and open its detail, as a click on its tile does: one facet gathers one "
       "shape, the other the other."),
    code("top = fv.dataset_examples(model, data.images, \"conv3\", k=32, pool=\"mean\")   # ranked as the atlas ranks\n"
         "counts = {u: torch.bincount(shape[top.top_indices[u]], minlength=3) for u in top.units}\n"
         "mixed = max(top.units, key=lambda u: int(counts[u].sort().values[-2]))\n"
         "print(f\"conv3 unit {mixed}: its top 32 examples are\",\n"
         "      \", \".join(f\"{int(n)} {SHAPES[s]}s\" for s, n in enumerate(counts[mixed])))\n"
         "detail = atlas.detail(mixed, layer=\"conv3\")\n"
         "facets = detail[\"facets\"]\n"
         "examples = detail[\"facet_examples\"]   # the data set positions of the 32 examples it clustered\n"
         "for f, members in enumerate(facets.members):\n"
         "    idx = examples[members]\n"
         "    s = torch.bincount(shape[idx], minlength=3).argmax()\n"
         "    c = torch.bincount(colour[idx], minlength=4).argmax()\n"
         "    print(f\"facet {f + 1}: {len(idx)} examples, {int((shape[idx] == s).sum())} of them {SHAPES[s]}s, \"\n"
         "          f\"{int((colour[idx] == c).sum())} {COLOURS[c]}; the unit reaches \"\n"
         "          f\"{float(facets.values[f]):.2f} on the facet's image\")"),
    md("## Inversion: what each layer keeps\n\n"
       "An example reconstructed from each layer's code alone: the deeper the layer, the less of the input it "
       "keeps, and the larger the pixel error of its reconstruction."),
    code("inversion = atlas.invert(7)\n"
         "for r in inversion.records():\n"
         "    print(f\"{r['layer']}: pixel error {r['pixel_error']:.3f}, code error {r['code_error']:.3f}\")"),
    md("## Offline\n\n"
       "`save_html` writes one page with everything computed so far (tiles, the unit's detail, the inversion); "
       "it opens without a network or a kernel, and controls that would need one say so."),
    code("path = atlas.save_html(\"unit_atlas.html\")\n"
         "print(f\"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)\")"),
]

write_example(cells, "07_feature_visualization.ipynb")
