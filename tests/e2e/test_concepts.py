"""ConceptAnnotator in JupyterLab + Chromium, with the annotation database read from this process (through a
connection of its own, as another kernel would) after every step.

One annotator over 300 scikit-learn digits, displayed in two cells (two views of one widget):

a. a concept made from gallery clicks is acknowledged ("all changes saved"), on disk with exactly the clicked
   members, and ``a.concepts()`` in the kernel agrees;
b. a change made in either view shows in the other (concept card counts);
c. add / remove / rename made while a cell keeps the main thread busy (pure Python, 15 s) reach the file, and are
   acknowledged, before that cell ends (JupyterLab >= 4.4 sends widget messages on a subshell);
d. Ctrl+Z / Ctrl+Shift+Z with the view focused undo and redo, one step each, in the file;
e. a change made while the kernel restarts is shown as not saved, kept (localStorage), not written by anyone, and
   reaches the file once the setup cells run again (the new annotator's view resends it);
f. a concept named ``<img src=x onerror=...>`` is shown as text: no <img>, nothing runs;
g. a duplicate name is refused in the view's error line and the file is not touched;
h. the exported page opens offline, read-only, shows the concepts, no network request, no local folder path;
i. no page errors, no console errors.

A second test re-runs the setup cell in the same kernel (a new annotator on the same file while the first one's
view is still live in another cell) and checks that a change made in the old view erases nothing acknowledged.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from hiddenwidgets.pipeline.concepts import read_snapshot

from .lab import NotebookPage, network_requests, open_offline, write_notebook

FILE = "concepts.db"
EXPORT_FILE = "concepts_static.html"
BUSY_S = 15
XSS = '<img src=x onerror="window.__pwned=1">'

SETUP_SOURCE = """
import json
from sklearn.datasets import load_digits
import hiddenwidgets as hw
_d = load_digits()
X, y = _d.images[:300, None] / 16.0, _d.target[:300]
a = hw.ConceptAnnotator({file!r}, X, y)
a
"""
# pure Python on the main thread (keeps the GIL, like a training step); prints when it starts and ends
BUSY_SOURCE = f"""
import time as _time
_t0 = _time.time()
print("HWBUSY started", flush=True)
_spin = 0
while _time.time() - _t0 < {BUSY_S}:
    _spin += 1
print("HWBUSY ended", _time.time())
"""
PROBE_SOURCE = "print('HWCONCEPTS' + json.dumps(a.concepts()))"
EXPORT_SOURCE = f"print('HWEXPORT', a.save_html({EXPORT_FILE!r}))"
CELLS = [SETUP_SOURCE.format(file=FILE), "a", PROBE_SOURCE, BUSY_SOURCE, EXPORT_SOURCE]
SETUP, SECOND, PROBE, BUSY, EXPORT = range(5)

STATUS = "() => [...document.querySelectorAll('.hw-ca .hw-ca-status')].map((s) => s.textContent)"
ALL_SAVED = ("(n) => { const s = [...document.querySelectorAll('.hw-ca .hw-ca-status')];"
             " return s.length === n && s.every((x) => x.textContent.startsWith('all changes saved')); }")
CARDS = ("(root) => [...root.querySelectorAll('.hw-ca-concept')].map((c) => ({"
         " name: c.querySelector('.hw-ca-name').textContent, count: c.querySelector('.hw-ca-count').textContent }))")


def concepts_notebook(root: Path, name: str = "concepts.ipynb", cells: list[str] = CELLS) -> Path:
    return write_notebook(root / name, cells)


def on_disk(root: Path, file: str = FILE) -> dict:
    """The database's snapshot (revision, concepts, undo/redo), read without writing anything."""
    return read_snapshot(root / file)


def concepts_on_disk(root: Path, file: str = FILE) -> dict[str, list[int]]:
    return {c["name"]: c["members"] for c in on_disk(root, file)["concepts"]}


def wait_disk(root: Path, predicate, what: str, timeout: float = 10, file: str = FILE) -> float:
    """Poll the file until ``predicate(concepts)`` holds; returns time.time() when it was first seen."""
    deadline = time.time() + timeout
    while True:
        try:
            seen = concepts_on_disk(root, file)
        except (OSError, ValueError):  # never expected (each change is one transaction); retried, then reported
            seen = None
        if seen is not None and predicate(seen):
            return time.time()
        if time.time() > deadline:
            raise AssertionError(f"{what}: not on disk within {timeout} s; the file holds {seen}")
        time.sleep(0.02)


