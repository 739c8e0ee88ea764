"""TCAV's significance tests: size (false positives on null concepts) and power (on planted concepts).

    python benchmarks/tcav_power.py [--seeds 40] [--digits-seeds 20] [--m 10 20] [--scenarios ...] [--quick]

Every run draws its inputs, concepts and random sets from its seed (``tcav(seed=seed)`` too), so the figures are
reproducible. Torch runs on one thread: the CAVs are thousands of tiny Newton solves, which extra threads only slow
down on a shared machine.

Scenarios (``h`` the tested layer):

- ``linear``: 16-D standard normal inputs, ``h = x``, ``logits = W h`` (3 classes, W fixed): every input has the
  same gradient, so every CAV, random ones included, scores exactly 0 or 1 (the case the "random-concepts" test
  was chosen for, and the one where it cannot reject). Concepts: 40 examples shifted by ``delta`` (standard
  deviations) along ``w_0 / |w_0|`` (planted, class 0), and 4 null concepts drawn like the random sets.
- ``quadratic``: the same with ``logit_0 += |h|^2 / 2`` and ``logit_1 -= |h|^2 / 2``: gradients vary from input to
  input, so scores lie strictly between 0 and 1.
- ``mlp``: the setting of the first measurement ("paper" 31%, "random-concepts" 0.6% of null tests at p < 0.05):
  8-D normal inputs, a random 8-16-3 ReLU MLP (new weights per seed), layers ``fc`` (pre-activation) and ``act``,
  60-example sets, every class tested on the same 200 inputs; 4 null concepts, and concepts shifted by ``delta``
  = 1, 3 along the inputs' mean gradient of logit 0.
- ``digits``: the issue's case: scikit-learn's digits, the small CNN of ``benchmarks/concepts.py`` trained to 100%
  training accuracy, layers conv1, conv2, hidden, classes 0 and 1; the concept "zeros" (40 images of a 0, not among
  the tested ones) scores 1.000 +- 0.000 for class 0 and 0.000 for class 1; 4 null concepts of 40 random images.

Tests: the three of ``tcav(test=...)``, with p-values as ``tcav`` reports them, and candidates computed here from
the "derivative" run's CAVs and gradients:

- ``rank-score`` / ``rank-derivative``: exact permutation tests. The concept and the ``m`` random sets are treated
  alike: each set's statistic is its mean TCAV score (or mean directional derivative) over its CAVs against the
  ``m`` other sets (the CAV of ``R_j`` against the concept is minus the concept's against ``R_j``); two-sided on
  the distance from the mean of the ``m + 1``; ``p = #{sets at least as far as the concept} / (m + 1)``, ties
  counted against the concept, so ``p >= 1 / (m + 1)``.
- ``derivative-unscaled``: the "derivative" t-test without its ``(m - 1) / m`` factor.

Prints JSON lines: ``{"figure": "size", ...}`` per (scenario, test, m): the fraction of null tests with p < alpha
(``raw``), with ``p * tests < alpha`` (``bonferroni``, ``tests`` = concepts x layers x classes of the run), and the
fraction of runs with at least one Bonferroni-significant null test (``familywise``); ``{"figure": "power", ...}``
per (scenario, planted effect, test, m): the fraction of runs in which the planted concept is significant for its
class (raw and Bonferroni), the median p-value and the concept's score; ``{"figure": "seconds", ...}``: median
seconds of one ``tcav`` call per scenario, test and m.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hiddenwidgets.analysis.tcav import _gradients, _new_observation_ttest, tcav

ALPHA = 0.05
PUBLIC = ("derivative", "random-concepts", "paper")
CANDIDATES = ("rank-score", "rank-derivative", "derivative-unscaled")


@dataclass
class Run:
    """One seed of one scenario: what tcav needs, and which concepts are planted (concept -> (class, effect))."""

    model: nn.Module
    x: torch.Tensor
    concepts: dict[str, np.ndarray]
    layers: list[str]
    planted: dict[str, tuple[int, str]]
    random_pool: np.ndarray
    set_size: int = 40
    labels: np.ndarray | None = None
    class_examples: np.ndarray | None = None


# ------------------------------------------------------------------------------------------------------------------
# scenarios
D, SET, TESTED, NULLS = 16, 40, 200, 4
W = torch.randn(3, D, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
DELTAS = (0.5, 1.0, 3.0)


class Linear(nn.Module):
    """``logits = W h + curvature · |h|² / 2 · (1, -1, 0)`` with ``h = x`` (an Identity layer named "h")."""

    def __init__(self, curvature: float):
        super().__init__()
        self.h = nn.Identity()
        self.register_buffer("w", W.clone())
        self.register_buffer("sign", torch.tensor([1.0, -1.0, 0.0], dtype=torch.float64))
        self.curvature = curvature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.h(x)
        return h @ self.w.T + self.curvature * 0.5 * h.pow(2).sum(dim=1, keepdim=True) * self.sign


def gaussian_run(seed: int, m: int, curvature: float) -> Run:
    g = torch.Generator().manual_seed(seed)
    n_concepts = len(DELTAS) + NULLS
    pool_size = (m + 1) * SET  # "paper" draws one more set
    x = torch.randn(n_concepts * SET + pool_size + TESTED, D, generator=g, dtype=torch.float64)
    u = W[0] / W[0].norm()
    concepts, planted = {}, {}
    for i, delta in enumerate(DELTAS):
        idx = np.arange(i * SET, (i + 1) * SET)
        x[idx] += delta * u
        concepts[f"planted {delta:g}"] = idx
        planted[f"planted {delta:g}"] = (0, f"delta={delta:g}")
    for i in range(NULLS):
        concepts[f"null {i}"] = np.arange((len(DELTAS) + i) * SET, (len(DELTAS) + i + 1) * SET)
    start = n_concepts * SET
    return Run(Linear(curvature), x, concepts, ["h"], planted, np.arange(start, start + pool_size),
               class_examples=np.arange(start + pool_size, len(x)))


def mlp_run(seed: int, m: int) -> Run:
    torch.manual_seed(seed)
    model = nn.Sequential(OrderedDict([("fc", nn.Linear(8, 16)), ("act", nn.ReLU()), ("out", nn.Linear(16, 3))]))
    model = model.double().eval()
    g = torch.Generator().manual_seed(10_000 + seed)
    size, deltas = 60, (1.0, 3.0)
    n_concepts = NULLS + len(deltas)
    pool_size = (m + 1) * size
    x = torch.randn(n_concepts * size + pool_size + TESTED, 8, generator=g, dtype=torch.float64)
    xg = x[:500].clone().requires_grad_(True)  # the inputs' mean gradient of logit 0: a direction that feeds it
    (grad,) = torch.autograd.grad(model(xg)[:, 0].sum(), xg)
    u = grad.mean(0) / grad.mean(0).norm()
    concepts, planted = {f"null {i}": np.arange(i * size, (i + 1) * size) for i in range(NULLS)}, {}
    for i, delta in enumerate(deltas):
        idx = np.arange((NULLS + i) * size, (NULLS + i + 1) * size)
        x[idx] += delta * u
        concepts[f"planted {delta:g}"] = idx
        planted[f"planted {delta:g}"] = (0, f"delta={delta:g}")
    start = n_concepts * size
    return Run(model, x, concepts, ["fc", "act"], planted, np.arange(start, start + pool_size), set_size=size,
               class_examples=np.arange(start + pool_size, len(x)))


_DIGITS: dict[str, Any] = {}


def digits_model() -> tuple[nn.Module, torch.Tensor, np.ndarray, float]:
    """The CNN of benchmarks/concepts.py, trained (seed 0) until it classifies every training image right."""
    if not _DIGITS:
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
        accuracy = 0.0
        for _ in range(40):
            for idx in torch.randperm(len(x)).split(64):
                loss = F.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            with torch.no_grad():
                accuracy = (model(x).argmax(1) == y).float().mean().item()
            if accuracy == 1.0:
                break
        _DIGITS.update(model=model.double().eval(), x=x.double(), y=y.numpy(), accuracy=accuracy)
    return _DIGITS["model"], _DIGITS["x"], _DIGITS["y"], _DIGITS["accuracy"]


def digits_run(seed: int, m: int) -> Run:
    model, x, y, _ = digits_model()
    rng = np.random.default_rng(seed)
    zeros = rng.permutation(np.flatnonzero(y == 0))
    ones = rng.permutation(np.flatnonzero(y == 1))[:120]
    rest = rng.permutation(np.setdiff1d(np.arange(len(y)), np.concatenate([zeros, ones])))
    concepts = {"zeros": np.sort(zeros[:SET])}
    concepts.update({f"null {i}": np.sort(rest[i * SET:(i + 1) * SET]) for i in range(NULLS)})
    labels = np.full(len(y), -1)
    labels[zeros[SET:]] = 0
    labels[ones] = 1
    return Run(model, x, concepts, ["conv1", "conv2", "hidden"], {"zeros": (0, "zeros")},
               random_pool=rest[NULLS * SET:(NULLS + m + 1) * SET], labels=labels)


SCENARIOS: dict[str, Callable[[int, int], Run]] = {
    "linear": lambda seed, m: gaussian_run(seed, m, 0.0),
    "quadratic": lambda seed, m: gaussian_run(seed, m, 1.0),
    "mlp": mlp_run,
    "digits": digits_run,
}


# ------------------------------------------------------------------------------------------------------------------
# the tests
def call_tcav(run: Run, m: int, test: str, seed: int) -> tuple[Any, float]:
    kwargs: dict[str, Any] = {"random_sets": m, "random_pool": run.random_pool, "set_size": run.set_size,
                              "test": test, "seed": seed}
    if run.labels is not None:  # digits: classes 0 and 1, each on its own images (label -1: not tested)
        kwargs.update(labels=run.labels, targets=[0, 1])
    else:
        kwargs["class_examples"] = run.class_examples
    t0 = time.perf_counter()
    result = tcav(run.model, run.x, run.concepts, run.layers, **kwargs)
    return result, time.perf_counter() - t0


def candidate_p_values(run: Run, result: Any, m: int) -> dict[tuple[str, str, int, str], float]:
    """p-values of the candidates, from the CAVs of a "derivative" (or "random-concepts") result."""
    if run.labels is not None:
        tested = {k: np.flatnonzero(run.labels == k) for k in (0, 1)}
    else:
        tested = {None: run.class_examples}
    specs = dict.fromkeys(run.layers)
    grads: dict[int, dict[str, torch.Tensor]] = {}
    for k, idx in tested.items():
        grads.update(_gradients(run.model, run.x, idx, None if k is None else [k], specs, "flatten", 1024))
    off = ~np.eye(m, dtype=bool)
    out = {}
    for layer in run.layers:
        pairs = torch.stack([c.vector.double() for c in result.random_cavs[layer]])  # (j, i), i != j
        for k, per in grads.items():
            g = per[layer].double()
            rs = g @ pairs.T  # (examples, m (m - 1))
            pair_score = np.zeros((m, m))
            pair_deriv = np.zeros((m, m))
            pair_score[off] = (rs > 0).double().mean(0).numpy()
            pair_deriv[off] = rs.mean(0).numpy()
            for concept in run.concepts:
                cs = g @ torch.stack([c.vector.double() for c in result.cavs[(concept, layer)]]).T  # (examples, m)
                # the CAV of R_j against the concept is minus the concept's against R_j
                score_all = np.concatenate([[(cs > 0).double().mean().item()],
                                            (pair_score.sum(1) + (cs < 0).double().mean(0).numpy()) / m])
                deriv_all = np.concatenate([[cs.mean().item()], (pair_deriv.sum(1) - cs.mean(0).numpy()) / m])
                for name, values in (("rank-score", score_all), ("rank-derivative", deriv_all)):
                    far = np.abs(values - values.mean())
                    out[(concept, layer, k, name)] = float(np.mean(far >= far[0] * (1 - 1e-12)))
                # the t-test of "random-concepts" applied to the derivatives: without the (m - 1) / m factor
                p = _new_observation_ttest(float(result.derivatives[(concept, layer, k)].mean()),
                                           result.random_derivatives[(layer, k)])
                out[(concept, layer, k, "derivative-unscaled")] = p
    return out


def measure(scenario: str, seeds: int, m: int) -> list[dict[str, Any]]:
    make = SCENARIOS[scenario]
    null_p: dict[str, list[list[float]]] = {t: [] for t in (*PUBLIC, *CANDIDATES)}  # per run: its null p-values
    power: dict[tuple[str, str], list[tuple[float, float, float]]] = {}  # (effect, test) -> (p, score, score_std)
    seconds: dict[str, list[float]] = {t: [] for t in PUBLIC}
    tests_per_run = 0
    for seed in range(seeds):
        run = make(seed, m)
        ps: dict[tuple[str, str, int, str], float] = {}
        rows = {}
        for test in PUBLIC:
            result, secs = call_tcav(run, m, test, seed)
            seconds[test].append(secs)
            for r in result.records():
                ps[(r["concept"], r["layer"], r["target"], test)] = r["p_value"]
                rows[(r["concept"], r["layer"], r["target"], test)] = r
            if test == "derivative":
                ps.update(candidate_p_values(run, result, m))
        tests_per_run = len(result.records())
        for test in null_p:
            null_p[test].append([p for (c, _, _, t), p in ps.items() if t == test and c.startswith("null")])
        for concept, (k, effect) in run.planted.items():
            for (c, layer, target, test), p in ps.items():
                if c == concept and target == k:
                    r = rows[(c, layer, target, "derivative")]
                    power.setdefault((f"{effect} {layer}", test), []).append((p, r["score"], r["score_std"]))
    out = []
    for test, runs in null_p.items():
        flat = np.array([p for run in runs for p in run])
        out.append({"figure": "size", "scenario": scenario, "test": test, "m": m, "alpha": ALPHA, "seeds": seeds,
                    "tests_per_run": tests_per_run, "null_tests": len(flat),
                    "raw": round(float(np.mean(flat < ALPHA)), 4),
                    "bonferroni": round(float(np.mean(flat * tests_per_run < ALPHA)), 4),
                    "familywise": round(float(np.mean([min(run) * tests_per_run < ALPHA for run in runs])), 4)})
    for (effect, test), values in sorted(power.items()):
        p = np.array([v[0] for v in values])
        out.append({"figure": "power", "scenario": scenario, "effect": effect, "test": test, "m": m, "alpha": ALPHA,
                    "seeds": seeds, "tests_per_run": tests_per_run, "raw": round(float(np.mean(p < ALPHA)), 4),
                    "bonferroni": round(float(np.mean(p * tests_per_run < ALPHA)), 4),
                    "median_p": float(f"{np.median(p):.3g}"),
                    "score": round(float(np.mean([v[1] for v in values])), 3),
                    "score_std": round(float(np.mean([v[2] for v in values])), 3)})
    for test, secs in seconds.items():
        out.append({"figure": "seconds", "scenario": scenario, "test": test, "m": m, "layers": len(run.layers),
                    "concepts": len(run.concepts), "median": round(statistics.median(secs), 4)})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=40, help="runs per scenario (linear, quadratic, mlp)")
    ap.add_argument("--digits-seeds", type=int, default=20, help="runs of the digits scenario")
    ap.add_argument("--m", type=int, nargs="+", default=[10], help="random sets per run (10: the default)")
    ap.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    ap.add_argument("--quick", action="store_true", help="5 seeds each, m = 10 (a smoke run)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.quick:
        a.seeds, a.digits_seeds, a.m = 5, 3, [10]
    if "digits" in a.scenarios:
        t0 = time.perf_counter()
        _, _, _, accuracy = digits_model()
        print(json.dumps({"figure": "digits_model", "train_accuracy": accuracy,
                          "seconds": round(time.perf_counter() - t0, 1)}), flush=True)
    for m in a.m:
        for scenario in a.scenarios:
            for row in measure(scenario, a.digits_seeds if scenario == "digits" else a.seeds, m):
                print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
