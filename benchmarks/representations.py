"""Representation geometry at scale: PCA, bytes sent to the projector, CKA, and the view's frame time in Chromium.

    python benchmarks/representations.py [--repeats 5] [--points 50000] [--no-browser]

Prints JSON lines:
- ``pca_50k_x_512``: seconds to project 50,000 x 512 float32 activations to 2-D (median of ``--repeats``);
- ``projector_bytes``: bytes sent to the view for 50,000 points (coordinates, one colour field, an example page);
- ``linear_cka_10k_x_512``: seconds for linear CKA of two 10,000 x 512 representations (biased and debiased);
- ``projector_frame_ms``: the view's draw time (rasterise + putImageData, from performance.measure entries) while
  panning and zooming over 50,000 points in headless Chromium, median and 95th percentile, and the median
  interval between animation frames during the same interaction (goal: <= 16 ms).
- ``probe_many_classes``: a linear probe with 10,000 or 20,000 classes on (20,000 or 40,000) x 64 features: the
  wall time of the default call (run in a child process, stopped at ``--probe-cap`` seconds), and, where the
  installed hiddenwidgets has ``max_classes``/``progress``, the opt-in run's time to its first progress report,
  seconds per L-BFGS evaluation, the estimated full run, and how long a cancel takes.
  ``--probe-only`` runs just this figure (e.g. against an older checkout with ``PYTHONPATH=...``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _timing import median_time

from hiddenwidgets.analysis.representations import project
from hiddenwidgets.analysis.similarity import cka


def clustered(n: int, dims: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    centres = torch.randn(10, dims, generator=g) * 3
    return centres[labels] + torch.randn(n, dims, generator=g), labels


def browser_frames(n: int, out: Path) -> dict:
    from playwright.sync_api import sync_playwright

    from hiddenwidgets.widgets import Projector

    x, labels = clustered(n, 64)
    view = Projector({"layer": x}, labels)
    view.wait()
    path = view.save_html(out / "projector_bench.html")
    view.close()
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.goto(path.resolve().as_uri())
        page.wait_for_selector("#hw-root[data-rendered='true']")
        box = page.locator(".hw-pj-plot").bounding_box()
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.keyboard.press("Tab")
        page.locator(".hw-pj-plot").focus()
        page.keyboard.press("p")  # the pan tool
        page.evaluate("() => { performance.clearMeasures(); window.__frames = []; const tick = (t) => {"
                      " window.__frames.push(t); if (window.__frames.length < 100000) requestAnimationFrame(tick); };"
                      " requestAnimationFrame(tick); }")
        page.mouse.move(cx, cy)
        for k in range(40):  # zoom in and out around the cursor
            page.mouse.wheel(0, -120 if k < 20 else 120)
            page.wait_for_timeout(16)
        page.mouse.down()
        for k in range(120):  # pan in a circle
            page.mouse.move(cx + 120 * np.cos(k / 10), cy + 80 * np.sin(k / 10))
            page.wait_for_timeout(8)
        page.mouse.up()
        page.wait_for_timeout(100)
        draws = page.evaluate("() => performance.getEntriesByName('hw-projector-draw').map((e) => e.duration)")
        frames = page.evaluate("() => window.__frames")
        browser.close()
    intervals = np.diff(frames)
    return {"figure": "projector_frame_ms", "points": n, "draws": len(draws),
            "draw_ms_median": round(float(np.median(draws)), 2),
            "draw_ms_p95": round(float(np.percentile(draws, 95)), 2),
            "frame_interval_ms_median": round(float(np.median(intervals)), 2),
            "frame_interval_ms_p95": round(float(np.percentile(intervals, 95)), 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--points", type=int, default=50_000)
    ap.add_argument("--no-browser", action="store_true")
    ap.add_argument("--probe-only", action="store_true", help="only the probe_many_classes figure")
    ap.add_argument("--probe-cap", type=float, default=120.0, help="seconds before a default probe call is stopped")
    a = ap.parse_args()
    if a.probe_only:
        for line in probe_many_classes(a.probe_cap):
            print(json.dumps(line), flush=True)
        return 0

    acts, labels = clustered(a.points, 512)
    med, times = median_time(lambda: project(acts), a.repeats)
    print(json.dumps({"figure": "pca_50k_x_512", "shape": list(acts.shape), "seconds_median": round(med, 3),
                      "seconds_all": [round(t, 3) for t in times]}), flush=True)

    from hiddenwidgets.pipeline.transport import encode
    from hiddenwidgets.widgets.projector import PAGE, Examples, _color_field

    xy = project(acts)
    _, coords = encode({"xy": xy})
    _, colours = encode({"label": _color_field(labels, a.points, "label", None)[1]})
    images = Examples(torch.rand(a.points, 1, 28, 28), a.points)
    _, page = images.page(0)
    print(json.dumps({"figure": "projector_bytes", "points": a.points, "coordinates": len(coords),
                      "colour_field": len(colours), "example_page_28x28": len(page), "page_size": PAGE,
                      "total_first_view": len(coords) + len(colours)}), flush=True)

    x, _ = clustered(10_000, 512, seed=1)
    y = torch.tanh(x @ torch.randn(512, 512, generator=torch.Generator().manual_seed(2)) / 20)
    for debiased in (False, True):
        med, times = median_time(lambda d=debiased: cka(x, y, debiased=d), a.repeats)
        print(json.dumps({"figure": "linear_cka_10k_x_512", "debiased": debiased, "seconds_median": round(med, 3),
                          "seconds_all": [round(t, 3) for t in times]}), flush=True)

    if not a.no_browser:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(browser_frames(a.points, Path(tmp))), flush=True)
    return 0


PROBE_CHILD = """
import json, sys, time
import numpy as np, torch
from hiddenwidgets.analysis.probes import linear_probe
n, classes = int(sys.argv[1]), int(sys.argv[2])
x = torch.randn(n, 64, generator=torch.Generator().manual_seed(0))
y = np.arange(n) % classes
t0 = time.perf_counter()
try:
    r = linear_probe(x, y)
    out = {"outcome": "finished", "accuracy": r.accuracy}