def counts(view) -> dict[str, int]:
    """Concept name -> member count, as a view's cards show it ('1 · 3 (2 selected)')."""
    out = {}
    for card in view.evaluate(CARDS):
        m = re.match(r"(?:\d+ · )?(\d+)", card["count"])
        assert m, card
        out[card["name"]] = int(m.group(1))
    return out


def selected(view) -> int:
    text = view.locator(".hw-ca-actions .hw-ca-count").first.text_content()
    m = re.fullmatch(r"(\d+) selected", text.strip())
    assert m, text
    return int(m.group(1))


def select(view, indices) -> None:
    for i in indices:
        item = view.locator(f'.hw-ca-item[data-index="{i}"]')
        before = item.get_attribute("aria-selected")
        item.click()
        assert item.get_attribute("aria-selected") != before, f"clicking item {i} did not toggle it"


def clear_selection(view) -> None:
    view.focus()
    view.press("Escape")
    assert selected(view) == 0, "Esc did not clear the selection"


def card(view, name: str):
    return view.locator(".hw-ca-concept").filter(has=view.page.locator(".hw-ca-name", has_text=name)).first


def wait_saved(page, views: int = 2, timeout: float = 10) -> None:
    try:
        page.wait_for_function(ALL_SAVED, arg=views, timeout=timeout * 1000)
    except Exception as err:
        raise AssertionError(f"the views never said 'all changes saved': {page.evaluate(STATUS)}") from err


def saved_entries(page) -> list[float]:
    return page.evaluate("() => performance.getEntriesByName('hw-concept-saved').map((e) => e.duration)")


def test_concepts_in_jupyterlab(lab, browser, artifacts):
    errors: list[str] = []
    console: list[str] = []
    root = lab.root
    notebook = concepts_notebook(root)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    nb = NotebookPage(page, lab, notebook.name, "concepts")
    report: dict = {}
    try:
        run_steps(nb, root, artifacts, report)
    except BaseException:
        page.screenshot(path=str(artifacts / "concepts_failure.png"))
        print("E2E concepts (failed) page errors:", errors, "console errors:", console, "so far:", report)
        raise
    print("E2E concepts", json.dumps(report))
    print("E2E concepts page errors:", errors, "console errors:", console)
    (artifacts / "e2e_concepts.json").write_text(json.dumps({**report, "page_errors": errors,
                                                             "console_errors": console}))
    # i. nothing went wrong in the page (the static page's own errors are asserted in run_steps)
    assert errors == [], errors
    assert console == [], console
    page.close()


