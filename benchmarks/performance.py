"""hiddenwidgets against the alternative people would use, row by row, timed side by side in one process.

    python benchmarks/performance.py [--rows summary scorecam pca cka import] [--pairs 7] [--clock cpu]
                                     [--sizes 1e3 1e4 1e5 1e6 1e7 1e8] [--threads 1]

Prints one JSON line per row: the median seconds of ours and of the anchor, and the median and spread (min, max)
of the per-pair ratios ours / anchor over ``--pairs`` alternating pairs (which side goes first alternates).

- ``summary``: one layer summary (:class:`LayerSummarizer`: moments, zeros, NaN/inf, dead units, a 64-bin
  histogram) of a float32 (N, 64, H, W) activation against TensorBoard's ``SummaryWriter.add_histogram`` of the
  same tensor (to a temporary directory), at each of ``--sizes`` elements; also seconds per million elements.
- ``scorecam``: Score-CAM on 4 images of a small CNN (benchmarks/attribution.py's) at 28x28 and 224x224 against
  pytorch-grad-cam's ``ScoreCAM`` (whose module-level imports of torchvision, cv2 and ttach are stubbed here;
  cv2.resize, the only one it calls, by bilinear interpolation). Both evaluate every channel-masked input;
  their weights differ by definition (grad-cam scores raw logits, Wang et al. the softmax gain over a blank
  input), so only the time is compared.
- ``pca``: 50,000 x 512 float32 to 2-D against scikit-learn's ``PCA`` (its default solver, and randomized).
- ``cka``: linear CKA of two 10,000 x 512 float32 representations against Kornblith et al.'s feature-space
  formula (written out below), with the largest difference of the values.
- ``import``: wall time of ``import hiddenwidgets`` after ``import torch`` (fresh interpreters, alternating with
  ``import torch`` alone), and whether ipywidgets/IPython/anywidget/altair were imported.

``--clock cpu`` measures this process's CPU time (``time.process_time``: every thread's), not the wall clock: on a
machine shared with other jobs the wall clock mostly measures waiting for a core. ``--threads 1`` (default) runs
torch and numpy's BLAS on one thread each, alike on both sides. The training-time overhead of the monitor is in
benchmarks/overhead.py.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
import warnings
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from _timing import timed

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[1]
CLOCK = time.perf_counter


def pairs(ours, anchor, n: int, at_least: float = 0.2) -> dict:
    """Alternating pairs: median seconds of each side and the median, min and max of the per-pair ratios."""
    ours()
    anchor()
    a, b, ratios = [], [], []
    for r in range(n):
        if r % 2 == 0:
            x, y = timed(ours, at_least, CLOCK), timed(anchor, at_least, CLOCK)
        else:
            y, x = timed(anchor, at_least, CLOCK), timed(ours, at_least, CLOCK)
        a.append(x)
        b.append(y)
        ratios.append(x / y)
    return {"ours_s": float(f"{statistics.median(a):.4g}"), "anchor_s": float(f"{statistics.median(b):.4g}"),
            "ratio": round(statistics.median(ratios), 3), "ratio_min": round(min(ratios), 3),
            "ratio_max": round(max(ratios), 3), "pairs": n}


# ---------------------------------------------------------------------------------------------------------------
def row_summary(a) -> None:
    from torch.utils.tensorboard import SummaryWriter

    from hiddenwidgets.pipeline.summaries import LayerSummarizer

    out = tempfile.mkdtemp(prefix="hw-bench-tb-")
    writer = SummaryWriter(out)
    previous = None
    for size in a.sizes:
        elements = int(float(size))
        side = max(1, round(math.sqrt(elements / 64 / 16)))
        n = max(1, round(elements / (64 * side * side)))
        x = torch.randn(n, 64, side, side, generator=torch.Generator().manual_seed(0))
        summarizer = LayerSummarizer(torch.nn.Conv2d(1, 64, 1), dead_window=4)
        step = [0]

        def ours(x=x, summarizer=summarizer):
            summarizer.summarize(x)

        def anchor(x=x, step=step):
            step[0] += 1
            writer.add_histogram("layer", x, step[0])

        n_pairs = a.pairs if x.numel() < 5e7 else max(3, a.pairs // 2)
        row = {"row": "summary", "elements": x.numel(), "shape": list(x.shape), "anchor": "tensorboard add_histogram",
               **pairs(ours, anchor, n_pairs, at_least=0.2 if x.numel() < 5e7 else 0.0)}
        row["ours_s_per_million"] = round(row["ours_s"] / (x.numel() / 1e6), 6)
        if previous is not None:  # cost growth against element growth, from the previous size
            row["growth_vs_elements"] = round((row["ours_s"] / previous[1]) / (x.numel() / previous[0]), 3)
        previous = (x.numel(), row["ours_s"])
        print(json.dumps(row), flush=True)
        del x
    writer.close()


class _Stub(types.ModuleType):
    """A stand-in module: any attribute is a placeholder class (pytorch-grad-cam only names them in signatures
    and in code paths Score-CAM does not run)."""

    __path__: ClassVar[list[str]] = []  # a package, so that submodules import

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        value = type(name, (), {"__init__": lambda self, *args, **kw: None})
        setattr(self, name, value)
        return value


class _StubFinder:
    prefixes = ("torchvision", "cv2", "ttach")

    def find_spec(self, name, path=None, target=None):
        import importlib.util

        if name.split(".")[0] in self.prefixes:
            return importlib.util.spec_from_loader(name, self)
        return None

    def create_module(self, spec):
        return _Stub(spec.name)

    def exec_module(self, module):
        pass


def _stub_grad_cam_imports() -> None:
    """pytorch-grad-cam imports torchvision, cv2 and ttach at module level; none of them works or exists here, and
    Score-CAM needs none but cv2.resize (the CAM resized to the input), done here by bilinear interpolation."""
    def resize(img, size, *args, **kw):
        t = torch.as_tensor(np.ascontiguousarray(img))[None, None].float()
        return F.interpolate(t, size=(size[1], size[0]), mode="bilinear", align_corners=False)[0, 0].numpy()

    sys.meta_path.insert(0, _StubFinder())
    import cv2

    cv2.resize = resize


def row_scorecam(a) -> None:
    _stub_grad_cam_imports()
    import tqdm
    from pytorch_grad_cam import ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    import hiddenwidgets as hw

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from attribution import cnn

    tqdm.tqdm = _quiet(tqdm.tqdm)
    for size in (28, 224):
        channels = 1 if size <= 32 else 3
        model = cnn(channels, size)
        x = torch.randn(a.images, channels, size, size, generator=torch.Generator().manual_seed(0))
        target = torch.arange(a.images) % 10
        cam = ScoreCAM(model=model, target_layers=[model[4]])
        targets = [ClassifierOutputTarget(int(t)) for t in target]

        def ours(model=model, x=x, target=target):
            hw.attribute(model, x, "score_cam", target, layer="4")

        def anchor(cam=cam, x=x, targets=targets):
            cam(input_tensor=x, targets=targets)

        row = {"row": "scorecam", "input_shape": list(x.shape), "channels": 64,
               "anchor": "pytorch-grad-cam ScoreCAM (batch 16)", **pairs(ours, anchor, a.pairs, at_least=0.0)}
        print(json.dumps(row), flush=True)


def _quiet(cls):
    def make(*args, **kw):
        kw["disable"] = True
        return cls(*args, **kw)
    return make


def row_pca(a) -> None:
    from sklearn.decomposition import PCA

    from hiddenwidgets.analysis.representations import project

    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (50_000,), generator=g)
    x = (torch.randn(10, 512, generator=g) * 3)[labels] + torch.randn(50_000, 512, generator=g)
    data = x.numpy()
    ours_xy = project(x, "pca")
    for solver in ("auto", "randomized"):
        pca = PCA(n_components=2, svd_solver=solver, random_state=0)
        theirs = pca.fit_transform(data)
        # the same plane: each coordinate equal up to its sign (sign conventions differ)
        diff = max(float(np.abs(np.abs(ours_xy[:, i]) - np.abs(theirs[:, i])).max()) for i in range(2))
        row = {"row": "pca", "shape": [50_000, 512], "anchor": f"sklearn PCA svd_solver={solver!r}",
               **pairs(lambda: project(x, "pca"), lambda pca=pca: pca.fit_transform(data), a.pairs),
               "max_abs_coordinate_difference": float(f"{diff:.3g}")}
        print(json.dumps(row), flush=True)


def kornblith_feature_space_linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Kornblith et al. (2019), linear CKA in feature space (their notebook's formula, written out here)."""
    x = x - x.mean(0, keepdims=True)
    y = y - y.mean(0, keepdims=True)
    return np.linalg.norm(x.T @ y) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def row_cka(a) -> None:
    from hiddenwidgets.analysis.similarity import cka

    g = torch.Generator().manual_seed(0)
    x = torch.randn(10_000, 512, generator=g)
    y = x @ torch.randn(512, 512, generator=g) * 0.1 + torch.randn(10_000, 512, generator=g)
    xn, yn = x.numpy(), y.numpy()
    xd, yd = xn.astype(np.float64), yn.astype(np.float64)
    diff = abs(cka(x, y) - kornblith_feature_space_linear_cka(xd, yd))
    for label, (p, q) in (("float32 input", (xn, yn)), ("float64 input", (xd, yd))):
        row = {"row": "cka", "shape": [10_000, 512], "anchor": f"Kornblith et al. feature-space formula, {label}",
               **pairs(lambda: cka(x, y), lambda p=p, q=q: kornblith_feature_space_linear_cka(p, q), a.pairs),
               "abs_difference_vs_float64_formula": float(f"{diff:.3g}")}
        print(json.dumps(row), flush=True)


