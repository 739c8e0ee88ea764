"""What the live monitor view and a followed run share: the activation monitor's front end, its traits, and the
way browser actions (layer choice, pause, resync) reach the :class:`~hiddenwidgets.pipeline.transport.Streamer`
that feeds it."""

from __future__ import annotations

from typing import Any

import traitlets

from ..pipeline.transport import Streamer
from ._base import HiddenWidget

__all__ = ["MonitorView"]


class MonitorView(HiddenWidget):
    """Base of :class:`~hiddenwidgets.ActivationMonitor` and :class:`~hiddenwidgets.FollowedRun`: the view of a
    history that one streamer sends. A subclass says where its streamer is (:meth:`_streamer`) and calls
    :meth:`_show` once the streamer exists."""

    _view_file = "activation_monitor"
    _LAYERS_ARE = "layers"  # how an unknown-layer error names the known ones

    layers = traitlets.List(traitlets.Unicode(), help="Layer names (read-only).").tag(sync=True)
    selected_layers = traitlets.List(traitlets.Unicode(), help="Layers shown in detail; the view sets it.").tag(
        sync=True, echo_update=False)
    paused = traitlets.Bool(False, help="Stop sending frames to this view; the history keeps growing. Default "
                            "False.").tag(sync=True, echo_update=False)
    title = traitlets.Unicode("", help="Heading of the view.").tag(sync=True)
    _history = traitlets.Dict(help="Snapshot of the whole history, set by flush().").tag(sync=True)

    def _streamer(self) -> Streamer | None:
        """The streamer feeding this view (None while it is being built)."""
        raise NotImplementedError

    def _show(self, streamer: Streamer, names: list[str], title: str, layout: Any = None) -> None:
        """Create the widget for ``names`` (the first one shown in detail) and connect the browser to
        ``streamer``."""
        super().__init__(layers=names, selected_layers=names[:1], title=title,
                         **({"layout": layout} if layout is not None else {}))
        streamer.select(self.selected_layers)
        self.on_msg(self._on_custom_msg)

    # -- browser side ----------------------------------------------------------------------------------------------
    def _known_layers(self) -> list[str]:
        """The layers a view may select."""
        streamer = self._streamer()
        return list(streamer.history.layers) if streamer is not None else []

    @traitlets.validate("selected_layers")
    def _valid_selection(self, proposal: dict) -> list[str]:
        known = self._known_layers()
        unknown = [name for name in proposal["value"] if name not in known]
        if unknown:
            raise traitlets.TraitError(f"unknown layer(s) {unknown}; {self._LAYERS_ARE}: {known}")
        return proposal["value"]

    @traitlets.observe("selected_layers")
    def _selected_changed(self, change: dict) -> None:
        streamer = self._streamer()
        if streamer is not None:
            streamer.select(change["new"])

    @traitlets.observe("paused")
    def _paused_changed(self, change: dict) -> None:
        streamer = self._streamer()
        if streamer is not None:
            streamer.paused = bool(change["new"])
            if not change["new"]:
                streamer.resync()

    def _on_custom_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        streamer = self._streamer()
        if streamer is not None and isinstance(content, dict) and content.get("type") == "resync":
            streamer.resync()

    def _send_frame(self, header: dict, data: bytes) -> None:
        self.send({"type": "frame", **header}, [data])

    def _publish(self, header: dict, data: bytes) -> None:
        with self._state_lock:
            self._history = {"header": header, "data": data}
