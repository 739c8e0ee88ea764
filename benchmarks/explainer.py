"""The network explainer: time from a drawn stroke to the updated overview, and the size of exported pages.

    python benchmarks/explainer.py [--strokes 40] [--busy-s 120] [--no-browser] [--compare /work/main] [--rounds 2]

- ``stroke_to_overview_ms``: JupyterLab + headless Debian Chromium (Playwright, as tests/e2e does) shows the
  explainer of example 08's digits CNN (8x8 inputs; trained 2 epochs here: training does not change the cost).
  Strokes are drawn with the mouse on the view's canvas, one at a time (the next once the view is idle); each ink
  the view sends is measured by the view's own ``hw-explainer-update`` performance entry: from sending the ink to
  the overview redrawn with the kernel's answer (one forward pass with hooks, the overview encoded, sent, decoded,
  drawn). Kernel idle, then while a cell keeps the kernel's main thread busy (a pure-Python loop; JupyterLab >= 4.4
  routes widget messages to a subshell).
  ``redraw_ms``: of that, the part after the answer arrived (decode and repaint; views that record it).
- ``show_drawing_ms``: the Python side alone (``view.show_drawing(ink)``), no browser: ``kernel`` idle, and
  ``busy``: while another thread of the process runs a pure-Python loop, as a busy cell's main thread does while
  the widget subshell answers a stroke (every torch call releases the GIL and waits to get it back).
- ``--threads N``: ``torch.set_num_threads(N)`` in the notebooks' kernels (default 1, as example 08 sets; 0:
  torch's default). A digits CNN's layers are tiny, and
  each of torch's intra-op parallel regions wakes a second thread: on cores that are busy (a training job, other
  programs) waiting for it is most of a drawing's time (``show_drawing_ms`` rows give both settings).
- ``--no-browser``: the Python figures (for both thread settings) and the page sizes only; without it, the strokes.
- ``--compare TREE``: the same figures for the hiddenwidgets checkout at TREE (e.g. /work/main, with its front end
  built), measured side by side in this run: Python figures in alternating subprocesses, strokes in two notebooks
  of one JupyterLab (each kernel imports its tree's package, which sends its own front end), alternating in
  ``--rounds`` rounds; each row names its ``tree``.
- ``page_bytes``: ``save_html`` size for one embedded input, for the example's CNN at three widths, with the
  numbers of parameters and of units (activations) it explains: the page grows with the units, most of all with
  conv units, each of which carries its patch, kernel slice and products.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _timing import BUSY_CELL, latency_summary  # noqa: E402

from tests.e2e.lab import CHROMIUM, FLAGS, KERNELSPEC, Lab, NotebookPage  # noqa: E402

SETUP = """
import torch, torch.nn.functional as F
from torch import nn
from sklearn.datasets import load_digits
import hiddenwidgets as hw
_d = load_digits()
x = torch.tensor(_d.images, dtype=torch.float32).unsqueeze(1) / 16.0
y = torch.tensor(_d.target)
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 10))
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
for _ in range(2):
    for idx in torch.randperm(1500).split(64):
        loss = F.cross_entropy(model(x[idx]), y[idx]); opt.zero_grad(); loss.backward(); opt.step()