def row_import(a) -> None:
    env = {"PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT))}  # the checkout being measured
    probe = ("import sys, time; import torch; t = time.perf_counter(); {}; print(time.perf_counter() - t, "
             "[m for m in ('ipywidgets', 'IPython', 'anywidget', 'altair') if m in sys.modules])")

    def run(stmt: str) -> tuple[float, str]:
        done = subprocess.run([sys.executable, "-c", probe.format(stmt)], capture_output=True, text=True, env=env,
                              check=True, cwd=tempfile.gettempdir())  # not the checkout: "" on sys.path comes first
        seconds, _, loaded = done.stdout.strip().partition(" ")
        return float(seconds), loaded

    ours, base, loaded = [], [], ""
    for r in range(a.pairs):
        for who in (("hw", "torch") if r % 2 == 0 else ("torch", "hw")):
            if who == "hw":
                s, loaded = run("import hiddenwidgets")
                ours.append(s)
            else:
                base.append(run("pass")[0])
    print(json.dumps({"row": "import", "clock": "wall", "import_hiddenwidgets_after_torch_s": round(
        statistics.median(ours) - statistics.median(base), 3), "spread_s": [round(min(ours), 3), round(max(ours), 3)],
        "view_stack_imported": loaded, "pairs": a.pairs}), flush=True)


ROWS = {"summary": row_summary, "scorecam": row_scorecam, "pca": row_pca, "cka": row_cka, "import": row_import}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    ap.add_argument("--pairs", type=int, default=7)
    ap.add_argument("--sizes", nargs="+", default=["1e3", "1e4", "1e5", "1e6", "1e7", "1e8"])
    ap.add_argument("--images", type=int, default=4, help="images per Score-CAM call")
    ap.add_argument("--threads", type=int, default=1, help="torch and BLAS threads, alike on both sides")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    a = ap.parse_args()
    global CLOCK
    if a.clock == "cpu":
        CLOCK = time.process_time
    torch.set_num_threads(a.threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(a.threads)
    print(json.dumps({"torch": torch.__version__, "numpy": np.__version__, "threads": a.threads, "clock": a.clock,
                      "python": sys.version.split()[0]}), flush=True)
    for name in a.rows:
        ROWS[name](a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