def run_steps(nb: NotebookPage, root: Path, artifacts: Path, report: dict) -> None:
    page = nb.page
    nb.run_and_wait(SETUP, 180)
    nb.run_and_wait(SECOND, 60)
    page.wait_for_function("() => document.querySelectorAll('.hw-ca').length === 2", timeout=30_000)
    v1, v2 = page.locator(".hw-ca").nth(0), page.locator(".hw-ca").nth(1)
    page.wait_for_selector('.hw-ca .hw-ca-item[data-index="0"] canvas', timeout=30_000)
    wait_saved(page)
    assert "revision 0" in page.evaluate(STATUS)[0]
    assert concepts_on_disk(root) == {}
    # the live view names the file it writes (the static page must not: h)
    assert str(root) in v1.locator(".hw-am-header").text_content()

    # a. a concept from gallery clicks
    select(v1, [3, 5, 7])
    assert selected(v1) == 3
    v1.locator(".hw-ca-new input").fill("loops")
    v1.locator(".hw-ca-new button").click()
    wait_saved(page)
    assert all("revision 1" in s for s in page.evaluate(STATUS)), page.evaluate(STATUS)
    assert concepts_on_disk(root) == {"loops": [3, 5, 7]}
    assert on_disk(root)["revision"] == 1
    nb.run_and_wait(PROBE, 60)
    assert "HWCONCEPTS" + json.dumps({"loops": [3, 5, 7]}) in nb.output_text(PROBE), nb.output_text(PROBE)

    # b. the two views stay in sync, both ways
    page.wait_for_function(f"() => ({CARDS})(document.querySelectorAll('.hw-ca')[1]).length === 1")
    assert counts(v2) == {"loops": 3}
    select(v1, [9])
    card(v1, "loops").locator("[data-action=add]").click()
    wait_disk(root, lambda c: c.get("loops") == [3, 5, 7, 9], "view 1's add")
    page.wait_for_function(f"() => ({CARDS})(document.querySelectorAll('.hw-ca')[1])[0].count.startsWith('1 · 4')",
                           timeout=10_000)
    select(v2, [11])
    card(v2, "loops").locator("[data-action=add]").click()
    wait_disk(root, lambda c: c.get("loops") == [3, 5, 7, 9, 11], "view 2's add")
    page.wait_for_function(f"() => ({CARDS})(document.querySelectorAll('.hw-ca')[0])[0].count.startsWith('1 · 5')",
                           timeout=10_000)
    assert counts(v1) == counts(v2) == {"loops": 5}
    wait_saved(page)
    clear_selection(v1)
    clear_selection(v2)

    # c. add, remove, rename while a cell holds the main thread
    before_busy = len(saved_entries(page))
    nb.run_cell(BUSY)
    page.wait_for_function(f"() => window.jupyterapp.shell.currentWidget.content.widgets[{BUSY}]"
                           ".outputArea.node.innerText.includes('HWBUSY started')", timeout=30_000)
    latencies = {}
    select(v1, [20, 21])
    t = time.time()
    card(v1, "loops").locator("[data-action=add]").click()
    latencies["add"] = wait_disk(root, lambda c: c.get("loops") == [3, 5, 7, 9, 11, 20, 21],
                                 "add during the busy cell") - t
    assert nb.busy(BUSY), "the busy cell ended before the add was on disk: the test cannot tell 'during' apart"
    wait_saved(page)
    select(v1, [20])  # deselect: the selection is now {21}
    t = time.time()
    card(v1, "loops").locator("[data-action=remove]").click()
    latencies["remove"] = wait_disk(root, lambda c: c.get("loops") == [3, 5, 7, 9, 11, 20],
                                    "remove during the busy cell") - t
    wait_saved(page)
    card(v1, "loops").locator("[data-action=rename]").click()
    rename = v1.locator(".hw-ca-concept input")
    rename.fill("round things")
    t = time.time()
    rename.press("Enter")
    latencies["rename"] = wait_disk(root, lambda c: list(c) == ["round things"], "rename during the busy cell") - t
    wait_saved(page)
    t_saved = time.time()
    still_busy = nb.busy(BUSY)
    assert still_busy, "the busy cell ended before the changes were acknowledged: the test cannot tell 'during' apart"
    busy_acks = saved_entries(page)[before_busy:]
    nb.wait_done(BUSY, BUSY_S + 60)
    ended = float(re.search(r"HWBUSY ended ([\d.]+)", nb.output_text(BUSY)).group(1))
    assert t_saved < ended, "the changes were acknowledged only after the busy cell"
    report["busy_cell_disk_latency_s"] = {k: round(v, 3) for k, v in latencies.items()}
    report["busy_cell_ack_ms"] = [round(d, 1) for d in busy_acks]
    report["busy_cell_s_left_after_saved"] = round(ended - t_saved, 2)
    print("E2E concepts: during the busy cell, on disk after " +
          ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in latencies.items()) +
          f"; view's op->ack {report['busy_cell_ack_ms']} ms")
    # one operation per change: a rename is one step (d undoes it in one)
    assert len(busy_acks) == 3, f"3 changes made during the busy cell, {len(busy_acks)} acknowledged: {busy_acks}"

    # d. undo / redo from the keyboard, one step each
    cells_before = page.evaluate("() => window.jupyterapp.shell.currentWidget.content.widgets.length")
    revision = on_disk(root)["revision"]
    steps = [("Control+z", {"loops": [3, 5, 7, 9, 11, 20]}),  # the rename undone
             ("Control+z", {"loops": [3, 5, 7, 9, 11, 20, 21]}),  # the remove undone
             ("Control+Shift+z", {"loops": [3, 5, 7, 9, 11, 20]}),
             ("Control+Shift+z", {"round things": [3, 5, 7, 9, 11, 20]})]
    for key, expected in steps:
        v1.focus()
        v1.press(key)
        wait_disk(root, lambda c, e=expected: c == e, f"{key} (expected {expected})")
        wait_saved(page)
    assert on_disk(root)["revision"] == revision + 4
    assert page.evaluate("() => window.jupyterapp.shell.currentWidget.content.widgets.length") == cells_before, \
        "the keys reached the notebook too"

    # e. a change made while the kernel restarts: kept, shown as not saved, saved once an annotator exists again
    clear_selection(v1)
    select(v1, [30])
    before_restart = on_disk(root)
    page.evaluate("() => { window.__hwRestart = window.jupyterapp.shell.currentWidget.sessionContext.session"
                  ".kernel.restart(); }")
    page.wait_for_function("() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status"
                           " !== 'idle'", timeout=10_000)
    card(v1, "round things").locator("[data-action=add]").click()
    page.wait_for_function("() => document.querySelector('.hw-ca .hw-ca-status').textContent"
                           ".startsWith('1 change not saved yet')", timeout=5_000)
    page.evaluate("() => window.__hwRestart")
    page.wait_for_function("() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status"
                           " === 'idle'", timeout=60_000)
    time.sleep(2.5)  # more than one resend period: nobody may write it now, and the view must still say so
    assert on_disk(root) == before_restart, "the file changed while no annotator existed"
    assert page.evaluate(STATUS)[0].startswith("1 change not saved yet"), page.evaluate(STATUS)
    pending = page.evaluate("() => Object.entries(localStorage)"
                            ".filter(([k]) => k.startsWith('hiddenwidgets-concepts:')).map(([, v]) => JSON.parse(v))")
    assert [[(op["kind"], op["members"]) for op in ops] for ops in pending] == \
        [[("add", [30])]], f"localStorage does not hold the pending add: {pending}"
    t = time.time()
    nb.run_and_wait(SETUP, 180)
    nb.run_and_wait(SECOND, 60)
    restored = wait_disk(root, lambda c: c == {"round things": [3, 5, 7, 9, 11, 20, 30]},
                         "the add made during the restart", 30) - t
    wait_saved(page)
    report["restart_add_saved_s_after_rerun"] = round(restored, 2)
    nb.run_and_wait(PROBE, 60)
    assert "HWCONCEPTS" + json.dumps({"round things": [3, 5, 7, 9, 11, 20, 30]}) in nb.output_text(PROBE)
    assert page.evaluate("() => Object.keys(localStorage).filter((k) => k.startsWith('hiddenwidgets-concepts:'))"
                         ".length") == 0, "the acknowledged op is still in localStorage"
    v1, v2 = page.locator(".hw-ca").nth(0), page.locator(".hw-ca").nth(1)
    page.wait_for_selector('.hw-ca .hw-ca-item[data-index="0"] canvas', timeout=30_000)

    # f. a name that is markup stays text
    select(v1, [40, 41])
    v1.locator(".hw-ca-new input").fill(XSS)
    v1.locator(".hw-ca-new button").click()
    wait_disk(root, lambda c: c.get(XSS) == [40, 41], "the concept named like markup")
    wait_saved(page)
    page.wait_for_function(f"() => ({CARDS})(document.querySelectorAll('.hw-ca')[1]).length === 2")
    for view in (v1, v2):
        assert [c["name"] for c in view.evaluate(CARDS)] == ["round things", XSS]
        assert view.evaluate("(r) => r.querySelectorAll('img').length") == 0
    assert page.evaluate("() => typeof window.__pwned") == "undefined"

    # g. a duplicate name (case-insensitive) is refused: said in the view, nothing written
    text_before = on_disk(root)
    v1.locator(".hw-ca-new input").fill("Round Things")
    v1.locator(".hw-ca-new button").click()
    page.wait_for_function("() => /exists/.test(document.querySelector('.hw-ca .hw-ca-error').textContent)",
                           timeout=10_000)
    error_line = v1.locator(".hw-ca-error").text_content()
    assert "round things" in error_line, error_line
    wait_saved(page)  # refused operations leave the queue too
    time.sleep(0.5)
    assert on_disk(root) == text_before, "a refused change touched the database"
    assert counts(v1) == counts(v2) == {"round things": 7, XSS: 2}
    v1.scroll_into_view_if_needed()
    v1.screenshot(path=str(artifacts / "concepts.png"))

    # h. the exported page: offline, read-only, the concepts, no local folder path
    nb.run_and_wait(EXPORT, 60)
    assert "HWEXPORT" in nb.output_text(EXPORT), nb.output_text(EXPORT)
    static_errors: list[str] = []
    static_console: list[str] = []
    static, requests = open_offline(page.context.browser, root / EXPORT_FILE, static_errors)
    static.on("console", lambda m: static_console.append(m.text) if m.type == "error" else None)
    sroot = static.locator("#hw-root .hw-ca")
    static.wait_for_selector('#hw-root .hw-ca-item[data-index="0"] canvas', timeout=10_000)
    assert [(c["name"], c["count"]) for c in sroot.evaluate(CARDS)] == [("round things", "1 · 7"), (XSS, "2 · 2")]
    assert sroot.locator(".hw-ca-status").text_content().startswith("static page")
    assert sroot.evaluate("(r) => [...r.querySelectorAll('.hw-ca-concept button')].every((b) => b.disabled)"), \
        "the static page offers changes"
    assert sroot.evaluate("(r) => r.querySelector('.hw-ca-new input').disabled"), "the static page offers new concepts"
    sroot.locator(".hw-ca-item[data-index='2']").click()
    sroot.press("a")  # the keyboard path to a change is refused with a message too
    assert "read-only" in sroot.locator(".hw-ca-error").text_content()
    assert sroot.evaluate("(r) => r.querySelectorAll('img').length") == 0
    assert static.evaluate("() => typeof window.__pwned") == "undefined"
    page_text = static.evaluate("() => document.body.innerText")
    assert str(root) not in page_text and FILE in page_text, page_text[:300]
    assert str(root) not in (root / EXPORT_FILE).read_text(encoding="utf-8"), "the page's data holds the folder"
    static.screenshot(path=str(artifacts / "concepts_static.png"), full_page=True)
    assert network_requests(requests) == []
    assert static_errors == [] and static_console == [], (static_errors, static_console)
    static.close()


