"""How long a change made in the ConceptAnnotator's view takes to be durable on disk, through the real widget path.

    python benchmarks/concept_saves.py [--changes 40] [--busy-s 120]

Starts JupyterLab (headless Debian Chromium via Playwright, as tests/e2e does), runs a notebook that shows one
annotator over 300 scikit-learn digits with one concept, selects 5 gallery items, then clicks "+ add" and
"− remove" on that concept in turn, one change at a time (the next click only after the previous change was
acknowledged), ``--changes`` times with the kernel idle and as many times while a cell keeps the kernel's main
thread busy (a pure-Python loop; JupyterLab >= 4.4 routes widget messages to a subshell).

The figure is the view's own ``hw-concept-saved`` performance measure: from the moment the operation is created in
the browser (after it is queued and put in localStorage, before it is sent) to the moment the view receives
Python's acknowledgement, which Python sends only after the change was committed to the annotation database (one
SQLite transaction, WAL, ``synchronous=FULL``). After each acknowledgement this process reads the database through
its own connection and checks that it already holds the change (``on_disk_at_ack``: how many did).

Prints JSON lines: an ``environment`` line, then for each kernel state
``{"figure": "concept_saved_ms", "kernel": "idle"|"busy", "median", "p95", "min", "max", "n", "on_disk_at_ack"}``,
and for reference ``store_apply_ms``: the same add/remove applied directly to a ConceptStore in this process (the
transaction + fsync cost alone, no browser or kernel), on the same filesystem.
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

FILE = "concepts.db"
MEMBERS = [1, 2, 3, 4, 5]
SETUP = f"""
from sklearn.datasets import load_digits
import hiddenwidgets as hw
_d = load_digits()
a = hw.ConceptAnnotator({FILE!r}, _d.images[:300, None] / 16.0, _d.target[:300])
a.store.create("bench", [0])
a
"""
def members_on_disk(root: Path) -> list[int]:
    from hiddenwidgets.pipeline.concepts import read_snapshot

    return next(c["members"] for c in read_snapshot(root / FILE)["concepts"] if c["name"] == "bench")


def changes(page, root: Path, count: int, busy: NotebookPage | None = None, busy_cell: int = 0) -> dict:
    """Alternate "+ add" and "− remove" of the selection ``count`` times; returns the view's op->ack times (ms) and
    how many acknowledged changes were already in the file when the acknowledgement arrived."""
    card = page.locator(".hw-ca .hw-ca-concept").first
    durations: list[float] = []
    on_disk = 0
    for k in range(count):
        add = members_on_disk(root) == [0]
        before = page.evaluate("() => performance.getEntriesByName('hw-concept-saved').length")
        card.locator("[data-action=add]" if add else "[data-action=remove]").click()
        page.wait_for_function("(n) => performance.getEntriesByName('hw-concept-saved').length > n", arg=before,
                               timeout=30_000)
        seen = members_on_disk(root)  # read right after the view saw the ack
        durations.append(page.evaluate("() => performance.getEntriesByName('hw-concept-saved').at(-1).duration"))
        on_disk += seen == ([0, *MEMBERS] if add else [0])
        if busy is not None and not busy.busy(busy_cell):
            raise SystemExit(f"the busy cell ended after {k + 1} changes: raise --busy-s")
    return {**latency_summary(durations), "on_disk_at_ack": on_disk}


def store_reference(root: Path, count: int) -> dict:
    from hiddenwidgets.pipeline.concepts import ConceptStore

    store = ConceptStore(root / "reference.db", examples=300)
    store.create("bench", [0])
    durations = []
    for k in range(count):
        t = time.perf_counter()
        store.apply({"kind": "add" if k % 2 == 0 else "remove", "concept": "bench", "members": MEMBERS})
        durations.append((time.perf_counter() - t) * 1000)
    return latency_summary(durations)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=40, help="changes per kernel state (>= 30)")
    parser.add_argument("--busy-s", type=float, default=120, help="length of the busy cell (it is interrupted "
                        "once the changes are measured)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    root = Path(tempfile.mkdtemp(prefix="hw-bench-concepts-"))
    cells = [SETUP, BUSY_CELL.format(busy_s=args.busy_s)]
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": KERNELSPEC},
          "cells": [{"cell_type": "code", "id": f"cell{i}", "metadata": {}, "source": src, "outputs": [],
                     "execution_count": None} for i, src in enumerate(cells)]}
    (root / "bench.ipynb").write_text(json.dumps(nb))
    lab = Lab(root)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            notebook = NotebookPage(page, lab, "bench.ipynb", "bench")
            notebook.run_and_wait(0, 180)
            page.wait_for_selector('.hw-ca .hw-ca-item[data-index="5"] canvas', timeout=30_000)
            versions = page.evaluate("() => window.jupyterapp.version")
            import ipykernel

            print(json.dumps({"figure": "environment", "jupyterlab": versions, "ipykernel": ipykernel.__version__,
                              "browser": browser.version, "folder": str(root)}), flush=True)
            view = page.locator(".hw-ca").first
            for i in MEMBERS:
                view.locator(f'.hw-ca-item[data-index="{i}"]').click()
            changes(page, root, 4)  # warm-up: first sends, first writes

            idle = changes(page, root, args.changes)
            print(json.dumps({"figure": "concept_saved_ms", "kernel": "idle", **idle}), flush=True)

            notebook.run_cell(1)
            page.wait_for_function("() => window.jupyterapp.shell.currentWidget.content.widgets[1]"
                                   ".outputArea.node.innerText.includes('HWBUSY started')", timeout=30_000)
            busy = changes(page, root, args.changes, notebook, 1)
            print(json.dumps({"figure": "concept_saved_ms", "kernel": "busy", **busy}), flush=True)
            page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.interrupt()")
            notebook.wait_done(1, 60)
            if errors:
                print(json.dumps({"figure": "page_errors", "errors": errors}), flush=True)
            browser.close()
    finally:
        lab.stop()
    print(json.dumps({"figure": "store_apply_ms", "where": "this process, no browser or kernel",
                      **store_reference(root, args.changes)}), flush=True)


if __name__ == "__main__":
    main()
