"""Views in course materials, end to end, in Chromium with every network request aborted and recorded:

1. a notebook executed by nbclient (widget state saved) converted by ``jupyter nbconvert --to hiddenwidgets``: each
   view draws in its frame, the core ipywidget is a note, nothing is fetched;
2. save_html pages of two views in iframes of a parent page with ``embed_snippet()``: each iframe is as tall as
   its page, after load and after the parent's width changes, with no scroll bar inside;
3. a Sphinx + MyST-NB site built from that notebook and a save_html page (tools/build_site.py): the views draw on
   the notebook's page and on the index page, nothing is fetched.

Prints one ``COURSE {...}`` line of figures (page and notebook sizes, the site's build time).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

NOTEBOOK = [
    "import ipywidgets\nimport torch\nfrom torch import nn\n\nimport hiddenwidgets as hw\n\ntorch.manual_seed(0)\n"
    "model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))\n"
    "monitor = hw.ActivationMonitor(model, ['0', '1'], every=1, title='Tiny MLP')\nmonitor",
    "opt = torch.optim.SGD(model.parameters(), lr=0.1)\nfor step in range(40):\n"
    "    loss = model(torch.randn(32, 6)).pow(2).mean()\n    opt.zero_grad(); loss.backward(); opt.step()\n"
    "    monitor.step(loss=loss)",
    "g = torch.Generator().manual_seed(1)\n"
    "proj = hw.Projector({'hidden': torch.randn(60, 8, generator=g), 'out': torch.randn(60, 3, generator=g)},\n"
    "                    labels=torch.arange(60) % 3, examples=torch.rand(60, 1, 8, 8, generator=g),\n"
    "                    title='Projector </script><b>not bold</b>')\nproj",
    "ipywidgets.IntSlider(3, description='a core widget')",
]
CANVAS_INK = """() => [...document.querySelectorAll('#hw-root canvas')].map((c) => {
  if (!c.width || !c.height) return 0;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let ink = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i] > 0) ink++;
  return ink;
})"""
INSIDE = """() => {
  const html = document.documentElement;
  return {content: html.getBoundingClientRect().height, scroll: html.scrollHeight - window.innerHeight,
          wide: html.scrollWidth - window.innerWidth, rendered: document.querySelector('#hw-root')?.dataset.rendered};
}"""
LOCAL = ("file:", "blob:", "data:", "about:")


@pytest.fixture(scope="module")
def executed(tmp_path_factory, e2e_ready):
    """The notebook, executed as a course build does: nbclient, widget state saved, page data kept."""
    from nbclient import NotebookClient

    from hiddenwidgets.widgets._base import STATIC_STATE_ENV

    folder = tmp_path_factory.mktemp("course")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Views offline"),
                                         *(nbformat.v4.new_code_cell(c) for c in NOTEBOOK)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    env = dict(os.environ)
    os.environ[STATIC_STATE_ENV] = "1"
    os.environ["OMP_NUM_THREADS"] = "1"  # small tensors: a second torch thread only spin-waits on a shared machine
    try:
        NotebookClient(nb, timeout=120, kernel_name="python3", store_widget_state=True,
                       resources={"metadata": {"path": str(folder)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(env)
    path = folder / "views.ipynb"
    nbformat.write(nb, path)
    return path


def offline_page(browser, errors: list[str], requests: list[str], viewport: dict | None = None):
    page = browser.new_page(viewport=viewport or {"width": 1200, "height": 900})
    page.on("request", lambda r: requests.append(r.url))
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(LOCAL) else route.abort())
    page.on("pageerror", lambda e: errors.append(str(e)))
    return page


def view_frames(page, count: int) -> list:
    page.wait_for_function(f"() => document.querySelectorAll('iframe.hiddenwidgets-view').length === {count}")
    frames = [f.content_frame() for f in page.query_selector_all("iframe.hiddenwidgets-view")]
    for frame in frames:
        frame.wait_for_selector('#hw-root[data-rendered="true"]', timeout=20_000)
    return frames


def assert_drawn(frame, what: str) -> None:
    frame.wait_for_function(f"() => ({CANVAS_INK})().some((n) => n > 200)", timeout=20_000)
    assert len(frame.inner_text("#hw-root")) > 20, what


def sizes(page) -> list[dict]:
    """Per iframe: its height in the parent, and its page's content height and overflow (Playwright reaches into
    file:// frames, which the parent's script may not)."""
    got = []
    for element in page.query_selector_all("iframe"):
        inside = element.content_frame().evaluate(INSIDE)
        got.append({"frame": element.bounding_box()["height"], **inside})
    return got


def assert_sized(page, timeout: float = 15) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        got = sizes(page)
        ok = all(h["rendered"] == "true" and abs(h["frame"] - h["content"]) <= 3 and h["scroll"] <= 1
                 and h["wide"] <= 1 for h in got)
        if ok or time.monotonic() > deadline:
            break
        page.wait_for_timeout(100)
    assert ok, got
    return got


