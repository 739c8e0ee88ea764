"""What every hiddenwidgets view shares: its built ES module, safe kernel routing, one state lock, static export."""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anywidget

from ..pipeline.export import bundle
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

    def _open_now(self) -> None:
        if self.comm is None:
            self._hw_wanted = True
            self.open()

    @property
    def model_id(self) -> str:
        self._open_now()
        return self.comm.comm_id

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