view = hw.NetworkExplainer(model.eval(), x[1500:1512], class_names=[str(d) for d in range(10)])
view
"""
def strokes(page, count: int, seed: int) -> list[float]:
    import random

    rng = random.Random(seed)
    page.evaluate("() => performance.clearMeasures('hw-explainer-update')")
    pad = page.locator(".hw-nx .hw-drawpad").first
    pad.scroll_into_view_if_needed()
    box = pad.bounding_box()
    for _ in range(count):
        x0, y0 = rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.3)
        page.mouse.move(box["x"] + x0 * box["width"], box["y"] + y0 * box["height"])
        page.mouse.down()
        for k in range(1, 6):  # a stroke down, 5 moves ~20 ms apart: throttled to one request in flight
            page.mouse.move(box["x"] + x0 * box["width"], box["y"] + (y0 + 0.1 * k) * box["height"])
            page.wait_for_timeout(20)
        page.mouse.up()
        page.wait_for_function("() => document.querySelector('.hw-nx').dataset.idle === 'true'", timeout=30_000)
    return page.evaluate("() => performance.getEntriesByName('hw-explainer-update').map((e) => e.duration)")


def show_drawing_reference(count: int, busy: bool = False) -> dict:
    import threading

    import numpy as np
    import torch
    from torch import nn

    import hiddenwidgets as hw

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(64, 10)).eval()
    view = hw.NetworkExplainer(model, torch.rand(12, 1, 8, 8))
    rng = np.random.default_rng(0)
    stop = threading.Event()

    def spin() -> None:  # a busy cell's main thread: pure Python, holding the GIL whenever it can
        n = 0
        while not stop.is_set():
            n += 1

    spinner = threading.Thread(target=spin, daemon=True)
    if busy:
        spinner.start()
    times = []
    try:
        for _ in range(count):
            ink = (rng.random((8, 8)) > 0.7).astype(np.float32)
            t = time.perf_counter()
            view.show_drawing(ink)
            times.append((time.perf_counter() - t) * 1000)
    finally:
        stop.set()
    return latency_summary(times)


def python_figures(tree: str, count: int, threads: int | None = None) -> list[dict]:
    """show_drawing_ms idle and busy for the package at ``tree``, in a subprocess of its own; ``threads``: torch's
    intra-op threads in that process (None: torch's default, one per core)."""
    import subprocess

    code = (f"import sys, json; sys.path.insert(0, {tree!r}); sys.path.insert(1, {str(ROOT / 'benchmarks')!r});"
            "import torch, hiddenwidgets, explainer as b; "
            + (f"torch.set_num_threads({threads}); " if threads else "")
            + f"print(json.dumps([b.show_drawing_reference({count}, False), b.show_drawing_reference({count}, True),"
            " torch.get_num_threads()]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    idle, busy, n = json.loads(out.strip().splitlines()[-1])
    return [{"figure": "show_drawing_ms", "tree": tree, "torch_threads": n, "kernel": "idle", **idle},
            {"figure": "show_drawing_ms", "tree": tree, "torch_threads": n,
             "kernel": "busy (a pure-Python thread spins)", **busy}]


def page_sizes() -> list[dict]:
    import torch
    from torch import nn

    import hiddenwidgets as hw

    rows = []
    for width in (4, 8, 16):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                              nn.Linear(8 * width, 10)).eval()
        view = hw.NetworkExplainer(model, torch.rand(4, 1, 8, 8))
        with tempfile.TemporaryDirectory() as folder:
            size = view.save_html(Path(folder) / "p.html").stat().st_size
        units = sum(s.output.numel() for s in view.trace.steps)
        params = sum(p.numel() for p in model.parameters())
        rows.append({"figure": "page_bytes", "width": width, "inputs": 1, "bytes": size, "parameters": params,
                     "units": units, "bytes_per_unit": round(size / units, 1)})
    return rows


def measure(page, notebook, busy_cell: int, count: int, seed: int, busy: bool) -> dict:
    """``count`` strokes on the view in ``page``; with ``busy``, while ``busy_cell`` keeps the kernel busy."""
    if busy:
        notebook.run_cell(busy_cell)
        page.wait_for_function(f"() => window.jupyterapp.shell.currentWidget.content.widgets[{busy_cell}]"
                               ".outputArea.node.innerText.includes('HWBUSY started')", timeout=30_000)
    page.evaluate("() => performance.clearMeasures('hw-explainer-redraw')")
    times = strokes(page, count, seed)
    redraw = page.evaluate("() => performance.getEntriesByName('hw-explainer-redraw').map((e) => e.duration)")
    row = {"figure": "stroke_to_overview_ms", "kernel": "busy" if busy else "idle", **latency_summary(times)}
    if redraw:
        row["redraw_ms"] = latency_summary(redraw)
    if busy:
        row["busy_throughout"] = notebook.busy(busy_cell)
        page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.interrupt()")
        notebook.wait_done(busy_cell, 60)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strokes", type=int, default=40, help="strokes per kernel state (and round)")
    parser.add_argument("--busy-s", type=float, default=120)
    parser.add_argument("--no-browser", action="store_true", help="only the figures without JupyterLab")
    parser.add_argument("--compare", default=None, help="another hiddenwidgets checkout, measured side by side")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds with --compare")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch.set_num_threads(N) in the notebooks' kernels, as example 08 does (0: torch's "
                        "default, one per core)")
    args = parser.parse_args()
    trees = [str(ROOT)] + ([str(Path(args.compare).resolve())] if args.compare else [])
    if args.no_browser:
        for r in range(args.rounds):
            for tree in (trees if r % 2 == 0 else trees[::-1]):
                for threads in (None, 1):
                    for row in python_figures(tree, 100, threads):
                        print(json.dumps({**row, "round": r}), flush=True)
        for row in page_sizes():
            print(json.dumps(row), flush=True)
        return
    from playwright.sync_api import sync_playwright

    root = Path(tempfile.mkdtemp(prefix="hw-bench-explainer-"))
    for k, tree in enumerate(trees):
        threads = f"import torch; torch.set_num_threads({args.threads})\n" if args.threads else ""
        cells = [f"import sys; sys.path.insert(0, {tree!r})\n" + threads + SETUP, BUSY_CELL.format(busy_s=args.busy_s)]
        nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": KERNELSPEC},
              "cells": [{"cell_type": "code", "id": f"cell{i}", "metadata": {}, "source": src, "outputs": [],
                         "execution_count": None} for i, src in enumerate(cells)]}
        (root / f"bench{k}.ipynb").write_text(json.dumps(nb))
    lab = Lab(root)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            errors: list[str] = []
            pages = []
            for k, tree in enumerate(trees):
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.on("pageerror", lambda e: errors.append(str(e)))
                notebook = NotebookPage(page, lab, f"bench{k}.ipynb", f"bench{k}")
                notebook.run_and_wait(0, 300)
                page.wait_for_selector(".hw-nx[data-ready='true'] .hw-drawpad", timeout=30_000)
                strokes(page, 3, 0)  # warm-up
                pages.append((tree, page, notebook))
            for r in range(args.rounds):
                for busy in (False, True):
                    for tree, page, notebook in (pages if r % 2 == 0 else pages[::-1]):
                        page.bring_to_front()
                        row = measure(page, notebook, 1, args.strokes, 1 + r * 2 + busy, busy)
                        print(json.dumps({**row, "tree": tree, "round": r, "torch_threads": args.threads or "default"}),
                              flush=True)
            if errors:
                print(json.dumps({"figure": "page_errors", "errors": errors}), flush=True)
            browser.close()
    finally:
        lab.stop()


if __name__ == "__main__":
    main()