def test_rerunning_the_setup_cell_loses_no_acknowledged_change(lab, browser, artifacts):
    """Re-running the cell that makes the annotator (same kernel, same file) is common; the earlier annotator's
    view in another cell stays live. A change made there after one made in the new view must not erase it."""
    file = "rerun.db"
    errors: list[str] = []
    notebook = concepts_notebook(lab.root, "rerun.ipynb", [SETUP_SOURCE.format(file=file), "a", PROBE_SOURCE])
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.on("pageerror", lambda e: errors.append(str(e)))
    nb = NotebookPage(page, lab, notebook.name, "rerun")
    nb.run_and_wait(0, 180)
    nb.run_and_wait(1, 60)
    page.wait_for_function("() => document.querySelectorAll('.hw-ca').length === 2", timeout=30_000)
    new, old = page.locator(".hw-ca").nth(0), page.locator(".hw-ca").nth(1)
    page.wait_for_selector('.hw-ca .hw-ca-item[data-index="3"] canvas', timeout=30_000)
    select(new, [3])
    new.locator(".hw-ca-new input").fill("first")
    new.locator(".hw-ca-new button").click()
    wait_disk(lab.root, lambda c: c == {"first": [3]}, "the first concept", file=file)
    wait_saved(page)

    nb.run_and_wait(0, 60)  # cell 0 now shows a new annotator on the same file; cell 1 still the first one
    page.wait_for_selector('.hw-ca .hw-ca-item[data-index="5"] canvas', timeout=30_000)
    select(new, [5])
    new.locator(".hw-ca-new input").fill("second")
    new.locator(".hw-ca-new button").click()
    wait_disk(lab.root, lambda c: c == {"first": [3], "second": [5]}, "the concept made in the new view", file=file)
    wait_saved(page)

    select(old, [7])
    card(old, "first").locator("[data-action=add]").click()
    page.wait_for_function("() => { const s = document.querySelectorAll('.hw-ca')[1];"
                           " return s.querySelector('.hw-ca-status').textContent.startsWith('all changes saved')"
                           " || s.querySelector('.hw-ca-error').textContent; }", timeout=10_000)
    time.sleep(0.5)
    seen = concepts_on_disk(lab.root, file)
    old_error = old.locator(".hw-ca-error").text_content()
    page.screenshot(path=str(artifacts / "concepts_rerun.png"))
    assert seen.get("second") == [5], (f"the acknowledged concept 'second' was erased from the file by a change made "
                                       f"in the earlier annotator's view: the file holds {seen}")
    if not old_error:  # accepted: then on top of what the file held
        assert seen == {"first": [3, 7], "second": [5]}, seen
    nb.run_and_wait(2, 60)
    assert "HWCONCEPTS" + json.dumps(seen) in nb.output_text(2), (nb.output_text(2), seen)
    assert errors == [], errors
    page.close()