except Exception as err:
    out = {"outcome": "refused", "error": type(err).__name__, "message": str(err)[:160]}
out["seconds"] = round(time.perf_counter() - t0, 3)
print(json.dumps(out))
"""


def _probe_opt_in(probes, n: int, classes: int) -> dict:
    """``max_classes=None`` with a progress callback that cancels at its third report."""
    import contextlib

    x = torch.randn(n, 64, generator=torch.Generator().manual_seed(0))
    y = np.arange(n) % classes
    stamps: list[tuple[float, int, int]] = []
    start = time.perf_counter()

    def progress(done: int, total: int) -> bool:
        stamps.append((time.perf_counter() - start, done, total))
        return len(stamps) < 3

    with contextlib.suppress(probes.ProbeCancelled):
        probes.linear_probe(x, y, max_classes=None, progress=progress)
    stopped = time.perf_counter() - start
    per_eval = (stamps[-1][0] - stamps[0][0]) / (len(stamps) - 1)
    return {"first_progress_seconds": round(stamps[0][0], 2), "seconds_per_evaluation": round(per_eval, 2),
            "evaluations_at_most": stamps[0][2], "estimated_full_run_seconds_at_most": round(per_eval * stamps[0][2]),
            "cancel_took_seconds": round(stopped - stamps[-1][0], 3)}


def probe_many_classes(cap: float) -> list[dict]:
    """Default call (child process, capped at ``cap`` s) and opt-in run (progress, cancel) of a many-class probe."""
    import inspect
    import subprocess

    from hiddenwidgets.analysis import probes

    opt_in = "progress" in inspect.signature(probes.linear_probe).parameters
    out = []
    for n, classes in ((20_000, 20_000), (20_000, 10_000), (40_000, 20_000)):
        line = {"figure": "probe_many_classes", "examples": n, "features": 64, "classes": classes,
                "examples_per_class": n // classes, "cap_seconds": cap}
        t0 = time.perf_counter()
        try:
            done = subprocess.run([sys.executable, "-c", PROBE_CHILD, str(n), str(classes)], capture_output=True,
                                  text=True, timeout=cap)
            line["default_call"] = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else {
                "outcome": "crashed", "stderr": done.stderr[-300:]}
        except subprocess.TimeoutExpired:
            line["default_call"] = {"outcome": f"still running after {cap:.0f} s, no output; stopped",
                                    "seconds": round(time.perf_counter() - t0, 1)}
        if opt_in and n // classes >= 2:
            line["opt_in"] = _probe_opt_in(probes, n, classes)
        out.append(line)
    return out


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    sys.exit(main())