def test_converted_notebook_draws_every_view_offline(browser, executed, tmp_path, artifacts):
    nb = nbformat.read(executed, as_version=4)
    states = nb.metadata.widgets["application/vnd.jupyter.widget-state+json"]["state"]
    kept = {s["state"]["_anywidget_id"].rsplit(".", 1)[1]: _page_state_bytes(s)
            for s in states.values() if "_anywidget_id" in s["state"]}
    assert kept["Projector"] > 0 and kept["ActivationMonitor"] == 0  # the projector's thumbnails etc. were kept
    out = tmp_path / "views.html"
    from nbconvert.nbconvertapp import NbConvertApp

    app = NbConvertApp()  # `jupyter nbconvert --to hiddenwidgets ...`, in this process (imports once)
    app.initialize(["--to", "hiddenwidgets.nbconvert.OfflineHTMLExporter", str(executed), "--output-dir",
                    str(tmp_path), "--output", "views"])
    app.start()
    errors, requests = [], []
    page = offline_page(browser, errors, requests)
    page.goto(out.as_uri())
    monitor, projector = view_frames(page, 2)
    assert_drawn(monitor, "monitor")
    assert "Tiny MLP" in monitor.inner_text("#hw-root")
    assert_drawn(projector, "projector")
    assert projector.query_selector("#hw-root b") is None  # the hostile title is text
    notes = page.inner_text("body")
    assert "IntSlider" in notes and "needs a running Jupyter kernel" in notes
    assert_sized(page)
    page.screenshot(path=str(artifacts / "course_notebook.png"), full_page=True)
    assert [u for u in requests if not u.startswith(LOCAL)] == [] and errors == []
    print("COURSE " + json.dumps({"converted_page_bytes": out.stat().st_size, "notebook_bytes": executed.stat().st_size,
                                  "page_state_bytes_per_view": kept}))
    page.close()


def _page_state_bytes(entry: dict) -> int:
    state = entry["state"].get("_page_state") or {}
    buffers = [b for b in entry.get("buffers", []) if b["path"][0] == "_page_state"]
    return (len(json.dumps(state)) if state else 0) + sum(len(b["data"]) for b in buffers)


def embedded_pages(folder: Path) -> list[Path]:
    import torch

    import hiddenwidgets as hw

    similarity = hw.SimilarityMatrix({f"layer{i}": torch.randn(40, 4 + i) for i in range(5)}, title="CKA")
    projector = hw.Projector({"h": torch.randn(50, 6)}, labels=torch.arange(50) % 4, title="Projector")
    pages = [similarity.save_html(folder / "cka.html"), projector.save_html(folder / "proj.html")]
    projector.dispose()
    similarity.dispose()
    return pages


def test_embedded_pages_size_their_iframes(browser, tmp_path):
    from hiddenwidgets.pipeline.export import embed_snippet

    pages = embedded_pages(tmp_path)
    parent = tmp_path / "course.html"
    parent.write_text("<!doctype html><html><body style='margin:20px'><h1>Lesson</h1>" + "".join(
        f'<iframe class="hiddenwidgets-view" src="{p.name}" title="{p.stem}" '
        'style="display:block;width:100%;height:300px;border:0"></iframe><p>between</p>' for p in pages)
        + embed_snippet() + "</body></html>", encoding="utf-8")
    errors, requests = [], []
    page = offline_page(browser, errors, requests, {"width": 1100, "height": 800})
    page.goto(parent.as_uri())
    view_frames(page, 2)
    wide = assert_sized(page)
    assert all(h["frame"] != 300 for h in wide)  # both resized from the placeholder height
    page.set_viewport_size({"width": 520, "height": 800})
    page.wait_for_timeout(300)
    narrow = assert_sized(page)
    assert [round(h["frame"]) for h in narrow] != [round(h["frame"]) for h in wide]
    assert [u for u in requests if not u.startswith(LOCAL)] == [] and errors == []
    page.close()


def test_course_site_builds_and_draws_every_view_offline(browser, executed, tmp_path, artifacts):
    pytest.importorskip("myst_nb")
    from build_site import build

    [page_file] = embedded_pages(tmp_path)[:1]
    t0 = time.perf_counter()
    report = build([executed], tmp_path / "site", pages=[page_file], execute=False)
    seconds = time.perf_counter() - t0
    site = Path(report["out"])
    text = (site / "views.html").read_text(encoding="utf-8")
    assert "cdn.jsdelivr" not in text and "unpkg" not in text and "require.min.js" not in text
    errors, requests = [], []
    page = offline_page(browser, errors, requests)
    page.goto((site / "views.html").as_uri())
    monitor, projector = view_frames(page, 2)
    assert_drawn(monitor, "monitor")
    assert_drawn(projector, "projector")
    assert "needs a running Jupyter kernel" in page.inner_text("body")
    assert_sized(page)
    page.screenshot(path=str(artifacts / "course_site.png"), full_page=True)
    page.goto((site / "index.html").as_uri())
    page.wait_for_function("() => document.querySelectorAll('iframe').length === 1")
    frame = page.query_selector("iframe").content_frame()
    frame.wait_for_selector('#hw-root[data-rendered="true"]', timeout=20_000)
    assert_drawn(frame, "embedded page")
    assert_sized(page)
    assert [u for u in requests if not u.startswith(LOCAL)] == [] and errors == []
    print("COURSE " + json.dumps({"site_build_s": round(seconds, 1), "sphinx_s": report["sphinx_s"],
                                  "site_bytes": report["site_bytes"]}))
    page.close()
