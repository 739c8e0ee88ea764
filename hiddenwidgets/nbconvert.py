"""Executed notebooks with hiddenwidgets views as offline HTML pages (course materials), through nbconvert.

``jupyter nbconvert --to html`` of a notebook with saved widget state loads the widget manager from a CDN, so the
views need a network, and a classroom often has none. Here every hiddenwidgets view of a notebook becomes the page
:func:`~hiddenwidgets.save_html` writes (the same builder, :func:`~hiddenwidgets.pipeline.export.page_from_state`,
from the state the notebook saved), held in an ``<iframe srcdoc>`` that sizes itself to the view; a widget that is
not a hiddenwidgets view (an ipywidgets slider, another package's widget) becomes a note saying it needs a kernel.

- ``jupyter nbconvert --to hiddenwidgets notebook.ipynb``: :class:`OfflineHTMLExporter`, JupyterLab's page without
  anything it would load from a network (require.js, MathJax, Mermaid, the widget manager) and with a content
  security policy forbidding the network; math stays as its TeX source. ``--execute`` runs the notebook first and
  keeps every view's page data (it sets ``HIDDENWIDGETS_STATIC_STATE=1`` for the kernel).
- :class:`StaticViewsPreprocessor` does the views alone, for other tools: ``--to html
  --HTMLExporter.preprocessors=hiddenwidgets.nbconvert.StaticViewsPreprocessor`` (the views then render offline,
  but the stock template still requests require.js and MathJax from a CDN), or :mod:`hiddenwidgets.sphinx`.

What a saved notebook holds: each view's synced state (nbclient's ``store_widget_state``, or JupyterLab's "Save
Widget State Automatically"). Views that fetch some data from the kernel on demand (example thumbnails, a
projector's other layers, the unit atlas's tiles, the explainer's arithmetic) keep it in the synced state only
when the kernel ran with ``HIDDENWIDGETS_STATIC_STATE=1`` (``%env HIDDENWIDGETS_STATIC_STATE=1`` in a first cell
works too); without it the page shows what was synced and says what is missing. The page runs the installed
hiddenwidgets' view code, never JavaScript taken from the notebook.
"""

from __future__ import annotations

import base64
import html
import importlib
import os
from pathlib import Path
from typing import Any

from nbconvert.exporters import HTMLExporter
from nbconvert.preprocessors import Preprocessor
from traitlets import Bool, Int, Unicode, default

from .pipeline.export import CSP, bundle, frame, page_from_state
from .widgets._base import STATIC_STATE_ENV

__all__ = ["OfflineHTMLExporter", "StaticViewsPreprocessor", "static_views"]

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
TEMPLATES = Path(__file__).resolve().parent / "templates" / "nbconvert"
NOTE_STYLE = ("margin:4px 0;padding:6px 10px;border-left:3px solid #c77c02;background:rgba(199,124,2,0.08);"
              "font:13px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif")
MAX_DEPTH = 8  # containers inside containers


def static_views(nb: Any, *, theme: str = "light", height: int = 480) -> int:
    """Replace every widget output of ``nb`` (an nbformat notebook, changed in place) by static HTML and drop the
    saved widget state, so no template loads a widget manager. Returns how many outputs were replaced.

    A hiddenwidgets view becomes its static page in an ``<iframe srcdoc>`` (see the module docstring); a container
    (``HBox``/``VBox``, e.g. ``ActivationMonitor.follow([...])``) becomes its children in order; any other widget,
    or one whose state was not saved, becomes a note saying so. ``text/plain`` is kept beside the HTML.
    """
    states = (nb.get("metadata", {}).get("widgets", {}).get(WIDGET_STATE, {}) or {}).get("state", {}) or {}
    replaced = 0
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []) or []:
            data = output.get("data") or {}
            view = data.get(WIDGET_VIEW)
            if not isinstance(view, dict):
                continue
            plain = data.get("text/plain")
            output["data"] = {"text/html": _render(str(view.get("model_id", "")), states, theme, height, 0)}
            if plain is not None:
                output["data"]["text/plain"] = plain
            output.setdefault("metadata", {})
            replaced += 1
    nb.get("metadata", {}).pop("widgets", None)
    return replaced


