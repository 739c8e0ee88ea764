"""Speed of the mutual-information estimators on the 12-bit task (Shwartz-Ziv & Tishby's network 12-10-7-5-4-3-2).

    python benchmarks/information.py [--repeats 7]

Prints one JSON object per estimator: ``estimator``, ``samples``, ``layers``, ``seconds_per_epoch`` (all six
layers, median of ``--repeats``) and ``seconds_per_layer``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings

import torch

from hiddenwidgets import information as info
from hiddenwidgets.datasets import twelve_bit_task

WIDTHS = (10, 7, 5, 4, 3, 2)


def layers():
    x, y = twelve_bit_task()
    y = y.numpy()
    torch.manual_seed(0)
    h, out = x, []
    for w in WIDTHS:
        h = torch.tanh(torch.nn.Linear(h.shape[1], w)(h)).detach()
        out.append(h.numpy())
    return out, y


def median_time(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()
    acts, y = layers()
    n = len(y)
    warnings.simplefilter("ignore", info.InformationWarning)
    runs = {
        "binned (30 edges on [-1, 1])": lambda: [info.binned_mi(t, y) for t in acts],
        "kde upper (noise 1e-3)": lambda: [info.kde_mi(t, y) for t in acts],
        "kde lower (noise 1e-3)": lambda: [info.kde_mi(t, y, bound="lower") for t in acts],
        "sample propagation (noise 0.1, 1 draw)": lambda: [info.sample_propagation_mi(t, y, samples=1) for t in acts],
    }
    for name, fn in runs.items():
        repeats = a.repeats if name.startswith("binned") else max(3, a.repeats // 2)
        s = median_time(fn, repeats)
        print(json.dumps({"estimator": name, "samples": n, "layers": len(acts), "seconds_per_epoch": round(s, 5),
                          "seconds_per_layer": round(s / len(acts), 5), "repeats": repeats,
                          "torch_threads": torch.get_num_threads()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
