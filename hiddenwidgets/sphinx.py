"""Sphinx extension: executed notebooks' hiddenwidgets views as offline pages in a Sphinx / MyST-NB site.

``extensions = ["myst_nb", "hiddenwidgets.sphinx"]`` in ``conf.py``. Each notebook is converted when Sphinx reads
it, by :func:`hiddenwidgets.nbconvert.static_views`: every hiddenwidgets view becomes its ``save_html`` page in a
self-sizing ``<iframe srcdoc>``, other widgets a note, and the saved widget state is dropped, so MyST-NB never
adds its widget manager (which it loads from a CDN). The notebooks must be executed before the build, with their
widget state saved and ``HIDDENWIDGETS_STATIC_STATE=1`` in the kernel's environment (``tools/build_site.py`` and
``make site`` do this): with ``nb_execution_mode = "off"``. MyST-NB executes after Sphinx has read the source, so
views of a notebook it executes itself would go through its CDN widget manager; the extension says so.
"""

from __future__ import annotations

from typing import Any

from ._version import __version__

__all__ = ["setup"]


def setup(app: Any) -> dict[str, Any]:
    """Register the extension (Sphinx calls this)."""
    app.add_config_value("hiddenwidgets_theme", "light", "html", types=[str])
    app.connect("source-read", _convert)
    app.connect("config-inited", _check_execution)
    return {"version": __version__, "parallel_read_safe": True, "parallel_write_safe": True}


def _check_execution(app: Any, config: Any) -> None:
    mode = getattr(config, "nb_execution_mode", "off")
    if mode != "off":
        from sphinx.util import logging

        logging.getLogger(__name__).warning(
            "hiddenwidgets.sphinx: nb_execution_mode is %r; notebooks MyST-NB executes itself keep their widget "
            "outputs, which it renders with a widget manager from a CDN (no views offline). Execute the notebooks "
            "beforehand with HIDDENWIDGETS_STATIC_STATE=1 (tools/build_site.py does) and set "
            "nb_execution_mode = 'off'.", mode)


def _convert(app: Any, docname: str, source: list[str]) -> None:
    if not str(app.env.doc2path(docname)).endswith(".ipynb") or "widget-state+json" not in source[0]:
        return
    import nbformat

    from .nbconvert import static_views

    nb = nbformat.reads(source[0], as_version=4)
    if static_views(nb, theme=app.config.hiddenwidgets_theme):
        source[0] = nbformat.writes(nb)