class StaticViewsPreprocessor(Preprocessor):
    """nbconvert preprocessor: :func:`static_views` (hiddenwidgets views as offline pages, other widgets as notes)."""

    enabled = Bool(True).tag(config=True)
    theme = Unicode("", help="'light' or 'dark' for the views; default: the exporter's theme (else light).").tag(
        config=True)
    frame_height = Int(480, help="Height of a view's iframe before its page reports its own (pixels).").tag(
        config=True)

    def preprocess(self, nb: Any, resources: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        theme = self.theme or ("dark" if (resources or {}).get("theme") == "dark" else "light")
        if theme not in ("light", "dark"):
            raise ValueError(f"StaticViewsPreprocessor.theme must be 'light' or 'dark'; got {theme!r}")
        static_views(nb, theme=theme, height=self.frame_height)
        return nb, resources


class OfflineHTMLExporter(HTMLExporter):
    """``jupyter nbconvert --to hiddenwidgets``: a notebook as one HTML page that fetches nothing (see the module
    docstring). With ``--execute``, the kernel runs with ``HIDDENWIDGETS_STATIC_STATE=1``."""

    export_from_notebook = "HTML, offline (hiddenwidgets)"

    @default("template_name")
    def _template_name_default(self) -> str:
        return "lab"

    @default("template_file")
    def _template_file_default(self) -> str:
        return "hiddenwidgets_offline.html.j2"

    @default("extra_template_paths")
    def _extra_template_paths_default(self) -> list[str]:
        return [str(TEMPLATES)]

    @default("embed_images")
    def _embed_images_default(self) -> bool:
        return True  # markdown images as data: URIs (the page's policy allows no file or network loads)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # after the execute preprocessor (when --execute enables it), before the template
        self.register_preprocessor(StaticViewsPreprocessor(parent=self), enabled=True)

    def _init_resources(self, resources: dict[str, Any]) -> dict[str, Any]:
        resources = super()._init_resources(resources)
        resources["hiddenwidgets_csp"] = CSP
        return resources

    def from_notebook_node(self, nb: Any, resources: dict[str, Any] | None = None, **kw: Any) -> Any:
        before = os.environ.get(STATIC_STATE_ENV)
        os.environ[STATIC_STATE_ENV] = "1"  # a kernel started by --execute inherits it
        try:
            return super().from_notebook_node(nb, resources, **kw)
        finally:
            if before is None:
                os.environ.pop(STATIC_STATE_ENV, None)
            else:
                os.environ[STATIC_STATE_ENV] = before


# -- one output --------------------------------------------------------------------------------------------------
def _render(model_id: str, states: dict[str, Any], theme: str, height: int, depth: int) -> str:
    entry = states.get(model_id)
    if not isinstance(entry, dict) or not isinstance(entry.get("state"), dict):
        return _note("An interactive widget whose state was not saved with this notebook, so it cannot be shown "
                     "here. Execute the notebook with its widget state saved (nbclient or jupyter nbconvert "
                     "--execute; in JupyterLab, Settings › Save Widget State Automatically) and convert it again.")
    state = entry["state"]
    cls = _hiddenwidgets_class(state.get("_anywidget_id"))
    if cls is not None:
        return _view(cls, entry, theme, height)
    children = state.get("children")
    if isinstance(children, list) and children and depth < MAX_DEPTH:
        flex = "display:flex;flex-wrap:wrap;gap:8px" if "HBox" in str(entry.get("model_name", "")) else ""
        inner = "".join(f'<div style="flex:1 1 320px;min-width:0">{_render(_ref(c), states, theme, height, depth + 1)}'
                        "</div>" if flex else _render(_ref(c), states, theme, height, depth + 1) for c in children)
        return f'<div class="hiddenwidgets-box" style="{flex}">{inner}</div>'
    name = str(entry.get("model_name") or state.get("_model_name") or "widget").removesuffix("Model")
    module = str(entry.get("model_module") or state.get("_model_module") or "")
    where = f" from {module}" if module else ""
    return _note(f"An interactive widget ({name}{where}) that needs a running Jupyter kernel: it is not part of "
                 "this offline page. Run the notebook to use it.")


def _view(cls: type, entry: dict[str, Any], theme: str, height: int) -> str:
    state = _with_buffers(dict(entry["state"]), entry.get("buffers") or [])
    kept = state.pop("_page_state", None) or {}
    notes = []
    if isinstance(kept, dict) and "_page_state_error" in kept:
        notes.append(_note(f"This view's page data could not be saved: {kept['_page_state_error']}. It shows what "
                           "was synced."))
        kept = {}
    if isinstance(kept, dict) and kept:
        state.update(kept)
    elif hasattr(cls, "static_state") and not notes:
        notes.append(_note(f"{cls.__name__}: the parts of this view that it fetches from the kernel on demand were "
                           "not saved with the notebook; the page shows what was synced. To include them, execute "
                           f"the notebook with {STATIC_STATE_ENV}=1 in the environment (jupyter nbconvert --to "
                           "hiddenwidgets --execute sets it), or link to the view's save_html page."))
    title = str(state.get("title") or cls.__name__)
    page = page_from_state(bundle(cls._view_file).read_text(encoding="utf-8"), state, title=title, theme=theme)
    return "".join(notes) + frame(page, title=title, height=height)


def _hiddenwidgets_class(anywidget_id: Any) -> type | None:
    """The view class named by anywidget's id ('hiddenwidgets.widgets.projector.Projector'), or None for widgets
    that are not hiddenwidgets views (their code is never run here)."""
    if not isinstance(anywidget_id, str) or not anywidget_id.startswith("hiddenwidgets."):
        return None
    module, _, name = anywidget_id.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None
    return cls if getattr(cls, "_view_file", "") else None


def _with_buffers(state: dict[str, Any], buffers: list[dict[str, Any]]) -> dict[str, Any]:
    """Put the saved binary buffers back at their paths, as the kernel sent them. A path whose parent is gone
    (nbclient keeps every buffer path it saw, also those a later update replaced) is left out."""
    for buf in buffers:
        path = buf.get("path") or []
        if buf.get("encoding", "base64") != "base64" or not path:
            continue
        obj: Any = state
        for key in path[:-1]:
            try:
                obj = obj[key]
            except (KeyError, IndexError, TypeError):
                obj = None
                break
        if (isinstance(obj, dict) and path[-1] not in obj) or (
                isinstance(obj, list) and isinstance(path[-1], int) and path[-1] < len(obj)):
            obj[path[-1]] = base64.b64decode(buf.get("data", ""))
    return state


def _ref(child: Any) -> str:
    return str(child).removeprefix("IPY_MODEL_")


def _note(text: str) -> str:
    return f'<div class="hiddenwidgets-note" style="{NOTE_STYLE}">{html.escape(text)}</div>'
