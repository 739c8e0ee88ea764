"""Static export: one self-contained HTML file that renders a view offline, for course pages.

The page holds the view's own ES module (the same bundle the notebook runs) and the widget state, both inside a
JSON ``<script>`` block with ``<``, ``>`` and ``&`` escaped, so no label, layer name or concept name can close
the script or inject markup. A content security policy forbids every network request; a small boot script
imports the module from a ``blob:`` URL and renders it against a read-only model.
"""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path
from typing import Any

from ipywidgets.widgets.widget import _remove_buffers

from .checks import keywords_checked, what

__all__ = ["STATIC", "bundle", "embed_snippet", "frame", "page", "page_from_state", "page_state", "save_html"]

STATIC = Path(__file__).resolve().parent.parent / "static"


def bundle(name: str) -> Path:
    """Path of a built view module. A missing bundle means the package was not built; say how to build it."""
    path = STATIC / f"{name}.js"
    if not path.exists():
        raise FileNotFoundError(
            f"the front end of hiddenwidgets is not built ({path} is missing). Install the package with "
            f"`pip install .` (needs Node.js and npm), or run `npm ci && node build.mjs` in js/."
        )
    return path

CSP = ("default-src 'none'; script-src 'unsafe-inline' blob:; style-src 'unsafe-inline'; img-src data: blob:; "
       "connect-src 'none'")


# The page follows the reader's colour scheme: JupyterLab's theme variables (those the views read) for light and
# for dark under prefers-color-scheme; js/static_boot.js sets body[data-jp-theme-light] to match, as JupyterLab does.
# A page made for a host with a fixed theme (a converted notebook, a course site) is given that theme instead: its
# body carries data-jp-theme-light and the boot leaves it alone.
LIGHT_VARS = ("--jp-ui-font-color1:rgba(0,0,0,0.87);--jp-ui-font-color2:rgba(0,0,0,0.6);"
              "--jp-layout-color0:#ffffff;--jp-layout-color1:#ffffff;--jp-layout-color2:#eeeeee;"
              "--jp-border-color1:#bdbdbd;--jp-border-color2:#e0e0e0")
DARK_VARS = ("--jp-ui-font-color1:rgba(255,255,255,0.87);--jp-ui-font-color2:rgba(255,255,255,0.6);"
             "--jp-layout-color0:#111111;--jp-layout-color1:#212121;--jp-layout-color2:#424242;"
             "--jp-border-color1:#616161;--jp-border-color2:#424242")
BODY_CSS = ("body{margin:16px;font-family:system-ui,-apple-system,'Segoe UI',sans-serif;"
            "background:var(--jp-layout-color0);color:var(--jp-ui-font-color1)}")
PAGE_CSS = (f":root{{color-scheme:light dark;{LIGHT_VARS}}}"
            f"@media (prefers-color-scheme: dark){{:root{{{DARK_VARS}}}}}" + BODY_CSS)
THEMES = {None: (PAGE_CSS, ""),
          "light": (f":root{{color-scheme:light;{LIGHT_VARS}}}" + BODY_CSS, ' data-jp-theme-light="true"'),
          "dark": (f":root{{color-scheme:dark;{DARK_VARS}}}" + BODY_CSS, ' data-jp-theme-light="false"')}


def _json_for_html(value: Any) -> str:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


# Keys of a widget's synced state that a page does not need: anywidget's module and styles (the page carries the
# module itself), the class id, the layout, and the kernel-side snapshot kept for notebooks (merged in, below).
UNUSED_KEYS = ("_esm", "_css", "_anywidget_id", "layout", "_dom_classes", "_page_state")


def page_state(widget: Any) -> dict[str, Any]:
    """What a page adds to a view's synced state: the data it fetches from the kernel on demand when live.

    ``widget.static_state()`` where the view has one (pages of examples, a projector's other layers, the
    explainer's arithmetic...), else ``{}``. The notebook path keeps the same snapshot in the synced trait
    ``_page_state`` (see :mod:`hiddenwidgets.nbconvert`), so both paths show the same data.
    """
    return dict(widget.static_state()) if hasattr(widget, "static_state") else {}


def page(widget: Any, *, title: str | None = None) -> str:
    """The HTML text of a static page showing ``widget``."""
    if hasattr(widget, "flush"):
        widget.flush()
    state = widget.get_state()
    state.update(page_state(widget))
    heading = title or getattr(widget, "title", "") or type(widget).__name__
    return page_from_state(bundle(widget._view_file).read_text(encoding="utf-8"), state, title=heading)


