"""What every hiddenwidgets view shares: its built ES module, safe kernel routing, one state lock, static export."""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from ..pipeline.export import bundle, page_state
from ..pipeline.transport import forget_reply_route


class HiddenWidget(anywidget.AnyWidget):
    """Base class of the views: an anywidget whose messages are safe to send from a background thread.

    - Every publish is followed by :func:`~hiddenwidgets.transport.forget_reply_route`, so the browser's clicks
      reach the kernel on JupyterLab's widget subshell even while a training cell keeps the main shell busy.
    - The comm to the front end opens when the view is first shown (or its model id is first needed, e.g. inside
      a container), not at construction: a view that is never shown (a script, a training job) is never
      registered with ipywidgets, so it is collected like any object when nobody holds it, and whatever it
      watches (hooks, threads) goes with it.
    - Browser updates and background-thread state writes are serialised by one re-entrant lock,
      ``_state_lock`` (ipywidgets' sync code has none). Observers of browser-set traits run while it is held,
      so a subclass that needs a lock of its own for work those observers start must use this same lock:
      two locks taken in opposite orders by the training thread and the comm thread deadlock.
    """

    _view_file = ""  # e.g. "activation_monitor"; subclasses set it

    # What a static page adds to the synced state (``static_state()``: data the view fetches on demand when
    # live), kept in the synced state after each cell when HIDDENWIDGETS_STATIC_STATE=1, so that a notebook's
    # saved widget state holds it and ``jupyter nbconvert --to hiddenwidgets`` shows what save_html shows.
    _page_state = traitlets.Dict(help="Snapshot for converted notebooks (see hiddenwidgets.nbconvert).").tag(
        sync=True)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        if cls.__dict__.get("_view_file"):
            try:
                # the module's text, not its path: for a path anywidget watches the file and its watcher holds
                # every widget of the class forever (a connected lambda), so no view could ever be collected
                cls._esm = bundle(cls._view_file).read_text(encoding="utf-8")
            except FileNotFoundError as err:
                cls._esm = _missing_bundle_module(str(err))
        super().__init_subclass__(**kwargs)

    def __init__(self, **kwargs: Any) -> None:
        if not hasattr(self, "_state_lock"):  # a subclass may create it earlier, to share it with its own work
            self._state_lock = threading.RLock()
        super().__init__(**kwargs)

    def open(self) -> None:
        """Open the comm, but only once the view is needed (see the class docstring)."""
        if not getattr(self, "_hw_wanted", False):
            return
        super().open()
        forget_reply_route(self.comm)
        if hasattr(self, "static_state") and getattr(self, "_page_state_unhook", None) is None:
            self._page_state_unhook = after_each_cell(self._keep_page_state)

    def _keep_page_state(self, _error: BaseException | None) -> None:
        """After each cell, with HIDDENWIDGETS_STATIC_STATE=1 in the kernel's environment: store the page snapshot
        in the synced state (on the cell's own thread, so nbclient records it with the cell's messages)."""
        if os.environ.get(STATIC_STATE_ENV, "") not in ("1", "true", "yes") or self.comm is None:
            return
        try:
            snapshot = page_state(self)
        except Exception as err:  # said in the saved state, shown by the converted page; never lost
            snapshot = {"_page_state_error": f"{type(err).__name__}: {err}"}
        with self._state_lock:
            self._page_state = snapshot

    def _open_now(self) -> None:
        if self.comm is None:
            self._hw_wanted = True
            self.open()

    @property
    def model_id(self) -> str:
        self._open_now()
        return self.comm.comm_id

    def __repr__(self) -> str:
        """What the view is, for front ends without widgets (this is the text/plain of its notebook output, which
        GitHub previews and plain consoles show): its name and title, what it shows of which model or layers, and
        how to see it."""
        try:
            shows = self._describe()
        except Exception as err:  # a repr never raises; it says what it could not describe
            shows = f"{_first_sentence(type(self).__doc__)} (could not describe it: {type(err).__name__}: {err})"
        title = getattr(self, "title", "")
        head = f"{type(self).__name__}({title!r}: " if isinstance(title, str) and title else f"{type(self).__name__}("
        return f"{head}{shows}; {HOW_TO_SEE})"

    def _describe(self) -> str:
        """One line of what this view shows, of which model, layers or data; views override it."""
        return _first_sentence(type(self).__doc__)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        self._open_now()
        return super()._repr_mimebundle_(**kwargs)

    def _send(self, msg: dict, buffers: Any = None) -> None:
        super()._send(msg, buffers)
        forget_reply_route(self.comm)

    def set_state(self, sync_data: dict) -> None:
        with self._state_lock:
            super().set_state(sync_data)

    def dispose(self) -> None:
        """:meth:`close` (stop this view's work), then close the widget itself, which removes its views."""
        self.close()
        anywidget.AnyWidget.close(self)

    def save_html(self, path: str | Path, *, title: str | None = None) -> Path:
        """Write this view, with all its data, as one self-contained offline HTML file. Returns the path."""
        from ..pipeline.export import save_html

        return save_html(self, path, title=title)


STATIC_STATE_ENV = "HIDDENWIDGETS_STATIC_STATE"
HOW_TO_SEE = ("an interactive hiddenwidgets view: it shows in JupyterLab, Notebook 7 or VS Code with a running kernel; "
              "view.save_html('page.html') writes it as an offline page")


def _first_sentence(doc: str | None) -> str:
    text = " ".join((doc or "").split())
    return text.split(". ")[0].rstrip(".") if text else "a view"


def names(items: Any, at_most: int = 4) -> str:
    """``['a', 'b', 'c']`` as "a, b, c"; longer lists as "a, b, c, d … (12 in all)" (for reprs)."""
    items = [str(i) for i in items]
    if not items:
        return "none"
    shown = ", ".join(items[:at_most])
    return shown if len(items) <= at_most else f"{shown} … ({len(items)} in all)"


def model_name(model: Any) -> str:
    """The class name of a model (for reprs): 'Sequential', 'GPT2LMHeadModel'."""
    return type(model).__name__ if model is not None else "no model"


def _missing_bundle_module(message: str) -> str:
    import json

    return ("export default { render({ el }) { const p = document.createElement('pre'); "
            f"p.textContent = {json.dumps(message)}; el.appendChild(p); }} }};")


def after_each_cell(method: Callable[[BaseException | None], None]) -> Callable[[], None] | None:
    """Call the bound ``method(error)`` after each IPython cell (``error`` is what the cell raised, if anything).

    Holds the widget weakly; returns the function that unregisters, or None outside IPython.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    ip = get_ipython()
    if ip is None:
        return None
    ref = weakref.WeakMethod(method)

    def after(result: Any) -> None:
        bound = ref()
        if bound is not None:
            bound(getattr(result, "error_in_exec", None))

    ip.events.register("post_run_cell", after)

    def unhook() -> None:
        with contextlib.suppress(ValueError):
            ip.events.unregister("post_run_cell", after)

    return unhook
