"""ConceptAnnotator: name concepts by selecting examples (in a gallery or in a linked Projector), with every change
on disk before the view calls it saved.

The view sends each change as an operation with its own id and keeps it (also in the browser's localStorage)
until Python acknowledges it; Python applies it to a :class:`~hiddenwidgets.pipeline.concepts.ConceptStore`, which
commits it to its SQLite database (fsynced), and only then acknowledges. Unacknowledged operations are resent
(while a cell keeps the kernel busy on front ends without subshells, after a reconnect, after a kernel restart when
a new annotator opens the same file); the store applies each id once. All views of an annotator show the store's
snapshot, so they stay in sync.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import traitlets

from ..pipeline.concepts import ConceptError, ConceptFileError, ConceptStore
from ..pipeline.transport import encode
from ._base import HiddenWidget
from .projector import Examples, Projector, _color_field

__all__ = ["ConceptAnnotator"]


class ConceptAnnotator(HiddenWidget):
    """Annotate concepts: select examples, name a concept, add and remove members, rename, delete, undo, redo.

    Parameters
    ----------
    path : the database the concepts live in (created if missing, else opened; checked writable now). ``x.json``
        means ``x.db`` next to it, and a JSON file of an earlier release there is migrated into it (see
        :mod:`hiddenwidgets.pipeline.concepts`); ``annotator.path`` is the database's path.
    examples : what the gallery shows: images (N, C, H, W), table rows (N, features) or texts.
    labels : optional label per example, shown under thumbnails and usable to filter.
    projector : a :class:`~hiddenwidgets.Projector` over the same examples: its selection (lasso, box, legend)
        becomes the annotator's selection.
    n : number of examples when ``examples`` is not given.

    Keyboard (with the view focused): N new concept from the selection, A add the selection to the active concept,
    R remove it, 1-9 pick the active concept, Ctrl+Z undo, Ctrl+Shift+Z or Ctrl+Y redo, Esc clear the selection.
    """

    _view_file = "concept_annotator"

    title = traitlets.Unicode("Concepts").tag(sync=True)
    path = traitlets.Unicode("", help="The annotation database (read-only).").tag(sync=True)
    store_key = traitlets.Unicode("", help="Identifies the file for the browser's resend queue.").tag(sync=True)
    snapshot = traitlets.Dict(help="Acknowledged concepts: revision, concepts, can_undo, can_redo.").tag(sync=True)
    n = traitlets.Int(0).tag(sync=True)
    example_kind = traitlets.Unicode("none").tag(sync=True)
    example_meta = traitlets.Dict().tag(sync=True)
    label_field = traitlets.Dict(help="{kind, names} of the labels, if given.").tag(sync=True)
    _labels = traitlets.Dict(help="Label per example, {header, data}.").tag(sync=True)
    _selection = traitlets.Dict(help="Selection pushed from Python or a linked projector.").tag(sync=True)

    def _describe(self) -> str:
        return (f"concepts named by selecting examples: {len(self.snapshot.get('concepts') or [])} concepts over "
                f"{self.n} examples, stored in {Path(self.path).name}")

    def __init__(self, path: str, examples: Any = None, labels: Any = None, *, projector: Projector | None = None,
                 n: int | None = None, class_names: list[str] | None = None, static_budget: int = 8 << 20,
                 title: str = "Concepts"):
        count = n if n is not None else (len(examples) if examples is not None else
                                         (projector.n if projector is not None else None))
        if count is None:
            raise ConceptError("say how many examples are annotated: pass examples=..., projector=... or n=...")
        if projector is not None and projector.n != count:
            raise ConceptError(f"the projector shows {projector.n} examples but the annotator {count}; they must be "
                               "the same examples")
        # one store per file in this process, shared with any other annotator on it; raises before anything else
        # if the file is unusable
        self.store = ConceptStore.open(path, examples=count)
        self.static_budget = static_budget
        self.examples = Examples(examples, count) if examples is not None else (
            projector.examples if projector is not None else Examples(None, count))
        field, arrays = ({}, {})
        if labels is not None:
            field, codes = _color_field(labels, count, "label", class_names)
            arrays = {"label": codes}
        index, data = encode(arrays)
        # the browser's queue of unsaved changes is keyed by file; a database migrated from an earlier release's JSON
        # keeps that file's key, so changes a view kept from before the upgrade are still resent
        queue_path = self.store.migrated_from or self.store.path
        super().__init__(title=title, path=str(self.store.path), n=count,
                         store_key=hashlib.sha1(str(queue_path).encode()).hexdigest()[:16],
                         snapshot=self.store.snapshot(), example_kind=self.examples.kind,
                         example_meta=self.examples.meta, label_field=field,
                         _labels={"header": {"index": index}, "data": data})
        self._unsubscribe = self.store.subscribe(self._changed)
        self.projector = projector
        if projector is not None:
            projector.observe(self._projector_selection, "selection")
            self._projector_selection({"new": projector.selection})
        self.on_msg(self._on_custom)

    # -- Python API ----------------------------------------------------------------------------------------------
    def concepts(self) -> dict[str, list[int]]:
        """Concept name -> member indices (acknowledged, on disk)."""
        return self.store.concepts()

    def select(self, indices: Any) -> None:
        """Set the view's selection from Python."""
        idx = np.unique(np.asarray(indices, dtype=np.int64).reshape(-1))
        if len(idx) and (idx[0] < 0 or idx[-1] >= self.n):
            raise ConceptError(f"indices must be in 0..{self.n - 1}")
        index, data = encode({"indices": idx.astype(np.int32)})
        with self._state_lock:
            self._selection = {"header": {"index": index, "count": len(idx)}, "data": data}

    def _projector_selection(self, change: dict) -> None:
        self.select(change["new"])

    def _changed(self, store: ConceptStore) -> None:
        with self._state_lock:
            self.snapshot = store.snapshot()

    # -- messages from the view ----------------------------------------------------------------------------------
    def _on_custom(self, _widget: Any, content: Any, buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        kind = content.get("type")
        if kind == "ops":  # a batch of operations, in the order they were made
            for op in content.get("ops", []):
                op_id = str(op.get("op_id", ""))
                try:
                    ack = self.store.apply(op)
                except ConceptFileError as err:  # not saved (disk full, permissions): the view keeps it, resends
                    self.send({"type": "nack", "op_id": op_id, "retry": True, "error": str(err)})
                    continue
                except ConceptError as err:  # refused for good (a duplicate name, nothing selected)
                    self.send({"type": "nack", "op_id": op_id, "error": str(err)})
                    continue
                except Exception as err:  # never lose the view's copy: it resends until acknowledged
                    self.send({"type": "nack", "op_id": op_id, "retry": True,
                               "error": f"{type(err).__name__}: {err}"})
                    continue
                self.send({"type": "ack", "op_id": op_id, "revision": ack["revision"]})
        elif kind == "examples":
            page = int(content.get("page", 0))
            header, data = self.examples.page(page)
            self.send({"type": "examples", "page": page, "header": header}, [data])

    def static_state(self) -> dict[str, Any]:
        """Static pages carry the example pages up to ``static_budget`` bytes (a read-only view of the concepts)."""
        pages, spent = {}, 0
        for number in range(self.examples.pages(self.n)):
            header, data = self.examples.page(number)
            spent += len(data) + sum(len(t) for t in header.get("texts", []))
            if spent > self.static_budget:  # the rest show "not saved in this page"
                break
            pages[str(number)] = {"header": header, "data": data}
        return {"_static": {"pages": pages}, "path": Path(self.path).name}  # no local folders in course pages

    def close(self) -> None:
        """Stop following the store and the projector; safe to call again (ipywidgets' __del__ calls it too)."""
        if getattr(self, "_hw_detached", False):
            super().close()
            return
        self._hw_detached = True
        if hasattr(self, "_unsubscribe"):
            self._unsubscribe()
        if getattr(self, "projector", None) is not None:
            self.projector.unobserve(self._projector_selection, "selection")
        super().close()
