"""ConceptAnnotator's Python side: operations from the view are acknowledged only once on disk, refused ones are
reported, resends are idempotent, views share one snapshot, a projector's selection flows in."""

from __future__ import annotations

import hashlib
import json
import sqlite3

import numpy as np
import pytest
import torch

from hiddenwidgets.pipeline.concepts import ConceptError, ConceptFileError, read_snapshot
from hiddenwidgets.pipeline.transport import decode
from hiddenwidgets.widgets import ConceptAnnotator, Projector


def annotator(tmp_path, name="concepts.db", **kw):
    a = ConceptAnnotator(str(tmp_path / name), torch.rand(40, 1, 8, 8), torch.arange(40) % 4, **kw)
    sent = []
    a.send = lambda msg, buffers=None: sent.append(msg)
    return a, sent


def test_view_operations_are_acknowledged_after_the_write(tmp_path):
    a, sent = annotator(tmp_path)
    seen_on_disk = []

    def check(msg, buffers=None):
        if msg["type"] == "ack":  # at the moment the ack is sent, the database already has the change
            seen_on_disk.append(read_snapshot(tmp_path / "concepts.db")["revision"])
        sent.append(msg)

    a.send = check
    a._on_custom(a, {"type": "ops", "ops": [
        {"op_id": "o1", "kind": "create", "name": "<img src=x onerror=alert(1)>", "members": [3, 1]},
        {"op_id": "o2", "kind": "create", "name": "<IMG src=x onerror=alert(1)>", "members": [2]},
        {"op_id": "o3", "kind": "add", "concept": "<img src=x onerror=alert(1)>", "members": [5]},
    ]}, [])
    assert [(m["type"], m["op_id"]) for m in sent] == [("ack", "o1"), ("nack", "o2"), ("ack", "o3")]
    assert "exists" in sent[1]["error"] and seen_on_disk == [1, 2]
    assert a.snapshot["revision"] == 2
    assert a.snapshot["concepts"][0]["members"] == [1, 3, 5]
    # the same batch resent (the view never saw the acks): acknowledged again, applied once
    a._on_custom(a, {"type": "ops", "ops": [{"op_id": "o1", "kind": "create", "name": "<img src=x onerror=alert(1)>",
                                              "members": [3, 1]}]}, [])
    assert sent[-1] == {"type": "ack", "op_id": "o1", "revision": 2}
    assert a.concepts() == {"<img src=x onerror=alert(1)>": [1, 3, 5]}


def test_python_changes_reach_the_views_snapshot(tmp_path):
    a, _ = annotator(tmp_path)
    a.store.create("loop", [0, 4])
    a.store.undo()
    assert a.snapshot["concepts"] == [] and a.snapshot["can_redo"]
    a.store.redo()
    assert [c["name"] for c in a.snapshot["concepts"]] == ["loop"]


def test_a_projector_selection_becomes_the_annotators(tmp_path):
    feats = {"h": torch.randn(40, 5)}
    p = Projector(feats, torch.arange(40) % 4)
    try:
        a, _ = annotator(tmp_path, projector=p)
        p._on_custom(p, {"type": "select"}, [np.array([9, 2], dtype="<i4").tobytes()])
        got = decode(a._selection["header"]["index"], a._selection["data"])["indices"]
        assert got.tolist() == [2, 9]
        a.close()
        p.select([1])  # closed: no longer follows
        assert decode(a._selection["header"]["index"], a._selection["data"])["indices"].tolist() == [2, 9]
    finally:
        p.close()


def test_examples_pages_and_bad_input(tmp_path):
    a, sent = annotator(tmp_path)
    a._on_custom(a, {"type": "examples", "page": 0}, [])
    assert sent[-1]["type"] == "examples" and "images" in sent[-1]["header"]["index"]
    with pytest.raises(ConceptError, match=r"indices must be in 0\.\.39"):
        a.select([40])
    with pytest.raises(ConceptFileError, match="annotates 40 examples but 30"):
        ConceptAnnotator(str(tmp_path / "concepts.db"), n=30)
    with pytest.raises(ConceptError, match="how many examples"):
        ConceptAnnotator(str(tmp_path / "other.db"))


