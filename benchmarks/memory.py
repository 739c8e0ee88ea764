"""Peak memory, each figure from a fresh process (ru_maxrss, Linux):

    python benchmarks/memory.py [--elements 100000000] [--mi 4096 20000]

- a training step on a model whose one layer outputs ``--elements`` float32 values (1e8: 400 MB), plain and with
  an ActivationMonitor on that layer (every step sampled), as the growth of peak RSS over the step loop;
- kde_mi and sample_propagation_mi on N samples of 12 units (the 12-bit task's widest layer), as peak RSS above
  the process's baseline, and the largest N whose peak stays within 2 GB by the estimators' own accounting
  (activations + the 64 MB block of pairwise terms; time, not memory, is then the limit: O(N^2)).

One JSON line per figure.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

MB = 2**20
_spec = importlib.util.spec_from_file_location("peak_memory", Path(__file__).resolve().parents[1] / "tests" /
                                               "peak_memory.py")
_peak = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_peak)
peak_of = _peak.peak_of


def step_memory(elements: int) -> None:
    side = round((elements / 4) ** 0.5)
    code = f"""
        class Big(torch.nn.Module):
            def forward(self, x):
                return x * 2.0
        model = torch.nn.Sequential(Big())
        x = torch.randn(4, 1, {side}, {side})
        MONITOR
        model(x)
        STEP
        before = peak()
        for _ in range(3):
            model(x)
            STEP
        out['growth'] = peak() - before
        out['elements'] = x.numel()
    """
    plain = peak_of(code.replace("MONITOR", "").replace("STEP", ""))
    monitored = peak_of(code.replace("MONITOR", "monitor = hw.ActivationMonitor(model, ['0'], every=1, "
                                                "gradients=False)").replace("STEP", "monitor.step()"))
    print(json.dumps({"figure": "step peak memory", "elements": plain["elements"],
                      "activation_mb": round(plain["elements"] * 4 / MB, 1),
                      "plain_peak_mb": round(plain["peak"] / MB, 1),
                      "monitored_peak_mb": round(monitored["peak"] / MB, 1),
                      "plain_growth_mb": round(plain["growth"] / MB, 1),
                      "monitored_growth_mb": round(monitored["growth"] / MB, 1),
                      "extra_mb": round((monitored["growth"] - plain["growth"]) / MB, 1)}), flush=True)


def mi_memory(n: int, units: int = 12) -> None:
    for name, call in (("kde_mi", "hw.information.kde_mi(t, y, noise_variance=0.1)"),
                       ("sample_propagation_mi", "hw.information.sample_propagation_mi(t, y, samples=2)")):
        got = peak_of(f"""
            import time
            g = torch.Generator().manual_seed(0)
            t = torch.randn({n}, {units}, generator=g, dtype=torch.float64)
            y = torch.randint(0, 2, ({n},), generator=g)
            t0 = time.perf_counter()
            out['bits'] = {call}
            out['seconds'] = time.perf_counter() - t0
        """)
        print(json.dumps({"figure": "MI estimator peak memory", "estimator": name, "samples": n, "units": units,
                          "above_baseline_mb": round((got["peak"] - got["base"]) / MB, 1),
                          "seconds": round(got["seconds"], 2),
                          "n_by_the_old_n_x_n_matrix_within_2gb": int((2 * 2**30 / 8 / 3) ** 0.5)}), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--elements", type=int, default=100_000_000)
    ap.add_argument("--mi", type=int, nargs="*", default=[4096, 20_000])
    a = ap.parse_args()
    step_memory(a.elements)
    for n in a.mi:
        mi_memory(n)
    # by the estimators' accounting: the activations (n x units float64), the labels, one 64 MB block of
    # pairwise terms and, for sample propagation, samples x n x units draws
    units, samples, budget = 12, 4, 2 * 2**30 - 64 * MB - 200 * MB  # 200 MB: the interpreter and torch
    print(json.dumps({"figure": "largest N within 2 GB", "units": units,
                      "kde_mi": int(budget / (units * 8 + 8)),
                      "sample_propagation_mi": int(budget / (units * 8 * (1 + 2 * samples) + 8)),
                      "note": "memory is linear in N now; time is O(N^2 * units)"}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