def page_from_state(module: str, state: dict[str, Any], *, title: str, theme: str | None = None) -> str:
    """The static page of a view given its ES module's text and its state (``bytes``/``memoryview`` values are
    sent as binary buffers, as the kernel sends them). The one page builder: :func:`page` (``save_html``) and the
    notebook converter (:mod:`hiddenwidgets.nbconvert`) both call it. ``theme``: None follows the reader's colour
    scheme; ``"light"`` or ``"dark"`` fixes it (for a host page with a theme of its own)."""
    if theme not in THEMES:
        raise ValueError(f"theme must be None, 'light' or 'dark'; got {theme!r}")
    css, body = THEMES[theme]
    state = {k: v for k, v in state.items() if k not in UNUSED_KEYS}
    state, paths, buffers = _remove_buffers(state)
    payload = {
        "format": "hiddenwidgets-static/1",
        "module": module,
        "state": state,
        "buffers": [{"path": p, "data": base64.b64encode(bytes(b)).decode("ascii")}
                    for p, b in zip(paths, buffers, strict=True)],
    }
    boot = (STATIC / "static_boot.js").read_text(encoding="utf-8")
    if "</script" in boot.lower():
        raise RuntimeError("static_boot.js contains '</script'; it cannot be inlined")
    return (
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{html.escape(title)}</title>\n"
        f"<style>{css}</style>\n"
        f"</head>\n<body{body}>\n<div id=\"hw-root\"></div>\n"
        f"<script type=\"application/json\" id=\"hw-payload\">{_json_for_html(payload)}</script>\n"
        f"<script>{boot}</script>\n</body>\n</html>\n"
    )


# -- embedding a page in another page (course sites) ---------------------------------------------------------------
# A page inside an <iframe> posts {"type": "hiddenwidgets:resize", "version": 1, "height": <CSS px>} to its parent
# whenever its content's height changes (js/static_boot.js); this listener, once on the parent page, sets the height
# of the iframe the message came from. Nothing else is read from the message, and the height is clamped.
RESIZE_MESSAGE = "hiddenwidgets:resize"
MAX_FRAME_HEIGHT = 100_000
_LISTENER = (
    "(function(){if(window.__hiddenwidgetsResize)return;window.__hiddenwidgetsResize=true;"
    "window.addEventListener('message',function(e){var d=e.data;"
    f"if(!d||d.type!=='{RESIZE_MESSAGE}'||typeof d.height!=='number'||!isFinite(d.height))return;"
    "var f=document.getElementsByTagName('iframe');for(var i=0;i<f.length;i++){"
    f"if(f[i].contentWindow===e.source){{f[i].style.height=Math.max(0,Math.min(Math.ceil(d.height),"
    f"{MAX_FRAME_HEIGHT}))+'px';}}}}}});}})();"
)


def embed_snippet() -> str:
    """The ``<script>`` a page needs once so that every embedded hiddenwidgets page sizes its ``<iframe>``.

    Pages written by :func:`save_html` post ``{"type": "hiddenwidgets:resize", "version": 1, "height": h}``
    (``h`` in CSS pixels) to the parent window when framed, at load and whenever their height changes (a view
    that grows, a narrower iframe that wraps the layout). The snippet sets the ``height`` of the iframe that sent
    the message (found by its window, so any origin, ``file://`` included) and nothing else; widths are the
    iframe's own (give it ``width:100%``). Example::

        <iframe src="monitor.html" title="Activations" style="width:100%;height:480px;border:0"></iframe>
        <script>...this snippet...</script>
    """
    return f"<script>{_LISTENER}</script>"


def frame(page_text: str, *, title: str, height: int = 480) -> str:
    """An ``<iframe>`` holding ``page_text`` (a page of :func:`page_from_state`) in ``srcdoc``, then the resize
    snippet: the HTML a notebook output or a course page embeds. ``height`` is the height before the page says
    its own (and with scripts off)."""
    doc = page_text.replace("&", "&amp;").replace("'", "&#39;")  # srcdoc='...': only & and ' need escaping
    return (f"<iframe class=\"hiddenwidgets-view\" title=\"{html.escape(title)}\" "
            f"style=\"display:block;width:100%;height:{int(height)}px;border:0\" srcdoc='{doc}'></iframe>"
            + embed_snippet())


@keywords_checked
def save_html(widget: Any, path: str | Path, *, title: str | None = None) -> Path:
    """Write :func:`page` to ``path`` (parent folders must exist; an existing file is replaced). Returns the path.

    Raises ``TypeError`` for a widget that is not a hiddenwidgets view, a path that is not a string or
    ``os.PathLike`` or a title that is not a string; ``ValueError`` for an empty path; ``IsADirectoryError`` for
    a path that is a folder; ``FileNotFoundError`` for a missing parent folder."""
    if not getattr(widget, "_view_file", "") or not hasattr(widget, "get_state"):
        raise TypeError(f"widget must be a hiddenwidgets view (e.g. hw.Projector, hw.ActivationMonitor); got "
                        f"{what(widget)}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file name (str or pathlib.Path); got {what(path)}: "
                        "e.g. 'monitor.html'")
    if not os.fspath(path):
        raise ValueError("path is '' (empty); pass a file name such as 'monitor.html'")
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title must be a string or None; got {what(title)}")
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"path {str(path)!r} is a folder; pass a file name inside it, e.g. "
                                f"{str(path / 'view.html')!r}")
    if not path.parent.exists():
        raise FileNotFoundError(f"cannot write {path}: folder {path.parent} does not exist")
    path.write_text(page(widget, title=title), encoding="utf-8")
    return path
