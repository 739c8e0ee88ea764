"""The visual audit behind tests/e2e/test_visual.py and benchmarks/visual_audit.py (issue 13).

Every view of every example is rendered as its ``save_html`` page (examples run headless with nbclient, shortened
where they train, see ``QUICK``) and opened in Chromium at 1400, 800 and 400 px, light and dark
(``prefers-color-scheme``). For each page and layout the audit

- screenshots it to ``artifacts/visual/<example>-<view>-<width>-<theme>.png``;
- **overflow**: the view root wider than its container, content wider than the view root (scrollWidth), any
  element reaching past the view's right/left edge, and text cut by an ``overflow: hidden`` ancestor;
- **overlap**: pairs of text labels whose boxes intersect (elements whose class contains ``label``, ``tick`` or
  ``title``, SVG ``<text>``; text drawn on canvases, recorded by instrumenting ``fillText``/``strokeText``
  (``CANVAS_HOOK``) so no view has to cooperate; and, for canvases the hook saw nothing on, the boxes a view
  exposes as ``root.__hwLabelBoxes = [{text, x, y, w, h, color?}]`` in viewport CSS pixels);
- **contrast**: every visible text node's colour against its effective background (the first opaque background
  up the stack under the text; canvas pixels when the text lies on a canvas) by the WCAG 2.x formula: at least
  4.5:1, or 3:1 for large text (≥ 24 px, or ≥ 18.66 px bold) as WCAG AA allows; text of disabled controls is
  exempt (WCAG 1.4.3), and so are symbols without a letter or digit ("■" legend swatches): WCAG counts those as
  graphics (1.4.11, 3:1), which the audit reports under ``graphics`` without failing on them.

Only text shown on screen is judged for contrast: inside the viewport and every clipping ancestor, with the view
itself painted at its centre (text scrolled out of JupyterLab's notebook panel lies under the tab bar or the
status bar, which is not its background).

The JupyterLab pass (``audit_in_lab``) runs the same checks on the views of a notebook that an e2e test has
already run, at 800 px, in the light and the dark theme, scrolling each output through the notebook panel so
that every part of it is judged where it is shown, and leaves its record for test_visual.py.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..colour_science import contrast_ratio
from .lab import JupyterServer

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("HW_ARTIFACTS", ROOT / "artifacts"))
SESSION_START = time.time()  # lab records older than this process belong to an earlier run
WIDTHS = (1400, 800, 400)
THEMES = ("light", "dark")
LAB_WIDTH = 800
TALL = 3000  # viewport height for static pages (px)

# Shortened runs of the examples (the views and their labels are the examples'; only training is shorter). Each
# old string must occur in the notebook, so an edited example fails loudly here instead of silently running long.
QUICK: dict[str, dict[str, str]] = {
    "01_live_training": {"EPOCHS = 120": "EPOCHS = 6", "run_in_background(more_training, 5)":
                         "run_in_background(more_training, 1)"},
    "02_attribution": {"for _ in range(20):": "for _ in range(4):"},
    "03_information_plane": {"EPOCHS = 3000": "EPOCHS = 80", "train(relu_net, relu_plane, 1000)":
                             "train(relu_net, relu_plane, 40)"},
    "04_representations": {"EPOCHS = 12": "EPOCHS = 3"},
    "05_pretrained_transformer": {},
    "06_concepts": {"for epoch in range(11):": "for epoch in range(3):", "RECORD = {0, 1, 3, 6, 10}":
                    "RECORD = {0, 2}", "random_sets=10": "random_sets=5"},
    "07_feature_visualization": {"for _epoch in range(6):": "for _epoch in range(3):", "steps=64": "steps=24"},
    "08_course_explainer": {"for _epoch in range(8):": "for _epoch in range(2):"},
    "09_transformers": {"STEPS = 300": "STEPS = 40", "steps=150": "steps=20"},
}

# first cell: remember every view the notebook creates, in order (displayed or not). A view is recorded when its
# outermost __init__ returns: one whose construction raised (a refused model) is not a view and has no page to audit.
RECORD_VIEWS = """
import hiddenwidgets.widgets
import hiddenwidgets.widgets._base as _hw_base
_hw_views, _hw_depth = [], [0]
def _hw_wrap(cls):
    init = cls.__dict__.get("__init__")
    if init is not None:
        def _hw_init(self, *args, _init=init, **kwargs):
            _hw_depth[0] += 1
            try:
                _init(self, *args, **kwargs)
            finally:
                _hw_depth[0] -= 1
            if _hw_depth[0] == 0 and not any(v is self for v in _hw_views):
                _hw_views.append(self)
        cls.__init__ = _hw_init
    for sub in cls.__subclasses__():
        _hw_wrap(sub)