def test_two_annotators_on_one_file_share_their_store_and_static_pages_hide_the_folder(tmp_path):
    a, _ = annotator(tmp_path)
    b, _ = annotator(tmp_path)  # the setup cell run again
    assert a.store is b.store
    b.store.create("second", [5])
    a._on_custom(a, {"type": "ops", "ops": [{"op_id": "x", "kind": "create", "name": "first", "members": [3]}]}, [])
    assert a.concepts() == {"second": [5], "first": [3]}
    assert a.snapshot == b.snapshot
    state = a.static_state()
    assert state["path"] == "concepts.db" and str(tmp_path) not in json.dumps(state["path"])


class FullDisk:
    """The store's connection, but COMMIT fails as SQLite fails it when the disk is full."""

    def __init__(self, conn):
        self.conn = conn

    def __getattr__(self, name):
        return getattr(self.conn, name)

    def execute(self, sql, *args):
        if sql == "COMMIT":
            raise sqlite3.OperationalError("database or disk is full")
        return self.conn.execute(sql, *args)


def test_a_failed_write_is_nacked_for_retry_so_the_view_keeps_the_change(tmp_path):
    a, sent = annotator(tmp_path)
    real = a.store._conn
    a.store._conn = FullDisk(real)
    a._on_custom(a, {"type": "ops", "ops": [{"op_id": "w1", "kind": "create", "name": "x", "members": [1]}]}, [])
    assert sent[-1]["type"] == "nack" and sent[-1]["retry"] is True and "disk is full" in sent[-1]["error"]
    assert a.snapshot["revision"] == 0 and a.concepts() == {} and read_snapshot(a.store.path)["revision"] == 0
    a.store._conn = real
    a._on_custom(a, {"type": "ops", "ops": [{"op_id": "w1", "kind": "create", "name": "x", "members": [1]}]}, [])
    assert sent[-1] == {"type": "ack", "op_id": "w1", "revision": 1} and a.concepts() == {"x": [1]}


def test_a_json_path_means_its_database_and_a_migrated_file_keeps_the_views_queue(tmp_path):
    legacy = tmp_path / "old.json"
    legacy.write_text(json.dumps({"format": "hiddenwidgets-concepts", "version": 1, "examples": 40, "revision": 1,
                                  "concepts": {"c1": {"name": "loop", "color": "#e15759", "members": [3]}},
                                  "order": ["c1"], "undo": [], "redo": [], "applied": ["o1"]}))
    a, _ = annotator(tmp_path, "old.json")
    assert a.path == str(tmp_path / "old.db") and a.concepts() == {"loop": [3]}
    # the browser kept unsaved changes under the JSON file's key before the upgrade: the same key, so it resends them
    assert a.store_key == hashlib.sha1(str(legacy).encode()).hexdigest()[:16]
    b, _ = annotator(tmp_path, "old.db")
    assert b.store is a.store and b.store_key == a.store_key
    c, _ = annotator(tmp_path, "new.json")
    assert c.path == str(tmp_path / "new.db")
    assert c.store_key == hashlib.sha1(str(tmp_path / "new.db").encode()).hexdigest()[:16]


def test_a_change_made_by_another_process_reaches_the_view_when_the_store_notices(tmp_path):
    from hiddenwidgets.pipeline.concepts import ConceptStore

    a, _ = annotator(tmp_path)
    other = ConceptStore(tmp_path / "concepts.db", examples=40)  # another kernel's store
    other.create("theirs", [7])
    assert a.snapshot["concepts"] == []
    a._on_custom(a, {"type": "ops", "ops": [{"op_id": "m", "kind": "create", "name": "mine", "members": [2]}]}, [])
    assert [c["name"] for c in a.snapshot["concepts"]] == ["theirs", "mine"]
    other.rename("theirs", "Theirs")
    assert a.store.refresh() and a.snapshot["concepts"][0]["name"] == "Theirs"
