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

__all__ = ["STATIC", "bundle", "page", "save_html"]

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
PAGE_CSS = (
    ":root{color-scheme:light dark;--jp-ui-font-color1:rgba(0,0,0,0.87);--jp-ui-font-color2:rgba(0,0,0,0.6);"
    "--jp-layout-color0:#ffffff;--jp-layout-color1:#ffffff;--jp-layout-color2:#eeeeee;"
    "--jp-border-color1:#bdbdbd;--jp-border-color2:#e0e0e0}"
    "@media (prefers-color-scheme: dark){:root{--jp-ui-font-color1:rgba(255,255,255,0.87);"
    "--jp-ui-font-color2:rgba(255,255,255,0.6);--jp-layout-color0:#111111;--jp-layout-color1:#212121;"
    "--jp-layout-color2:#424242;--jp-border-color1:#616161;--jp-border-color2:#424242}}"
    "body{margin:16px;font-family:system-ui,-apple-system,'Segoe UI',sans-serif;"
    "background:var(--jp-layout-color0);color:var(--jp-ui-font-color1)}"
)


def _json_for_html(value: Any) -> str:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def page(widget: Any, *, title: str | None = None) -> str:
    """The HTML text of a static page showing ``widget``."""
    if hasattr(widget, "flush"):
        widget.flush()
    state = widget.get_state()
    for key in ("_esm", "_css", "_anywidget_id", "layout", "_dom_classes"):
        state.pop(key, None)
    if hasattr(widget, "static_state"):  # data a view fetches from the kernel on demand when live
        state.update(widget.static_state())
    state, paths, buffers = _remove_buffers(state)
    payload = {
        "format": "hiddenwidgets-static/1",
        "module": bundle(widget._view_file).read_text(encoding="utf-8"),
        "state": state,
        "buffers": [{"path": p, "data": base64.b64encode(bytes(b)).decode("ascii")}
                    for p, b in zip(paths, buffers, strict=True)],
    }
    boot = (STATIC / "static_boot.js").read_text(encoding="utf-8")
    if "</script" in boot.lower():
        raise RuntimeError("static_boot.js contains '</script'; it cannot be inlined")
    heading = title or getattr(widget, "title", "") or type(widget).__name__
    return (
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{html.escape(heading)}</title>\n"
        f"<style>{PAGE_CSS}</style>\n"
        "</head>\n<body>\n<div id=\"hw-root\"></div>\n"
        f"<script type=\"application/json\" id=\"hw-payload\">{_json_for_html(payload)}</script>\n"
        f"<script>{boot}</script>\n</body>\n</html>\n"
    )


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
