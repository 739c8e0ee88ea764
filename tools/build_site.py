"""Build a course site (Sphinx + MyST-NB) from notebooks, with every hiddenwidgets view working offline.

    python tools/build_site.py                                   # examples/*.ipynb -> build/site (make site)
    python tools/build_site.py a.ipynb b.ipynb --out /tmp/site --page monitor.html

1. Each notebook is executed with nbclient in the site's source folder, widget state saved and
   ``HIDDENWIDGETS_STATIC_STATE=1`` for the kernel (so views keep the data they fetch on demand); ``--no-execute``
   takes notebooks as they are (already executed).
2. Sphinx builds the folder with MyST-NB (``nb_execution_mode = "off"``) and ``hiddenwidgets.sphinx``, which turns
   every view into its offline page (see :mod:`hiddenwidgets.nbconvert`). The alabaster theme loads nothing from a
   network; MyST-NB's widget manager (from a CDN) is never added, because no saved widget state is left.
3. ``--page x.html`` (a ``save_html`` page) is copied next to the site and embedded in the index page in an
   ``<iframe>`` that sizes itself (``hw.embed_snippet()``); HTML pages the notebooks write are listed there too.

Prints the build time and the site's size.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CONF = '''# written by tools/build_site.py
project = {title!r}
extensions = ["myst_nb", "hiddenwidgets.sphinx"]
nb_execution_mode = "off"        # executed beforehand, with HIDDENWIDGETS_STATIC_STATE=1 (see tools/build_site.py)
html_theme = "alabaster"         # ships its styles; loads no web fonts
html_extra_path = {extra!r}
html_show_sourcelink = False
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
'''


def build(notebooks: list[Path], out: Path, *, pages: list[Path] = (), execute: bool = True, timeout: int = 600,
          title: str = "hiddenwidgets examples") -> dict:
    """Build the site into ``out`` (replaced); returns timings and sizes."""
    import nbformat
    from nbclient import NotebookClient

    from hiddenwidgets.pipeline.export import embed_snippet
    from hiddenwidgets.widgets._base import STATIC_STATE_ENV

    src = out.parent / f"{out.name}-src"
    for folder in (src, out):
        if folder.exists():
            shutil.rmtree(folder)
    src.mkdir(parents=True)
    t0 = time.perf_counter()
    names = []
    env_before = os.environ.get(STATIC_STATE_ENV)
    os.environ[STATIC_STATE_ENV] = "1"  # the kernels inherit it
    try:
        for path in notebooks:
            nb = nbformat.read(path, as_version=4)
            if execute:
                NotebookClient(nb, timeout=timeout, kernel_name="python3", store_widget_state=True,
                               resources={"metadata": {"path": str(src)}}).execute()
            nbformat.write(nb, src / path.name)
            names.append(path.stem)
    finally:
        if env_before is None:
            os.environ.pop(STATIC_STATE_ENV, None)
        else:
            os.environ[STATIC_STATE_ENV] = env_before
    executed = time.perf_counter() - t0
    for page in pages:
        shutil.copy(page, src / page.name)
    extra = sorted(p.name for p in src.glob("*.html"))
    embeds = "\n".join(
        f"### {name}\n\n```{{raw}} html\n<iframe src=\"{name}\" title=\"{name}\" "
        "style=\"display:block;width:100%;height:480px;border:0\"></iframe>\n```\n" for name in extra)
    index = (f"# {title}\n\n```{{toctree}}\n:maxdepth: 1\n\n" + "\n".join(names) + "\n```\n\n"
             + (f"## Offline pages\n\nEach view's `save_html` page, embedded in an iframe that sizes itself.\n\n"
                f"{embeds}\n```{{raw}} html\n{embed_snippet()}\n```\n" if extra else ""))
    (src / "index.md").write_text(index, encoding="utf-8")
    (src / "conf.py").write_text(CONF.format(title=title, extra=extra), encoding="utf-8")
    t1 = time.perf_counter()
    from sphinx.cmd.build import build_main  # in this process: hiddenwidgets and torch are imported once

    status = build_main(["-b", "html", "-q", "-W", "--keep-going", str(src), str(out)])
    if status != 0:
        raise RuntimeError(f"sphinx-build failed (exit status {status}; its messages are above)")
    built = time.perf_counter() - t1
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {"execute_s": round(executed, 1), "sphinx_s": round(built, 1), "site_bytes": size, "out": str(out),
            "pages": names, "embedded": extra}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebooks", nargs="*", type=Path, help="default: examples/*.ipynb")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "site")
    ap.add_argument("--page", action="append", type=Path, default=[], help="a save_html page to embed (repeat)")
    ap.add_argument("--no-execute", action="store_true", help="the notebooks are executed already")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    a = ap.parse_args()
    notebooks = a.notebooks or sorted((ROOT / "examples").glob("*.ipynb"))
    missing = [str(p) for p in [*notebooks, *a.page] if not p.exists()]
    if missing:
        print(f"no such file(s): {', '.join(missing)}", file=sys.stderr)
        return 2
    report = build(notebooks, a.out, pages=a.page, execute=not a.no_execute, timeout=a.timeout)
    print(f"built {len(report['pages'])} notebook page(s) in {report['out']}: executing {report['execute_s']} s, "
          f"sphinx {report['sphinx_s']} s, {report['site_bytes'] / 1e6:.1f} MB; open {report['out']}/index.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