_hw_wrap(_hw_base.HiddenWidget)
"""

# last cell: write every view's static page; a view that cannot be written is recorded with its error
SAVE_VIEWS = """
import json as _json
from pathlib import Path as _Path
_out, _seen, _manifest = _Path({out!r}), {{}}, []
_out.mkdir(parents=True, exist_ok=True)
for _v in _hw_views:
    _n = _v._view_file
    _seen[_n] = _seen.get(_n, 0) + 1
    _name = "{example}-" + _n + ("" if _seen[_n] == 1 else f"-{{_seen[_n]}}")
    try:
        _v.save_html(_out / (_name + ".html"))
        _manifest.append({{"view": _name, "page": _name + ".html", "error": None}})
    except Exception as _e:
        _manifest.append({{"view": _name, "page": None, "error": f"{{type(_e).__name__}}: {{_e}}"}})
(_out / "{example}.json").write_text(_json.dumps(_manifest))
print("HWVIEWS", len(_manifest))
"""


# in a live kernel (JupyterLab) without RECORD_VIEWS: the views whose comms were opened, i.e. that were displayed
LIVE_VIEWS = """
import ipywidgets.widgets.widget as _hw_ipw
from hiddenwidgets.widgets._base import HiddenWidget as _HWBase
_hw_views = [w for w in list(_hw_ipw._instances.values()) if isinstance(w, _HWBase)]
"""


def example_id(name: str) -> str:
    return name.split("_", 1)[0]


def build_gallery(out: Path, examples: list[str] | None = None, *, quick: bool = True,
                  timeout: int = 600) -> dict[str, dict]:
    """Run each example headless in a scratch folder and write every view's static page into ``out``, with a
    manifest ``<NN>.json`` per example. Returns {example: {"seconds", "views": [...], "error"}}."""
    import nbformat
    from nbclient import NotebookClient

    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, dict] = {}
    for name in list(QUICK) if examples is None else examples:
        ex = example_id(name)
        nb = nbformat.read(ROOT / "examples" / f"{name}.ipynb", as_version=4)
        for old, new in (QUICK[name] if quick else {}).items():
            hits = [c for c in nb.cells if c.cell_type == "code" and old in c.source]
            if not hits:
                raise AssertionError(f"examples/{name}.ipynb no longer contains {old!r}; update QUICK in "
                                     f"{Path(__file__).name}")
            for cell in hits:
                cell.source = cell.source.replace(old, new)
        nb.cells.insert(0, nbformat.v4.new_code_cell(RECORD_VIEWS))
        nb.cells.append(nbformat.v4.new_code_cell(SAVE_VIEWS.format(out=str(out.resolve()), example=ex)))
        work = Path(tempfile.mkdtemp(prefix=f"hw-visual-{ex}-"))
        t0 = time.perf_counter()
        error = None
        try:
            NotebookClient(nb, timeout=timeout, kernel_name="python3",
                           resources={"metadata": {"path": str(work)}}).execute()
        except Exception as err:  # the example itself failed: say so, audit what there is
            error = f"{type(err).__name__}: {str(err)[-600:]}"
        manifest = out / f"{ex}.json"
        views = json.loads(manifest.read_text()) if manifest.exists() and error is None else []
        report[name] = {"seconds": round(time.perf_counter() - t0, 1), "views": views, "error": error}
    return report


# Installed before any view code runs (page.add_init_script): records the text each 2-D canvas draws (fillText /
# strokeText) with its box after the current transform (4 corners in canvas pixels), its fill colour and
# globalAlpha. A canvas's record is emptied when it is resized or cleared/filled edge to edge, so it holds what
# the canvas shows now. The audit reads it as `canvas.__hwDrawnText`.
CANVAS_HOOK = (Path(__file__).parent / "visual_canvas_hook.js").read_text(encoding="utf-8")

# --------------------------------------------------------------------------------------------------------------
# the in-page audit: one function, run with page.evaluate(AUDIT_JS, container_selector)

AUDIT_JS = (Path(__file__).parent / "visual_audit.js").read_text(encoding="utf-8")


@dataclass
class Layout:
    view: str
    width: int | str
    theme: str

    @property
    def name(self) -> str:
        return f"{self.view}-{self.width}-{self.theme}"


def _hex(text: str) -> tuple[int, int, int]:
    return (int(text[1:3], 16), int(text[3:5], 16), int(text[5:7], 16))


def judge(raw: list[dict]) -> dict:
    """Turn the in-page measurements into findings: contrast ratios checked against WCAG AA. ``raw`` may hold
    several measurements of one view (audit_in_lab scrolls a tall output through JupyterLab's panel): a text seen
    in more than one (same text, element and place in the view) is judged once."""
    overflow, overlaps, contrast, graphics = [], [], [], []
    seen: set[tuple] = set()
    for view in raw:
        overflow += view["overflow"]
        overlaps += view["overlaps"]
        for t in view["text"]:
            key = (t["text"], t["element"], tuple(t.get("at") or ()), t["fg"], t["bg"])
            if key in seen:
                continue
            seen.add(key)
            ratio = contrast_ratio(_hex(t["fg"]), _hex(t["bg"]))
            if t.get("glyph"):
                # no letter or digit ("■", "●", "▸"): a symbol drawn with a font, e.g. a legend swatch in the
                # class's colour. WCAG treats it as a graphical object (1.4.11, 3:1, and only where nothing else
                # carries its meaning), not as text: reported, not counted as a text contrast failure
                if ratio < 3.0:
                    graphics.append({**t, "ratio": round(ratio, 2), "required": 3.0})
                continue
            large = t["px"] >= 24 or (t["bold"] and t["px"] >= 18.66)
            need = 3.0 if large else 4.5
            if ratio < need:
                contrast.append({**t, "ratio": round(ratio, 2), "required": need})
    return {"overflow": overflow, "overlaps": overlaps, "contrast": contrast, "graphics": graphics,
            "texts_judged": len(seen),
            "roots": list({(v["root"], v["width"], v["container"]): {"root": v["root"], "width": v["width"],
                                                                  "container": v["container"]} for v in raw}.values())}


SETTLE_JS = """async () => {
  // wait until nothing was drawn and the DOM did not change for two frames in a row (CANVAS_HOOK counts both;
  // without the hook, two frames); at most 3 s, for views that animate
  const t0 = performance.now();
  let last = -1, calm = 0;
  while (performance.now() - t0 < 3000) {
    await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 40)));
    const n = window.__hwActivity || 0;
    if (n === last) { if (++calm >= 2) return; } else { calm = 0; last = n; }
  }
}"""


def settle(page) -> None:
    """Let ResizeObserver callbacks, redraws and data arriving in steps finish (see SETTLE_JS)."""
    page.evaluate(SETTLE_JS)


def audit_static_page(browser, page_path: Path, view: str, shots: Path, errors: list[str]) -> list[dict]:
    """Open one save_html page at every width and theme; returns one record per layout."""
    records = []
    page = browser.new_page(viewport={"width": WIDTHS[0], "height": TALL})
    page.add_init_script(CANVAS_HOOK)
    page.on("pageerror", lambda e: errors.append(f"{view}: {e}"))
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(("file:", "blob:"))
               else route.abort())
    for theme in THEMES:  # a fresh load per theme: the view starts in the theme, as a reader's page would
        page.set_viewport_size({"width": WIDTHS[0], "height": TALL})
        page.emulate_media(color_scheme=theme)
        page.goto(page_path.as_uri())
        page.wait_for_selector('#hw-root[data-rendered]', state="attached", timeout=30_000)
        rendered = page.get_attribute("#hw-root", "data-rendered")
        for width in WIDTHS:
            # a tall viewport, so every part of the view is on screen for elementsFromPoint; the screenshot is
            # clipped to the content
            page.set_viewport_size({"width": width, "height": TALL})
            settle(page)
            layout = Layout(view, width, theme)
            height = page.evaluate("() => Math.ceil(document.body.getBoundingClientRect().bottom + 16)")
            if height <= TALL:
                page.screenshot(path=str(shots / f"{layout.name}.png"),
                                clip={"x": 0, "y": 0, "width": width, "height": max(height, 100)})
            else:
                page.screenshot(path=str(shots / f"{layout.name}.png"), full_page=True)
            found = judge(page.evaluate(AUDIT_JS, "#hw-root")) if rendered == "true" else {
                "overflow": [], "overlaps": [], "contrast": [], "graphics": [], "roots": []}
            if rendered != "true":
                errors.append(f"{view}: the static page did not render: {page.inner_text('#hw-root')[:300]}")
            records.append({"view": view, "width": width, "theme": theme, "where": "static", **found})
    page.close()
    return records


LAB_THEMES = {"light": "JupyterLab Light", "dark": "JupyterLab Dark"}

# the scrolling box around an output (JupyterLab 4's windowed notebook scrolls .jp-WindowedPanel-outer)
_SCROLLER = "(el.closest('.jp-WindowedPanel-outer') || el.closest('.jp-Notebook') || document.scrollingElement)"
SCROLL_JS = f"""(el, offset) => {{
  const sc = {_SCROLLER};
  const top = sc === document.scrollingElement ? 0 : sc.getBoundingClientRect().top;
  sc.scrollTop += el.getBoundingClientRect().top + offset - top;
}}"""


def _scroll_offsets(out) -> list[int]:
    """Offsets from an output's top at which to put the panel's top so that every part of the output is shown
    once (a panel-full at a time, 40 px overlap)."""
    height, view = out.evaluate(f"(el) => {{ const sc = {_SCROLLER};"
                                " return [el.getBoundingClientRect().height, sc.clientHeight]; }")
    step = max(100, int(view) - 40)
    return list(range(0, max(1, int(height) - 40), step)) or [0]


def save_live_pages(page, ex: str, out: Path) -> None:
    """Append a cell to the notebook open in ``page`` that writes every displayed view's static page (as
    ``build_gallery`` names them) into ``out``, with the manifest ``<NN>.json``, and run it."""
    source = LIVE_VIEWS + SAVE_VIEWS.format(out=str(out.resolve()), example=ex)
    index = page.evaluate("(src) => { const nb = window.jupyterapp.shell.currentWidget.content;"
                          " const n = nb.model.sharedModel.cells.length;"
                          " nb.model.sharedModel.insertCell(n, {cell_type: 'code', source: src}); return n; }",
                          source)
    from .lab import NotebookPage

    nb = NotebookPage.__new__(NotebookPage)
    nb.page = page
    nb.run_and_wait(index, 120)
    if "HWVIEWS" not in nb.output_text(index):
        raise RuntimeError(f"saving the views' pages failed: {nb.output_text(index)[-600:]}")


def audit_in_lab(page, example: str, artifacts: Path, *, save_pages: bool = True, host: str = "lab") -> list[dict]:
    """Audit every hiddenwidgets view in the notebook open in ``page`` (JupyterLab) at 800 px, light then dark,
    screenshot each, restore the light theme, and write ``artifacts/visual/<host>-<NN>.json`` for test_visual.py
    (``host="nb7"``: the notebook is open in Notebook 7, which has the same application, commands and themes).
    With ``save_pages``, first write every displayed view's static page to ``artifacts/visual/pages`` (the full
    example's views, which test_visual.py then audits instead of running the example again). Call it at the end
    of an e2e test that has run its example; it never raises (a failure is recorded for test_visual.py)."""
    shots = artifacts / "visual"
    shots.mkdir(parents=True, exist_ok=True)
    ex = example_id(example)
    size = page.viewport_size or {"width": 1400, "height": 1100}
    records = []
    try:
        if save_pages:  # the views as the test left them, for the static audit (test_visual.py's gallery)
            save_live_pages(page, ex, shots / "pages")
        # the canvas hook, late: it sees what views redraw from here on (on the resize and the theme switches);
        # a view that does not redraw on either shows no canvas text to the checks in JupyterLab
        page.evaluate(CANVAS_HOOK)
        page.set_viewport_size({"width": LAB_WIDTH, "height": size["height"]})
        for theme, lab_theme in LAB_THEMES.items():
            page.evaluate("(t) => window.jupyterapp.commands.execute('apputils:change-theme', {theme: t})",
                          lab_theme)
            page.wait_for_function("(t) => document.body.dataset.jpThemeName === t", arg=lab_theme,
                                   timeout=20_000)
            time.sleep(0.5)
            settle(page)
            outputs = page.query_selector_all(".jp-OutputArea-output")
            k = 0
            for out in outputs:
                # JupyterLab renders cells lazily: bring each output on screen before looking inside it
                out.scroll_into_view_if_needed()
                settle(page)
                if not out.query_selector('[class*="hw-"]'):
                    continue
                k += 1
                out.evaluate("(el) => el.setAttribute('data-hw-audit', '1')")
                raw = []
                # an output taller than the notebook panel is shown a panel-full at a time: scroll it through,
                # and judge each text where it is shown (the audit skips text scrolled out of the panel)
                for offset in _scroll_offsets(out):
                    out.evaluate(SCROLL_JS, offset)
                    settle(page)
                    found = page.evaluate(AUDIT_JS, '[data-hw-audit="1"]')
                    if raw:  # overflow and overlaps do not depend on the scroll position: measured once
                        for v in found:
                            v["overflow"], v["overlaps"] = [], []
                    raw += found
                out.evaluate("(el) => el.removeAttribute('data-hw-audit')")
                out.evaluate(SCROLL_JS, 0)  # the output's top at the panel's top for its screenshot
                root = raw[0]["root"].split(".")[-1] if raw else "view"
                view = f"{ex}-{host}{k}-{re.sub(r'[^a-z0-9-]', '', root)}"
                out.screenshot(path=str(shots / f"{view}-{LAB_WIDTH}-{theme}.png"))
                records.append({"view": view, "width": LAB_WIDTH, "theme": theme, "where": "jupyterlab",
                                **judge(raw)})
    except Exception as err:  # recorded for test_visual.py to report; never breaks the test that called it
        records.append({"view": f"{ex}-{host}", "width": LAB_WIDTH, "theme": "?", "where": "jupyterlab",
                        "error": f"{type(err).__name__}: {str(err)[:500]}", "overflow": [], "overlaps": [],
                        "contrast": [], "graphics": [], "roots": []})
    finally:
        try:
            page.evaluate("() => window.jupyterapp.commands.execute('apputils:change-theme', "
                          "{theme: 'JupyterLab Light'})")
            page.set_viewport_size(size)
        except Exception:  # the page is gone; nothing to restore
            pass
    (shots / f"{host}-{ex}.json").write_text(json.dumps(records, indent=1))
    return records


class Notebook7(JupyterServer):
    """A Jupyter Notebook 7 server (the ``notebook`` package) on a free port serving ``root``, with the
    application exposed as ``window.jupyterapp`` like the JupyterLab of tests/e2e/lab.py."""

    name = "Notebook 7"

    def __init__(self, root: Path):
        # HW_NOTEBOOK7_ARGS: e.g. --JupyterNotebookApp.schemas_dir=... for a notebook package installed outside the
        # environment (pip install --target), whose settings schemas are then not under sys.prefix
        super().__init__(root, ["notebook", "--JupyterNotebookApp.expose_app_in_browser=True",
                                *os.environ.get("HW_NOTEBOOK7_ARGS", "").split()], "notebook7.log")

    def url(self, notebook: str) -> str:
        return f"http://127.0.0.1:{self.port}/notebooks/{notebook}?token={self.token}"


def counts(record: dict) -> dict:
    return {"overflow": len(record["overflow"]), "overlaps": len(record["overlaps"]),
            "contrast": len(record["contrast"])}


def describe(record: dict, limit: int = 6) -> str:
    """One line per finding, for a person to act on."""
    head = f"{record['view']} @ {record['width']} px {record['theme']} ({record.get('where', 'static')})"
    lines = []
    for o in record["overflow"][:limit]:
        lines.append(f"  overflow: {o['what']}: {o['element']} {o.get('text', '')!r} by {o['by_px']} px")
    for o in record["overlaps"][:limit]:
        lines.append(f"  overlap: {o['a']!r} ({o['a_element']}) on {o['b']!r} ({o['b_element']}) "
                     f"{o['overlap_px'][0]}x{o['overlap_px'][1]} px")
    for c in record["contrast"][:limit]:
        lines.append(f"  contrast {c['ratio']}:1 < {c['required']}: {c['text']!r} ({c['element']}) "
                     f"{c['fg']} on {c['bg']}")
    hidden = sum(max(0, len(record[k]) - limit) for k in ("overflow", "overlaps", "contrast"))
    if hidden:
        lines.append(f"  … and {hidden} more")
    return "\n".join([head, *lines])


def totals(records: list[dict]) -> dict:
    """The issue's figures: view × layouts that overflow, overlapping label pairs, contrast failures."""
    return {"layouts": len(records), "views": len({r["view"] for r in records}),
            "layouts_overflowing": sum(1 for r in records if r["overflow"]),
            "overflow_findings": sum(len(r["overflow"]) for r in records),
            "overlapping_pairs": sum(len(r["overlaps"]) for r in records),
            "layouts_with_overlaps": sum(1 for r in records if r["overlaps"]),
            "texts_judged": sum(r.get("texts_judged", 0) for r in records),
            "contrast_failures": sum(len(r["contrast"]) for r in records),
            "graphics_below_3": sum(len(r.get("graphics", [])) for r in records),
            "layouts_with_contrast_failures": sum(1 for r in records if r["contrast"])}
