"""Writes examples/01_live_training.ipynb (kept as a script so the notebook's source is reviewable as code)."""

from notebooks import code, md, write_example

cells = [
    md("# Watching a CNN learn, live\n\n"
       "`hw.ActivationMonitor` hooks a few named layers of a model and streams what they do while the "
       "training loop runs: a ridgeline of activation histograms over time, the current feature maps, mean ± std, "
       "the fraction of zeros and of dead units, the gradient norm, and the scalars you log.\n\n"
       "Click a layer's name in the view while training runs to see it in detail; *Pause* stops the stream "
       "(Python keeps recording). Runs on CPU in well under a minute; the data ship with scikit-learn."),
    code("from collections import OrderedDict\n\n"
         "import torch\n"
         "import torch.nn.functional as F\n"
         "from sklearn.datasets import load_digits\n"
         "from torch import nn\n\n"
         "import hiddenwidgets as hw\n\n"
         "torch.manual_seed(0)\n"
         "digits = load_digits()\n"
         "X = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0   # (1797, 1, 8, 8)\n"
         "y = torch.tensor(digits.target)\n"
         "perm = torch.randperm(len(X))\n"
         "train_idx, val_idx = perm[:1440], perm[1440:]\n"
         "X_train, y_train, X_val, y_val = X[train_idx], y[train_idx], X[val_idx], y[val_idx]\n"
         "X_train.shape, X_val.shape"),
    code("model = nn.Sequential(OrderedDict(\n"
         "    conv1=nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU()),\n"
         "    conv2=nn.Sequential(nn.Conv2d(32, 64, 3, padding=1), nn.ReLU()),\n"
         "    pool=nn.MaxPool2d(2),\n"
         "    flatten=nn.Flatten(),\n"
         "    fc1=nn.Sequential(nn.Linear(64 * 4 * 4, 128), nn.ReLU()),\n"
         "    out=nn.Linear(128, 10),\n"
         "))\n"
         "optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)\n\n"
         "monitor = hw.ActivationMonitor(model, layers=[\"conv1\", \"conv2\", \"fc1\"], title=\"Digits CNN\")\n"
         "monitor"),
    md("The loop is an ordinary PyTorch loop; the one added line is `monitor.step(...)`. It costs a few "
       "microseconds: layer summaries are computed on sampled steps only (about 2 % of the training time) and "
       "everything else happens on a background thread."),
    code("EPOCHS = 120\n"
         "BATCH = 32\n\n"
         "for epoch in range(EPOCHS):\n"
         "    model.train()\n"
         "    order = torch.randperm(len(X_train))\n"
         "    for start in range(0, len(order), BATCH):\n"
         "        idx = order[start:start + BATCH]\n"
         "        logits = model(X_train[idx])\n"
         "        loss = F.cross_entropy(logits, y_train[idx])\n"
         "        optimizer.zero_grad()\n"
         "        loss.backward()\n"
         "        optimizer.step()\n"
         "        accuracy = (logits.argmax(1) == y_train[idx]).float().mean()\n"
         "        monitor.step(loss=loss, accuracy=accuracy, epoch=epoch)\n"
         "    model.eval()\n"
         "    with torch.no_grad():\n"
         "        val_accuracy = (model(X_val).argmax(1) == y_val).float().mean()\n"
         "    monitor.log(val_accuracy=val_accuracy)\n\n"
         "print(f\"step {monitor.history.step}: validation accuracy {val_accuracy:.3f}, \"\n"
         "      f\"{monitor.frames_sent} frames sent\")"),
    md("## The same view, offline\n\n"
       "`save_html` writes one self-contained file (the view's code and all its data inlined, no network "
       "needed) for a course page. See the README for Jupyter Book, Sphinx and plain sites."),
    code("path = monitor.save_html(\"monitor.html\", title=\"Digits CNN: activations during training\")\n"
         "print(f\"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)\")"),
    md("## Training on a background thread\n\n"
       "`run_in_background` runs a training function on a thread: the cell returns at once and the kernel "
       "stays free, in every front end (VS Code and Colab included). `job.stop()` ends the loop at its next "
       "`step()`."),
    code("def more_training(epochs):\n"
         "    for epoch in range(EPOCHS, EPOCHS + epochs):\n"
         "        model.train()\n"
         "        order = torch.randperm(len(X_train))\n"
         "        for start in range(0, len(order), BATCH):\n"
         "            idx = order[start:start + BATCH]\n"
         "            loss = F.cross_entropy(model(X_train[idx]), y_train[idx])\n"
         "            optimizer.zero_grad()\n"
         "            loss.backward()\n"
         "            optimizer.step()\n"
         "            monitor.step(loss=loss, epoch=epoch)\n\n"
         "job = monitor.run_in_background(more_training, 5)\n"
         "job"),
    code("job.wait()\n"
         "monitor.close()   # hooks off, history flushed; the view stays\n"
         "print(f\"finished at step {monitor.history.step}; hooks left on the model: \"\n"
         "      f\"{sum(len(m._forward_hooks) for m in model.modules())}\")"),
]

write_example(cells, "01_live_training.ipynb")
