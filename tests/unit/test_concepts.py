"""ConceptStore: operations, undo/redo, idempotent resends, durability (kill -9 at random moments), several
processes, bad files refused untouched, migration of the JSON files of earlier releases, merge, export."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import random
import resource
import select
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from hiddenwidgets.pipeline.concepts import (
    APPLICATION_ID,
    JSON_VERSION,
    VERSION,
    ConceptError,
    ConceptFileError,
    ConceptStore,
    read_snapshot,
)

FORK = multiprocessing.get_context("fork")


def on_disk(path: Path) -> dict[str, list[int]]:
    """What the database holds, read through a connection of its own (as another process would)."""
    return {c["name"]: c["members"] for c in read_snapshot(path)["concepts"]}


def files(folder: Path) -> dict[str, bytes]:
    """Every file's bytes, but SQLite's shared-memory index (-shm: read marks and locks, rewritten by any reader)
    and an empty log (-wal: removed when the last connection closes, which for a store nobody closed is whenever
    Python's cyclic garbage collector frees its connection)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())
            if p.is_file() and not p.name.endswith("-shm") and not (p.name.endswith("-wal") and not p.stat().st_size)}


def legacy_v1(examples: int | None = 20) -> dict:
    """A JSON file as earlier releases wrote it: create loop [0, 6], create thin [1], add 8 to loop, create tmp [2],
    undo (so tmp is on the redo stack)."""
    return {
        "format": "hiddenwidgets-concepts", "version": 1, "examples": examples, "revision": 5, "created": 1.0,
        "concepts": {"c1": {"name": "loop", "color": "#e15759", "members": [0, 6, 8], "created": 1.0, "updated": 3.0},
                     "c2": {"name": "thin", "color": "#4e79a7", "members": [1], "created": 2.0, "updated": 2.0}},
        "order": ["c1", "c2"],
        "undo": [{"kind": "delete", "concept": "c1",
                  "redo": {"kind": "create", "name": "loop", "members": [0, 6], "concept": "c1"}},
                 {"kind": "delete", "concept": "c2",
                  "redo": {"kind": "create", "name": "thin", "members": [1], "concept": "c2"}},
                 {"kind": "remove", "concept": "c1", "members": [8],
                  "redo": {"kind": "add", "concept": "c1", "members": [8]}}],
        "redo": [{"kind": "create", "name": "tmp", "members": [2], "concept": "c3",
                  "redo": {"kind": "delete", "concept": "c3"}}],
        "applied": ["op-1", "op-2", "op-3", "op-4", "op-5"],
    }


def test_every_acknowledged_change_is_already_in_the_database(tmp_path):
    path = tmp_path / "concepts.db"
    store = ConceptStore(path, examples=100)
    assert path.exists() and on_disk(path) == {}
    loop = store.create("closed loop", [8, 0, 6, 6])
    assert on_disk(path) == {"closed loop": [0, 6, 8]}
    store.add(loop, [9, 0])
    store.remove("closed loop", [6])
    store.create("straight <b>stroke</b>", [1, 7])
    store.rename("straight <b>stroke</b>", "straight stroke")
    assert on_disk(path) == {"closed loop": [0, 8, 9], "straight stroke": [1, 7]}
    assert store.revision == 5 and read_snapshot(path)["revision"] == 5
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT concept, example FROM concept_members").fetchall() == [
            ("closed loop", 0), ("closed loop", 8), ("closed loop", 9), ("straight stroke", 1), ("straight stroke", 7)]
        assert conn.execute("PRAGMA user_version").fetchone()[0] == VERSION
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again = ConceptStore(path, examples=100)
    assert again.concepts() == store.concepts() and again.revision == 5


def test_undo_and_redo_walk_back_and_forth_through_every_kind_of_change(tmp_path):
    store = ConceptStore(tmp_path / "c.db", examples=20)
    a = store.create("a", [1, 2])
    store.add(a, [2, 3])          # only 3 is new
    store.rename(a, "A")
    store.create("b", [5])
    store.delete("b")
    states = [{"a": [1, 2]}, {"a": [1, 2, 3]}, {"A": [1, 2, 3]}, {"A": [1, 2, 3], "b": [5]}, {"A": [1, 2, 3]}]
    for expected in reversed(states[:-1]):
        store.undo()
        assert store.concepts() == expected
    store.undo()
    assert store.concepts() == {}
    with pytest.raises(ConceptError, match="nothing to undo"):
        store.undo()
    for expected in states:
        store.redo()
        assert store.concepts() == expected
    with pytest.raises(ConceptError, match="nothing to redo"):
        store.redo()
    store.undo()
    store.create("c", [7])  # a new change clears the redo stack
    with pytest.raises(ConceptError, match="nothing to redo"):
        store.redo()
    assert list(store.concepts()) == ["A", "b", "c"]  # an undone delete comes back in its place
    reopened = ConceptStore(tmp_path / "c.db", examples=20)  # the stacks are in the database: undo across sessions
    reopened.undo()
    reopened.undo()
    assert reopened.concepts() == {"A": [1, 2, 3]}


