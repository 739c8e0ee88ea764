"""Concepts: how long TCAV takes, and how long a change made in the annotator takes to be durable on disk.

    python benchmarks/concepts.py [--repeats 3] [--no-browser]

Prints JSON lines:
- ``tcav_3x3x10``: seconds for TCAV of 3 concepts x 3 layers x 10 random sets on scikit-learn's digits (1,797 8x8
  images, a small CNN trained 5 epochs, all 10 classes), median of ``--repeats``, for each significance test;
  ``tcav_3x3x20``: the same with 20 random sets, default test;
- ``concept_saved_ms``: from ``benchmarks/concept_saves.py``: time from a change made in the annotator view in
  Chromium + JupyterLab to its acknowledgement, which Python sends only after the file is written and fsynced
  (median and p95, kernel idle and busy).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


def digits_cnn() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target)
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(
        conv1=nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU()),
        conv2=nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
        flatten=nn.Flatten(), hidden=nn.Sequential(nn.Linear(512, 64), nn.ReLU()), out=nn.Linear(64, 10)))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(5):
        for idx in torch.randperm(len(x)).split(64):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval(), x, y


def tcav_figure(repeats: int) -> list[dict]:
    from hiddenwidgets.analysis.tcav import tcav

    model, x, y = digits_cnn()
    g = torch.Generator().manual_seed(1)

    def some(mask: torch.Tensor, k: int = 60) -> list[int]:
        idx = torch.nonzero(mask).flatten()
        return idx[torch.randperm(len(idx), generator=g)[:k]].tolist()

    ink = x.flatten(1).sum(1)
    concepts = {"closed loop": some(torch.isin(y, torch.tensor([0, 6, 8, 9]))),
                "straight stroke": some(torch.isin(y, torch.tensor([1, 7]))),
                "heavy ink": some(ink > ink.quantile(0.9))}
    rows = []
    for test, m in (("derivative", 10), ("random-concepts", 10), ("paper", 10), ("derivative", 20)):
        times = []
        for _ in range(repeats + 1):  # the first run warms up
            t0 = time.perf_counter()
            result = tcav(model, x, concepts, ["conv1", "conv2", "hidden"], labels=y, random_sets=m, test=test)
            times.append(time.perf_counter() - t0)
        records = result.records()
        rows.append({"figure": f"tcav_3x3x{m}", "test": test, "concepts": 3, "layers": 3, "random_sets": m,
                     "classes": 10, "seconds_median": round(statistics.median(times[1:]), 3),
                     "seconds_all": [round(t, 3) for t in times[1:]], "results": len(records),
                     "significant": sum(r["significant"] for r in records)})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-browser", action="store_true")
    a = ap.parse_args()
    for row in tcav_figure(a.repeats):
        print(json.dumps(row), flush=True)
    if not a.no_browser:
        saves = Path(__file__).resolve().parent / "concept_saves.py"
        return subprocess.call([sys.executable, str(saves)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
