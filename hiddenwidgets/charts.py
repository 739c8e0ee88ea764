"""Altair charts that display and save without a network: rendered by vl-convert, which bundles Vega.

Every view's ``to_altair()`` returns an ordinary Altair chart (compose it, change its encodings as usual) whose
display carries, next to the Vega-Lite spec, the chart already rendered to SVG by ``vl-convert``. Why SVG rather
than bundling Vega's JavaScript for the notebook: Altair's own HTML output imports Vega from a CDN, so an offline
machine, a course page built with nbconvert, or a GitHub preview shows nothing. An SVG needs no JavaScript and no
network in any front end, and JupyterLab still prefers the spec where its built-in (offline) Vega renderer knows
the spec's version. Charts made by composing ours (``a | b``) are new Altair objects: pass them through
:func:`offline` to get the same display.

``save_chart(chart, "x.svg" | "x.png" | "x.pdf" | "x.html" | "x.json")`` writes a file without a browser; the
HTML inlines Vega, so the page works offline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ._optional import require

FORMATS = (".svg", ".png", ".pdf", ".html", ".json")


def _vlc():
    return require("vl_convert", "rendering charts offline")


def _spec(chart: Any) -> dict:
    to_dict = getattr(chart, "to_dict", None)
    if to_dict is None:
        raise TypeError(f"expected an Altair chart (anything with .to_dict()), got {type(chart).__name__}")
    return to_dict()


def _vegalite_version() -> str | None:
    """The Vega-Lite version Altair writes specs for, where vl-convert has it (else its newest)."""
    import altair as alt

    wanted = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    return wanted if wanted in _vlc().get_vegalite_versions() else None


def mimebundle(chart: Any) -> dict[str, Any]:
    """What a notebook receives for ``chart``: the Vega-Lite spec, the chart as SVG, and a text description."""
    import altair as alt

    spec = _spec(chart)
    svg = _vlc().vegalite_to_svg(spec, vl_version=_vegalite_version(), allowed_base_urls=[])
    major = alt.SCHEMA_VERSION.lstrip("v").split(".")[0]
    title = spec.get("title")
    title = title.get("text") if isinstance(title, dict) else title
    return {
        f"application/vnd.vegalite.v{major}+json": spec,
        "image/svg+xml": svg,
        "text/plain": f"<Altair chart{f': {title}' if title else ''} (rendered offline by vl-convert)>",
    }


def _offline_repr(self, include=None, exclude=None):
    return mimebundle(self)


def offline(chart: Any) -> Any:
    """Make ``chart`` display without a network (SVG from vl-convert beside the spec); returns the same object."""
    cls = type(chart)
    if getattr(cls, "_hw_offline", False):
        return chart
    _spec(chart)  # a clear TypeError for anything that is not a chart
    object.__setattr__(chart, "__class__", _offline_class(cls))  # SchemaBase.__setattr__ would store it as a property
    return chart


_CLASSES: dict[type, type] = {}


def _offline_class(cls: type) -> type:
    if cls not in _CLASSES:
        _CLASSES[cls] = type(cls.__name__, (cls,), {"_repr_mimebundle_": _offline_repr, "_hw_offline": True,
                                                     "__module__": cls.__module__})
    return _CLASSES[cls]


def save_chart(chart: Any, path: str | Path, *, scale: float = 1.0) -> Path:
    """Write ``chart`` to ``path`` without a browser or a network; the format follows the suffix.

    Parameters
    ----------
    chart : an Altair chart (e.g. a view's ``to_altair()``)
    path : ``.svg``, ``.png``, ``.pdf``, ``.html`` (Vega inlined: opens offline) or ``.json`` (the spec)
    scale : pixel scale for ``.png`` (2 for high-DPI figures)
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"save_chart writes {', '.join(FORMATS)} files; got {str(path)!r}. Choose one of those "
                         "suffixes.")
    if not (isinstance(scale, int | float) and scale > 0):
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    spec = _spec(chart)
    if suffix == ".json":
        path.write_text(json.dumps(spec, indent=1), encoding="utf-8")
        return path
    vlc, version = _vlc(), _vegalite_version()
    if suffix == ".svg":
        path.write_text(vlc.vegalite_to_svg(spec, vl_version=version, allowed_base_urls=[]), encoding="utf-8")
    elif suffix == ".png":
        path.write_bytes(vlc.vegalite_to_png(spec, vl_version=version, scale=float(scale), allowed_base_urls=[]))
    elif suffix == ".pdf":
        path.write_bytes(vlc.vegalite_to_pdf(spec, vl_version=version, allowed_base_urls=[]))
    else:
        path.write_text(vlc.vegalite_to_html(spec, vl_version=version, bundle=True), encoding="utf-8")
    return path


def offline_chart(method):
    """Decorator for a view's ``to_altair``: the chart it returns displays without a network."""
    import functools

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        return offline(method(*args, **kwargs))

    return wrapper