def test_undo_keeps_the_last_undo_kept_entries(tmp_path, monkeypatch):
    import hiddenwidgets.pipeline.concepts as concepts

    monkeypatch.setattr(concepts, "UNDO_KEPT", 3)
    store = ConceptStore(tmp_path / "c.db", examples=20)
    a = store.create("a", [0])
    for i in range(1, 6):
        store.add(a, [i])
    for _ in range(3):
        store.undo()
    assert store["a"] == [0, 1, 2]
    with pytest.raises(ConceptError, match="nothing to undo"):
        store.undo()


def test_a_resent_operation_is_applied_once_even_after_a_restart(tmp_path):
    path = tmp_path / "c.db"
    store = ConceptStore(path, examples=10)
    op = {"op_id": "view-1-op-7", "kind": "create", "name": "x", "members": [1]}
    first = store.apply(op)
    again = ConceptStore(path, examples=10).apply(op)  # the kernel restarted; the browser resends
    assert again["duplicate"] and again["revision"] == first["revision"] == 1
    assert ConceptStore(path).concepts() == {"x": [1]}


def test_bad_changes_are_refused_and_write_nothing(tmp_path):
    path = tmp_path / "c.db"
    store = ConceptStore(path, examples=10)
    store.create("loop", [1])
    before = files(tmp_path)
    with pytest.raises(ConceptError, match="nothing is selected"):
        store.create("empty", [])
    with pytest.raises(ConceptError, match="a concept named 'loop' exists"):
        store.create("LOOP", [2])
    with pytest.raises(ConceptError, match="example 10 is out of range"):
        store.add("loop", [10])
    with pytest.raises(ConceptError, match="example indices"):
        store.add("loop", [1.5])
    with pytest.raises(ConceptError, match="no concept 'nope'"):
        store.add("nope", [1])
    with pytest.raises(ConceptError, match="non-empty name"):
        store.rename("loop", "  ")
    with pytest.raises(ConceptError, match="unknown operation"):
        store.apply({"kind": "explode"})
    assert files(tmp_path) == before and store.revision == 1  # the database and its log: byte for byte


