"""Run an example notebook headless (no browser) and keep what it writes.

    python tools/run_example.py examples/01_live_training.ipynb --out artifacts

Executes the notebook with nbclient in the folder ``--out`` (so ``monitor.save_html(...)`` lands there), saves
the executed notebook next to it (widget state included), and prints the files written and the run time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def run(notebook: Path, out: Path, timeout: int = 600, *, first: str | None = None, last: str | None = None) -> dict:
    """Execute ``notebook`` in ``out``; ``first``/``last``: code run before the first and after the last cell (the
    tests use them to keep every view's static page for the visual suite), not saved in the executed notebook."""
    out.mkdir(parents=True, exist_ok=True)
    nb = nbformat.read(notebook, as_version=4)
    cells = list(nb.cells)
    nb.cells = ([nbformat.v4.new_code_cell(first)] if first else []) + cells + (
        [nbformat.v4.new_code_cell(last)] if last else [])
    before = {p.name for p in out.iterdir()}
    t0 = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(out)}},
                   store_widget_state=True).execute()
    seconds = time.perf_counter() - t0
    nb.cells = nb.cells[1 if first else 0:len(nb.cells) - (1 if last else 0)]
    executed = out / f"{notebook.stem}.executed.ipynb"
    nbformat.write(nb, executed)
    written = sorted({p.name for p in out.iterdir()} - before | {executed.name})
    return {"seconds": round(seconds, 1), "written": written, "out": str(out)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebook", type=Path)
    ap.add_argument("--out", type=Path, default=Path("artifacts"))
    ap.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    a = ap.parse_args()
    if not a.notebook.exists():
        print(f"no such notebook: {a.notebook}", file=sys.stderr)
        return 2
    report = run(a.notebook, a.out, a.timeout)
    print(f"ran {a.notebook} in {report['seconds']} s; wrote {', '.join(report['written'])} in {report['out']}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
