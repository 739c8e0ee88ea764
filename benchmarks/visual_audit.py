"""Issue 13's figures: per view × layout (1400/800/400 px, light/dark) of every example's static pages, the number
of overflow findings, overlapping label pairs and text contrast failures; then the totals and the categorical
palette's smallest CIEDE2000 difference under normal vision, deuteranopia and protanopia. JSON lines.

    python benchmarks/visual_audit.py                           # this checkout
    python benchmarks/visual_audit.py --repo ../wt-visual-system  # another checkout's package and front end
    python benchmarks/visual_audit.py --pages artifacts/visual/pages --shots /tmp/shots   # reuse built pages

The examples run headless, shortened (tests/e2e/visual.py QUICK), with ``--repo`` first on the kernel's
PYTHONPATH so its package and its built bundle in hiddenwidgets/static are the ones rendered. Checks as in
tests/e2e/test_visual.py (needs Chromium at /usr/bin/chromium and playwright).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, default=HERE, help="checkout whose package and js/ are audited")
    ap.add_argument("--pages", type=Path, help="reuse static pages built earlier (a folder with NN.json manifests)")
    ap.add_argument("--pages-out", type=Path, help="where built pages go (default: a temporary folder)")
    ap.add_argument("--shots", type=Path, help="where screenshots go (default: a temporary folder)")
    ap.add_argument("--examples", nargs="*", help="example notebook stems (default: all)")
    ap.add_argument("--details", action="store_true", help="print each finding, not only the counts")
    a = ap.parse_args()
    repo = a.repo.resolve()
    # the kernels (and this process) import the audited checkout's package
    os.environ["PYTHONPATH"] = os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    sys.path.insert(0, str(HERE))
    visual = importlib.import_module("tests.e2e.visual")
    cs = importlib.import_module("tests.colour_science")
    lab = importlib.import_module("tests.e2e.lab")

    shots = a.shots or Path(tempfile.mkdtemp(prefix="hw-visual-shots-"))
    shots.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if a.pages:
        pages = a.pages
        runs = {n: {"seconds": 0, "error": None,
                    "views": json.loads((pages / f"{visual.example_id(n)}.json").read_text())}
                for n in (a.examples or visual.QUICK) if (pages / f"{visual.example_id(n)}.json").exists()}
    else:
        pages = a.pages_out or Path(tempfile.mkdtemp(prefix="hw-visual-pages-"))
        runs = visual.build_gallery(pages, a.examples)
    gallery_s = time.perf_counter() - t0
    for name, run in runs.items():
        print(json.dumps({"example": name, "gallery_s": run["seconds"], "views": len(run["views"]),
                          "error": run["error"]}), flush=True)

    from playwright.sync_api import sync_playwright

    t1 = time.perf_counter()
    records, errors = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=lab.CHROMIUM, args=lab.FLAGS)
        for run in runs.values():
            for v in run["views"]:
                if not v["page"]:
                    errors.append(f"{v['view']}: {v['error']}")
                    continue
                for r in visual.audit_static_page(browser, pages / v["page"], v["view"], shots, errors):
                    records.append(r)
                    line = {"view": r["view"], "width": r["width"], "theme": r["theme"], **visual.counts(r)}
                    if a.details:
                        line["findings"] = {k: r[k] for k in ("overflow", "overlaps", "contrast", "graphics")}
                    print(json.dumps(line), flush=True)
        browser.close()
    audit_s = time.perf_counter() - t1

    hexes, source = cs.categorical_palette(repo)
    colours = [cs.parse_hex(h) for h in hexes[:12]]
    palette = {"source": source, "n": len(colours)}
    for kind in ("normal", "deuteranopia", "protanopia", "tritanopia"):
        d, i, j = cs.min_pairwise_delta_e(colours, kind)
        palette[kind] = {"min_delta_e00": round(d, 2), "pair": [hexes[i], hexes[j]]}
    total = visual.totals(records)
    total.update(repo=str(repo), page_errors=errors, gallery_s=round(gallery_s, 1), audit_s=round(audit_s, 1),
                 palette=palette, shots=str(shots))
    print(json.dumps({"totals": total}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