def _disk_full_child(path: str, report) -> None:
    """In a child process: make writes past the log's current end fail (EFBIG, as a full quota would), try a big
    change, then lift the limit and retry it."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    store = ConceptStore(path, examples=100_000)
    before = (store.concepts(), store.revision)
    op = {"op_id": "big", "kind": "add", "concept": "a", "members": list(range(2, 6000))}
    resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(path + "-wal"), resource.RLIM_INFINITY))
    try:
        store.apply(op)
        report.send(("acknowledged", None))
        return
    except ConceptFileError as err:
        message = str(err)
    after = (store.concepts(), store.revision)
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    ack = store.apply(op)  # the view resends it
    report.send((message, (before == after, ack["revision"], len(store["a"]))))


def test_a_failed_write_is_not_acknowledged_and_leaves_the_store_as_it_was(tmp_path):
    path = tmp_path / "c.db"
    ConceptStore(path, examples=100_000).create("a", [1])
    ours, theirs = FORK.Pipe()
    child = FORK.Process(target=_disk_full_child, args=(str(path), theirs))
    child.start()
    message, outcome = ours.recv()
    child.join()
    assert outcome is not None, "a change was acknowledged although the disk refused it"
    assert message.startswith(f"cannot write {path}") and "the disk refused the write" in message
    unchanged, revision, size = outcome
    assert unchanged and revision == 2 and size == 5999  # memory as before; the resend then went through
    assert len(on_disk(path)["a"]) == 5999


@pytest.fixture
def tiny_disk():
    """A 1 MiB tmpfs (needs root and a kernel that allows mounts here): a real 'No space left on device'."""
    folder = Path(tempfile.mkdtemp(prefix="hw-tiny-"))
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)],
                                           capture_output=True).returncode != 0:
        folder.rmdir()
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)
        folder.rmdir()


def test_a_full_disk_is_a_clear_error_and_loses_nothing_acknowledged(tiny_disk):
    store = ConceptStore(tiny_disk / "c.db", examples=10**6)
    a = store.create("a", [0])
    acknowledged = [0]
    with pytest.raises(ConceptFileError, match="the disk is full") as info:
        for start in range(1, 10**6, 5000):
            store.add(a, range(start, start + 5000))
            acknowledged.extend(range(start, start + 5000))
    assert str(tiny_disk) in str(info.value)
    assert store["a"] == acknowledged  # memory holds exactly what was acknowledged
    store.close()
    moved = Path(tempfile.mkdtemp(prefix="hw-moved-"))  # to a disk with room: the database and its log
    try:
        for name in ("c.db", "c.db-wal"):
            if (tiny_disk / name).exists():
                shutil.copy2(tiny_disk / name, moved / name)
        assert ConceptStore(moved / "c.db")["a"] == acknowledged
    finally:
        shutil.rmtree(moved)


@pytest.mark.parametrize("content", [
    b'{"format": "hiddenwidgets-concepts", "version": 1, "concepts": {',
    json.dumps({"format": "hiddenwidgets-concepts", "version": JSON_VERSION + 1, "concepts": {}}).encode(),
    b"[1, 2, 3]",
    b"",
    b"\x00\x01 not a database at all",
], ids=["truncated", "newer", "not-an-object", "empty", "binary"])
def test_unreadable_or_newer_json_files_are_left_untouched(tmp_path, content):
    path = tmp_path / "c.json"
    path.write_bytes(content)
    with pytest.raises(ConceptFileError, match=r"untouched|not a hiddenwidgets") as info:
        ConceptStore(path)
    if content.startswith(b'{"format": "hiddenwidgets-concepts", "version": 2'):
        assert "newer hiddenwidgets" in str(info.value)
    assert files(tmp_path) == {"c.json": content}  # nothing changed, nothing written next to it


def _invalid(change):
    data = legacy_v1()
    change(data)
    return data


INVALID = {
    "concepts-a-list": lambda d: d.update(concepts=[]),
    "member-a-string": lambda d: d["concepts"]["c1"].update(members=[0, "6"]),
    "member-a-bool": lambda d: d["concepts"]["c1"].update(members=[True]),
    "member-out-of-range": lambda d: d["concepts"]["c1"].update(members=[0, 20]),
    "member-negative": lambda d: d["concepts"]["c2"].update(members=[-1]),
    "unknown-id-in-order": lambda d: d.update(order=["c1", "c2", "c9"]),
    "id-missing-from-order": lambda d: d.update(order=["c1"]),
    "colour-not-a-colour": lambda d: d["concepts"]["c1"].update(color="url(http://example.com/x)"),
    "colour-missing": lambda d: d["concepts"]["c1"].pop("color"),
    "duplicate-names": lambda d: d["concepts"]["c2"].update(name="LOOP"),
    "empty-name": lambda d: d["concepts"]["c2"].update(name=" "),
    "undo-entry-bad-kind": lambda d: d["undo"].append({"kind": "explode", "concept": "c1", "redo": {}}),
    "undo-entry-member-out-of-range": lambda d: d["undo"][2].update(members=[99]),
    "redo-not-a-list": lambda d: d.update(redo={}),
    "applied-not-strings": lambda d: d.update(applied=[1, 2]),
    "revision-negative": lambda d: d.update(revision=-1),
    "examples-a-string": lambda d: d.update(examples="20"),
}


@pytest.mark.parametrize("name", list(INVALID))
def test_structurally_invalid_json_files_are_refused_untouched(tmp_path, name):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(_invalid(INVALID[name])))
    before = files(tmp_path)
    with pytest.raises(ConceptFileError, match="left untouched"):
        ConceptStore(path)
    with pytest.raises(ConceptFileError):
        read_snapshot(path)
    assert files(tmp_path) == before


def _valid_database(path: Path) -> None:
    store = ConceptStore(path, examples=20)
    store.create("loop", [0, 6])
    store.create("thin", [1])
    store.close()


DB_INVALID = {
    "member-out-of-range": "INSERT INTO members SELECT key, 25 FROM concepts LIMIT 1",
    "member-of-unknown-concept": "INSERT INTO members VALUES (99, 3)",
    "member-not-an-integer": "INSERT INTO members SELECT key, 'x' FROM concepts LIMIT 1",
    "colour-not-a-colour": "UPDATE concepts SET color = 'red'",
    "duplicate-names": "UPDATE concepts SET name = 'Loop' WHERE name = 'thin'",
    "positions-clash": "UPDATE concepts SET position = 0",
    "newer-version": f"PRAGMA user_version = {VERSION + 1}",
    "another-application": "PRAGMA application_id = 7",
    "missing-table": "DROP TABLE applied",
    "revision-not-a-number": "UPDATE meta SET value = 'x' WHERE key = 'revision'",
}


@pytest.mark.parametrize("name", list(DB_INVALID))
def test_invalid_or_newer_databases_are_refused_untouched(tmp_path, name):
    path = tmp_path / "c.db"
    _valid_database(path)
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute(DB_INVALID[name])
    before = files(tmp_path)
    assert set(before) == {"c.db", ".c.db.lock"}  # closed cleanly: no log left
    with pytest.raises(ConceptFileError, match="untouched") as info:
        ConceptStore(path)
    if name == "newer-version":
        assert f"format version {VERSION + 1}" in str(info.value) and "upgrade hiddenwidgets" in str(info.value)
    assert files(tmp_path) == before  # byte-identical, and no log with anything in it


def test_opening_a_database_never_writes_it(tmp_path):
    path = tmp_path / "c.db"
    _valid_database(path)
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    for _ in range(3):
        store = ConceptStore(path, examples=20)
        assert store.concepts() == {"loop": [0, 6], "thin": [1]} and store.snapshot()["can_undo"]
        store.close()
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime


def _run_as_nobody(target, *args):
    """``target(*args)`` in a child process that runs as user nobody (root ignores file permissions); returns
    what it raised, as ``(type name, message)``, or None."""
    ours, theirs = FORK.Pipe()

    def child():
        try:
            os.setgid(65534)
            os.setuid(65534)
            target(*args)
            theirs.send(None)
        except BaseException as err:  # reported to the test
            theirs.send((type(err).__name__, str(err)))

    process = FORK.Process(target=child)
    process.start()
    out = ours.recv()
    process.join()
    return out


def test_an_unwritable_place_is_refused_before_any_label(tmp_path):
    with pytest.raises(ConceptFileError, match="does not exist"):
        ConceptStore(tmp_path / "missing" / "c.db")
    if os.geteuid() != 0:
        pytest.skip("the rest runs the store as user nobody, which needs root")
    shared = Path(tempfile.mkdtemp(prefix="hw-perm-"))  # (pytest's tmp_path is not reachable by nobody)
    try:
        shared.chmod(0o755)
        (shared / "readonly").mkdir(mode=0o755)  # owned by root: nobody cannot write in it
        (shared / "open").mkdir()
        (shared / "open").chmod(0o777)
        error = _run_as_nobody(ConceptStore, shared / "readonly" / "c.db", 10)
        assert error and error[0] == "ConceptFileError" and "not writable" in error[1], error
        assert list((shared / "readonly").iterdir()) == []
        # an existing database in a folder nobody may not write (SQLite cannot make its log there)
        _valid_database(shared / "readonly" / "d.db")
        (shared / "readonly" / "d.db").chmod(0o666)
        error = _run_as_nobody(ConceptStore, shared / "readonly" / "d.db", 20)
        assert error and error[0] == "ConceptFileError" and "writable" in error[1], error
        # ... but it can be read (merged from): no process can be writing it there
        assert _run_as_nobody(lambda: ConceptStore(shared / "open" / "g.db").merge(shared / "readonly" / "d.db")) \
            is None
        # a database nobody may not write, in a folder nobody may write
        _valid_database(shared / "open" / "e.db")
        (shared / "open" / "e.db").chmod(0o644)
        error = _run_as_nobody(ConceptStore, shared / "open" / "e.db", 20)
        assert error and error[0] == "ConceptFileError" and "permission denied" in error[1], error
        # exporting into a folder nobody may not write: a clear error, not a raw OSError
        with ConceptStore(shared / "open" / "f.db", examples=5) as store:
            store.create("a", [1])
        (shared / "open" / "f.db").chmod(0o666)
        error = _run_as_nobody(lambda: ConceptStore(shared / "open" / "f.db").to_csv(shared / "readonly" / "f.csv"))
        assert error and error[0] == "ConceptFileError" and "cannot write the CSV" in error[1], error
    finally:
        shutil.rmtree(shared)


def test_merge_adds_new_concepts_and_reports_conflicts_without_overwriting(tmp_path):
    mine = ConceptStore(tmp_path / "mine.db", examples=50)
    mine.create("loop", [0, 6, 8])
    mine.create("thin", [1])
    theirs = ConceptStore(tmp_path / "theirs.db", examples=50)
    theirs.create("Loop", [0, 6, 9])
    theirs.create("thin", [1])
    theirs.create("curvy", [2, 3])
    report = mine.merge(tmp_path / "theirs.db")
    assert report.added == ["curvy"] and report.same == ["thin"]
    assert report.conflicts == [{"name": "Loop", "only_here": [8], "only_there": [9]}]
    assert mine.concepts() == {"loop": [0, 6, 8], "thin": [1], "curvy": [2, 3]}
    assert "1 conflicts left as they were" in str(report)
    union = mine.merge(theirs, resolve="union")
    assert union.merged == ["Loop"] and mine["loop"] == [0, 6, 8, 9]
    with pytest.raises(ConceptFileError, match="annotates 50 examples, the other 7"):
        mine.merge(ConceptStore(tmp_path / "other.db", examples=7))


def test_merging_a_json_file_of_an_earlier_release_only_reads_it(tmp_path):
    theirs = tmp_path / "theirs.json"
    theirs.write_text(json.dumps(legacy_v1()))
    before = files(tmp_path)
    mine = ConceptStore(tmp_path / "mine.db", examples=20)
    report = mine.merge(theirs)
    assert report.added == ["loop", "thin"] and mine.concepts() == {"loop": [0, 6, 8], "thin": [1]}
    assert {k: v for k, v in files(tmp_path).items() if k.startswith("theirs")} == before  # not migrated


def test_export_rows_csv_and_dataframe(tmp_path):
    store = ConceptStore(tmp_path / "c.db", examples=10)
    store.create('a "quoted", name', [3, 1])
    rows = store.rows()
    assert [(r["concept"], r["example"]) for r in rows] == [('a "quoted", name', 1), ('a "quoted", name', 3)]
    text = store.to_csv(tmp_path / "c.csv").read_text()
    assert text.splitlines()[1].startswith('"a ""quoted"", name",1,')
    pd = pytest.importorskip("pandas")
    frame = store.to_dataframe()
    assert isinstance(frame, pd.DataFrame) and frame["example"].tolist() == [1, 3]


def test_csv_export_keeps_formula_like_names_as_text(tmp_path):
    import csv

    store = ConceptStore(tmp_path / "c.db", examples=10)
    names = ["=HYPERLINK(\"http://x\")", "+1", "-2+3", "@SUM(A1)", "plain = text", "a-b"]
    for i, name in enumerate(names):
        store.apply({"kind": "create", "name": name, "members": [i], "concept": f"id{i}"})
    # names are stripped, so only ids (which a caller may choose) can start with a tab or a carriage return
    ids = ["=cmd|' /C calc'!A0", "\tid", "\rid"]
    for i, cid in enumerate(ids):
        store.apply({"kind": "create", "name": f"odd id {i}", "members": [7 + i], "concept": cid})
    with store.to_csv(tmp_path / "c.csv").open(newline="", encoding="utf-8") as f:
        read = list(csv.reader(f))[1:]
    assert [r[0] for r in read][:6] == ["'=HYPERLINK(\"http://x\")", "'+1", "'-2+3", "'@SUM(A1)", "plain = text",
                                        "a-b"]
    assert [r[2] for r in read][-3:] == ["'=cmd|' /C calc'!A0", "'\tid", "'\rid"]
    assert [r["concept"] for r in store.rows()][:4] == names[:4]  # rows() and to_dataframe() keep the real names


def test_a_failed_export_leaves_the_old_csv_and_no_temporary_file(tmp_path, monkeypatch):
    store = ConceptStore(tmp_path / "c.db", examples=10)
    store.create("a", [1])
    (tmp_path / "c.csv").write_text("the previous export\n")

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(ConceptFileError, match=r"cannot write the CSV .* the disk is full"):
        store.to_csv(tmp_path / "c.csv")
    assert (tmp_path / "c.csv").read_text() == "the previous export\n"
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_a_failed_creation_leaves_no_database_and_no_temporary_file(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(ConceptFileError, match=r"cannot create .* the disk is full"):
        ConceptStore(tmp_path / "c.db", examples=10)
    assert [p.name for p in tmp_path.iterdir()] == [".c.db.lock"]
    monkeypatch.undo()
    # temporary files a killed process left behind are removed by the next creation (under the lock)
    for leftover in (".c.db.x1y2.tmp", ".c.db.x1y2.tmp-journal"):
        (tmp_path / leftover).write_bytes(b"half a database")
    ConceptStore(tmp_path / "c.db", examples=10).create("a", [1])
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("c.db")) == [".c.db.lock"]


WRITER = "writer"


def _acking_writer(path: str, fd: int, start: int) -> None:
    """Child: apply operations forever, writing each acknowledged one to the pipe ``fd`` before the next starts.
    Every operation adds its number to "grows" and adds or removes a 1,500-member block of "bulk" (a write big
    enough that kills land inside it)."""
    store = ConceptStore(path, examples=200_000)
    rng = random.Random(start)
    for i in range(start, start + 10**6):
        store.apply({"op_id": f"grow-{i}", "kind": "add", "concept": "grows", "members": [i]})
        os.write(fd, f"{i}\n".encode())
        block = rng.sample(range(100_000, 200_000), 1500)
        store.apply({"op_id": f"bulk-{i}", "kind": "add" if i % 2 else "remove", "concept": "bulk",
                     "members": block})


def test_kill_9_at_random_moments_loses_nothing_acknowledged(tmp_path):
    """A process applying operations is SIGKILLed at random moments (after a random number of acknowledgements,
    plus a random delay of up to one operation): each time, the database opens cleanly, passes SQLite's integrity
    check and holds every acknowledged operation; a resent acknowledged operation is applied once."""
    path = tmp_path / "c.db"
    with ConceptStore(path, examples=200_000) as store:
        store.create("grows", [0])
        store.create("bulk", [100_000])
    rng = random.Random(11)
    acknowledged: set[int] = set()
    present = {0}  # what the database held after the previous round
    start = 1
    for round_ in range(12):
        read, write = os.pipe()
        child = FORK.Process(target=_acking_writer, args=(str(path), write, start))
        child.start()
        os.close(write)
        want, seen, buffer = rng.randint(1, 25), [], b""
        deadline = time.monotonic() + 60
        while len(seen) < want:
            assert time.monotonic() < deadline, f"round {round_}: the writer acknowledged only {seen}"
            if select.select([read], [], [], 1)[0]:
                chunk = os.read(read, 4096)
                assert chunk, f"round {round_}: the writer died: exit code {child.exitcode}"
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                seen += [int(x) for x in lines]
        time.sleep(rng.uniform(0, 0.012))  # a random moment within the next operation (about 3-10 ms each)
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        assert child.exitcode == -signal.SIGKILL
        while chunk := os.read(read, 4096):  # acknowledgements written before the kill
            buffer += chunk
        os.close(read)
        seen += [int(x) for x in buffer.split(b"\n") if x]
        acknowledged.update(seen)
        with contextlib.closing(sqlite3.connect(path)) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        with ConceptStore(path, examples=200_000) as after:
            members = set(after["grows"])
            lost = acknowledged - members
            assert not lost, f"round {round_}: acknowledged but lost: {sorted(lost)[:5]}"
            # at most the one operation of this round whose acknowledgement the kill cut off
            assert len(members - acknowledged - present) <= 1
            present = members
            last = max(seen)
            assert after.apply({"op_id": f"grow-{last}", "kind": "add", "concept": "grows",
                                "members": [last]}).get("duplicate")
            start = max(members) + 1
    assert len(acknowledged) >= 12


def _adder(path: str, fd: int, writer: int, count: int) -> None:
    store = ConceptStore(path, examples=10_000)
    for i in range(count):
        member = writer * 1000 + i
        store.apply({"op_id": f"w{writer}-{i}", "kind": "add", "concept": "shared", "members": [member]})
        os.write(fd, f"{member}\n".encode())
        if i % 10 == 5:  # other kinds of change in between (on its own concept: undo would be anyone's)
            try:
                store.apply({"op_id": f"w{writer}-{i}-c", "kind": "create", "name": f"w{writer}-{i}", "members": [i]})
                store.apply({"op_id": f"w{writer}-{i}-r", "kind": "rename", "concept": f"w{writer}-{i}",
                             "name": f"W{writer}-{i}"})
                store.apply({"op_id": f"w{writer}-{i}-d", "kind": "delete", "concept": f"W{writer}-{i}"})
            except ConceptError as err:  # e.g. its own acknowledged concept is gone
                os.write(fd, f"error {err}\n".encode())


def _opener(path: str, fd: int, stop) -> None:
    """Open the store again and again (as a second kernel would) until told to stop; report opens and revisions."""
    revisions = []
    while not stop.is_set():
        with ConceptStore(path, examples=10_000) as store:
            revisions.append(store.revision)
            store.concepts()
    os.write(fd, json.dumps(revisions).encode())


def spawn(target, path: str, *args):
    """A forked process running ``target(path, fd, *args)``; returns it and the read end of its pipe (the write
    end is closed here at once, so no later child inherits it and the read sees EOF when the process ends)."""
    read, write = os.pipe()
    process = FORK.Process(target=target, args=(path, write, *args))
    process.start()
    os.close(write)
    return process, read


def read_all(fd: int) -> bytes:
    out = b""
    while chunk := os.read(fd, 65536):
        out += chunk
    os.close(fd)
    return out


def test_several_processes_writing_and_opening_lose_no_acknowledged_change(tmp_path):
    """3 processes add members (and create, rename, delete) while 2 others keep opening the store: at the end every
    acknowledged add is in the database, and no opener ever saw the revision go back."""
    path = tmp_path / "c.db"
    with ConceptStore(path, examples=10_000) as store:
        store.create("shared", [9999])
    stop = FORK.Event()
    openers = [spawn(_opener, str(path), stop) for _ in range(2)]
    writers = [spawn(_adder, str(path), k, 100) for k in range(3)]
    acknowledged, errors = set(), []
    for process, read in writers:
        lines = read_all(read).decode().splitlines()
        process.join()
        assert process.exitcode == 0
        acknowledged |= {int(x) for x in lines if not x.startswith("error")}
        errors += [x for x in lines if x.startswith("error")]
    stop.set()
    seen = []
    for process, read in openers:
        out = read_all(read)
        process.join()
        assert process.exitcode == 0
        seen.append(json.loads(out))
    assert len(acknowledged) == 300
    final = ConceptStore(path, examples=10_000)
    lost = acknowledged - set(final["shared"])
    assert not lost and not errors, f"{len(lost)} acknowledged adds lost: {sorted(lost)[:5]}; writers: {errors[:3]}"
    assert set(final.concepts()) == {"shared"}  # every concept made in between was deleted
    for revisions in seen:
        assert len(revisions) >= 3, "an opener hardly ran while the writers wrote"
        assert revisions == sorted(revisions)
    assert final.revision == 1 + 300 + 3 * 10 * 3


def test_numpy_and_torch_indices_are_stored_as_plain_integers(tmp_path):
    import numpy as np
    import torch

    store = ConceptStore(tmp_path / "c.db", examples=10)
    store.create("np", np.array([3, 1], dtype=np.int64))
    store.add("np", torch.tensor([5]))
    store.add("np", [np.float64(7.0)])
    store.undo()
    assert on_disk(tmp_path / "c.db") == {"np": [1, 3, 5]}
    assert all(type(m) is int for m in store["np"])


def test_two_stores_on_one_database_see_each_others_changes(tmp_path):
    """As two kernels would: each store catches up with the other's changes before it applies its own, and a read
    notices them too (calling the listeners)."""
    path = tmp_path / "c.db"
    first = ConceptStore(path, examples=10)
    second = ConceptStore(path, examples=10)
    calls = []
    first.subscribe(lambda store: calls.append(store.revision))
    first.create("a", [1])
    second.create("b", [2])   # second had not seen "a": it must catch up, not overwrite
    first.add("a", [3])
    assert on_disk(path) == {"a": [1, 3], "b": [2]} == first.concepts() == second.concepts()
    second.rename("b", "B")
    assert calls == [1, 3]
    assert first.snapshot()["concepts"][1]["name"] == "B" and calls == [1, 3, 4]
    second.undo()
    assert first.refresh() and not first.refresh() and first.concepts() == {"a": [1, 3], "b": [2]}
    assert ConceptStore.open(path) is ConceptStore.open(str(path)) is not first  # one shared store per file
    assert ConceptStore.open(tmp_path / "c.json") is ConceptStore.open(path)  # x.json names x.db


def test_open_refuses_a_different_example_count(tmp_path):
    store = ConceptStore.open(tmp_path / "c.db", examples=10)
    with pytest.raises(ConceptFileError, match="annotates 10 examples but 12"):
        ConceptStore.open(tmp_path / "c.db", examples=12)
    with pytest.raises(ConceptFileError, match="annotates 10 examples but 12"):
        ConceptStore(tmp_path / "c.db", examples=12)
    assert store.concepts() == {}


def test_union_merge_of_a_subset_and_a_bad_other_file_change_nothing_half_way(tmp_path):
    mine = ConceptStore(tmp_path / "mine.db", examples=20)
    mine.create("loop", [0, 6, 8])
    theirs = ConceptStore(tmp_path / "theirs.db", examples=20)
    theirs.create("loop", [0, 6])   # a subset: the union is ours
    theirs.create("new", [1])
    report = mine.merge(theirs, resolve="union")
    assert report.same == ["loop"] and report.added == ["new"] and report.merged == []
    bad = legacy_v1(examples=None)
    bad["concepts"]["c2"]["members"] = [1, 99]   # out of range for 20 examples
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    before = mine.concepts()
    with pytest.raises(ConceptError, match="example 99 is out of range"):
        mine.merge(tmp_path / "bad.json")
    assert mine.concepts() == before


def test_a_deleted_database_is_written_back_complete_and_a_replaced_one_refused(tmp_path):
    path = tmp_path / "c.db"
    store = ConceptStore(path, examples=5)
    store.create("a", [1])
    for suffix in ("", "-wal", "-shm"):  # someone cleaned the folder while the annotator was open
        Path(f"{path}{suffix}").unlink()
    store.add("a", [2])
    assert on_disk(path) == {"a": [1, 2]}
    store.undo()  # the undo history came back too
    assert on_disk(path) == {"a": [1]}
    store.close()
    other = tmp_path / "other.db"
    ConceptStore(other, examples=5).create("b", [3])
    store = ConceptStore(path, examples=5)
    os.replace(other, path)
    with pytest.raises(ConceptFileError, match="replaced by another file"):
        store.add("a", [4])
    assert store.concepts() == {"a": [1]}


def test_a_new_database_follows_the_umask_and_a_migrated_one_keeps_the_files_mode(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(legacy_v1()))
    path.chmod(0o664)  # a shared annotation folder
    ConceptStore(path, examples=20)
    assert (tmp_path / "c.db").stat().st_mode & 0o777 == 0o664
    assert (tmp_path / "c.v1-backup.json").stat().st_mode & 0o777 == 0o664
    umask = os.umask(0o022)
    try:
        ConceptStore(tmp_path / "new.db")
    finally:
        os.umask(umask)
    assert (tmp_path / "new.db").stat().st_mode & 0o777 == 0o644


def test_names_must_be_savable_and_colours_plain(tmp_path):
    store = ConceptStore(tmp_path / "c.db", examples=5)
    with pytest.raises(ConceptError, match="cannot be saved as UTF-8"):
        store.create("bad \ud800", [1])
    with pytest.raises(ConceptError, match="#rrggbb"):
        store.apply({"kind": "create", "name": "x", "members": [1], "color": "url(http://example.com/a)"})
    assert store.revision == 0


# -- the JSON files of earlier releases ----------------------------------------------------------------------------
def test_a_json_file_of_an_earlier_release_is_migrated_with_its_history(tmp_path):
    path = tmp_path / "concepts.json"
    raw = json.dumps(legacy_v1(), indent=1).encode()
    path.write_bytes(raw)
    store = ConceptStore(path, examples=20)
    assert store.path == tmp_path / "concepts.db" and store.migrated_from == path
    assert not path.exists() and (tmp_path / "concepts.v1-backup.json").read_bytes() == raw
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
    assert store.concepts() == {"loop": [0, 6, 8], "thin": [1]} and store.revision == 5
    assert [c["color"] for c in store.snapshot()["concepts"]] == ["#e15759", "#4e79a7"]
    assert store.apply({"op_id": "op-3", "kind": "add", "concept": "loop", "members": [8]})["duplicate"]
    store.undo()  # the undo stack came across
    assert store.concepts() == {"loop": [0, 6], "thin": [1]}
    store.redo()
    store.redo()  # and the redo stack: tmp, undone before the migration, comes back
    assert store.concepts() == {"loop": [0, 6, 8], "thin": [1], "tmp": [2]}
    reopened = ConceptStore(path, examples=20)  # the notebook still says concepts.json
    assert reopened.concepts() == store.concepts() and reopened.revision == 8
    assert not path.exists()


def test_a_json_file_is_migrated_when_its_database_name_is_opened_too(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps(legacy_v1()))
    assert ConceptStore(tmp_path / "c.db").concepts() == {"loop": [0, 6, 8], "thin": [1]}
    assert not (tmp_path / "c.json").exists()
    unrelated = tmp_path / "d.json"
    unrelated.write_text('{"settings": 1}')  # not a concept file: opening d.db leaves it alone
    assert ConceptStore(tmp_path / "d.db").concepts() == {} and unrelated.read_text() == '{"settings": 1}'


def test_a_json_file_without_the_json_suffix_becomes_a_database_in_place(tmp_path):
    path = tmp_path / "annotations"
    raw = json.dumps(legacy_v1()).encode()
    path.write_bytes(raw)
    store = ConceptStore(path, examples=20)
    assert store.path == path and path.read_bytes().startswith(b"SQLite format 3\x00")
    assert (tmp_path / "annotations.v1-backup.json").read_bytes() == raw
    assert store.concepts() == {"loop": [0, 6, 8], "thin": [1]}


def test_a_migration_cut_short_is_finished_and_a_rewritten_json_is_refused(tmp_path):
    path = tmp_path / "c.json"
    raw = json.dumps(legacy_v1()).encode()
    path.write_bytes(raw)
    ConceptStore(path, examples=20).close()
    path.write_bytes(raw)  # as if the process died between renaming the database in and removing the JSON
    assert ConceptStore(path, examples=20).concepts() == {"loop": [0, 6, 8], "thin": [1]}
    assert not path.exists()
    changed = legacy_v1()
    changed["concepts"]["c2"]["members"] = [1, 2]  # an older hiddenwidgets wrote it again after the migration
    path.write_text(json.dumps(changed))
    before = files(tmp_path)
    with pytest.raises(ConceptFileError, match=r"both c.json and c.db exist .*\.merge\('c.later.json'\)"):
        ConceptStore(path, examples=20)
    assert files(tmp_path) == before
    path.rename(tmp_path / "c.later.json")
    store = ConceptStore(tmp_path / "c.db", examples=20)
    report = store.merge(tmp_path / "c.later.json", resolve="union")
    assert report.merged == ["thin"] and store["thin"] == [1, 2]


def test_a_failed_migration_leaves_the_json_file_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(legacy_v1()))
    before = path.read_bytes()
    real = os.replace

    def full(src, dst, *args, **kwargs):
        if str(dst).endswith(".db"):
            raise OSError(28, "No space left on device")
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(ConceptFileError, match=r"cannot migrate c.json into .* the disk is full"):
        ConceptStore(path, examples=20)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".c.db.lock", ".c.json.lock", "c.json"]


def test_a_migration_waits_for_an_older_release_writing_the_json(tmp_path):
    """Earlier releases held an flock on .<file>.lock while they wrote: the migration takes the same lock."""
    fcntl = pytest.importorskip("fcntl")
    path = tmp_path / "c.json"
    path.write_text(json.dumps(legacy_v1()))
    opened = threading.Event()
    with open(tmp_path / ".c.json.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        worker = threading.Thread(target=lambda: (ConceptStore(path, examples=20), opened.set()), daemon=True)
        worker.start()
        assert not opened.wait(0.5), "the migration went ahead while the old writer held its lock"
        assert path.exists() and not (tmp_path / "c.db").exists()
        fcntl.flock(lock, fcntl.LOCK_UN)
    assert opened.wait(30)
    worker.join()
    assert on_disk(tmp_path / "c.db") == {"loop": [0, 6, 8], "thin": [1]}


def test_checkpoints_run_off_the_edits_path_and_closing_leaves_no_log(tmp_path, monkeypatch):
    """Edits only append to the log (the main file grows only when the log is copied into it); a thread of the
    store copies it once it passes CHECKPOINT_BYTES; closing stops the thread and removes the log."""
    import hiddenwidgets.pipeline.concepts as concepts

    monkeypatch.setattr(concepts, "CHECKPOINT_BYTES", 256 << 10)
    path = tmp_path / "c.db"
    store = ConceptStore(path, examples=60_000)
    assert store._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == concepts.BACKSTOP_PAGES
    size = path.stat().st_size
    a = store.create("a", [0])
    rng = random.Random(0)
    store.add(a, rng.sample(range(60_000), 5000))  # about 100 KB of log: below the threshold
    assert path.stat().st_size == size and store._checkpointer is None  # (no thread for a store that needs none)
    for _ in range(4):
        store.add(a, rng.sample(range(60_000), 5000))
    thread = store._checkpointer._thread
    assert thread.is_alive()
    deadline = time.monotonic() + 30
    while path.stat().st_size == size:  # the thread's checkpoint writes the pages into the database
        assert time.monotonic() < deadline, "the log was never copied into the database"
        time.sleep(0.01)
    members = store["a"]
    store.close()
    assert not thread.is_alive()
    assert not Path(f"{path}-wal").exists() and not Path(f"{path}-shm").exists()
    again = ConceptStore(path)
    assert again["a"] == members
    for _ in range(5):
        again.add(a, rng.sample(range(60_000), 5000))
    thread = again._checkpointer._thread
    del again  # a store nobody closed: its thread ends once it is garbage-collected
    import gc

    gc.collect()
    thread.join(30)
    assert not thread.is_alive()


class _InterruptedAfterCommit:
    """The store's connection, but a KeyboardInterrupt arrives just after COMMIT returns (Ctrl+C, kernel
    interrupt): the change is in the database although apply() raised."""

    def __init__(self, conn):
        self.conn = conn

    def __getattr__(self, name):
        return getattr(self.conn, name)

    def execute(self, sql, *args):
        out = self.conn.execute(sql, *args)
        if sql == "COMMIT":
            raise KeyboardInterrupt
        return out


def test_an_interrupt_after_the_commit_leaves_memory_consistent_with_the_database(tmp_path):
    store = ConceptStore(tmp_path / "c.db", examples=10)
    store.create("a", [1])
    real = store._conn
    store._conn = _InterruptedAfterCommit(real)
    with pytest.raises(KeyboardInterrupt):  # not acknowledged: the view keeps it and resends it
        store.apply({"op_id": "x", "kind": "add", "concept": "a", "members": [2]})
    store._conn = real
    assert store.concepts() == on_disk(tmp_path / "c.db") == {"a": [1, 2]} and store.revision == 2
    assert store.apply({"op_id": "x", "kind": "add", "concept": "a", "members": [2]})["duplicate"]
