"""ConceptStore: operations, undo/redo, idempotent resends, atomic durable writes, bad files, merge, export."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hiddenwidgets.pipeline.concepts import VERSION, ConceptError, ConceptFileError, ConceptStore


def on_disk(path: Path) -> dict[str, list[int]]:
    data = json.loads(path.read_text())
    return {data["concepts"][cid]["name"]: data["concepts"][cid]["members"] for cid in data["order"]}


def test_every_acknowledged_change_is_already_in_the_file(tmp_path):
    path = tmp_path / "concepts.json"
    store = ConceptStore(path, examples=100)
    assert path.exists() and on_disk(path) == {}
    loop = store.create("closed loop", [8, 0, 6, 6])
    assert on_disk(path) == {"closed loop": [0, 6, 8]}
    store.add(loop, [9, 0])
    store.remove("closed loop", [6])
    store.create("straight <b>stroke</b>", [1, 7])
    store.rename("straight <b>stroke</b>", "straight stroke")
    assert on_disk(path) == {"closed loop": [0, 8, 9], "straight stroke": [1, 7]}
    assert store.revision == 5 and json.loads(path.read_text())["version"] == VERSION
    again = ConceptStore(path, examples=100)
    assert again.concepts() == store.concepts() and again.revision == 5


def test_undo_and_redo_walk_back_and_forth_through_every_kind_of_change(tmp_path):
    store = ConceptStore(tmp_path / "c.json", examples=20)
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


def test_a_resent_operation_is_applied_once_even_after_a_restart(tmp_path):
    path = tmp_path / "c.json"
    store = ConceptStore(path, examples=10)
    op = {"op_id": "view-1-op-7", "kind": "create", "name": "x", "members": [1]}
    first = store.apply(op)
    again = ConceptStore(path, examples=10).apply(op)  # the kernel restarted; the browser resends
    assert again["duplicate"] and again["revision"] == first["revision"] == 1
    assert ConceptStore(path).concepts() == {"x": [1]}


def test_bad_changes_are_refused_and_leave_file_and_memory_unchanged(tmp_path):
    path = tmp_path / "c.json"
    store = ConceptStore(path, examples=10)
    store.create("loop", [1])
    before = path.read_bytes()
    with pytest.raises(ConceptError, match="nothing is selected"):
        store.create("empty", [])
    with pytest.raises(ConceptError, match="a concept named 'loop' exists"):
        store.create("LOOP", [2])
    with pytest.raises(ConceptError, match="example 10 is out of range"):
        store.add("loop", [10])
    with pytest.raises(ConceptError, match="no concept 'nope'"):
        store.add("nope", [1])
    with pytest.raises(ConceptError, match="non-empty name"):
        store.rename("loop", "  ")
    assert path.read_bytes() == before and store.revision == 1


def test_a_failed_write_is_not_acknowledged_and_rolls_back(tmp_path, monkeypatch):
    store = ConceptStore(tmp_path / "c.json", examples=10)
    store.create("a", [1])

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(ConceptFileError, match="No space left"):
        store.add("a", [2])
    monkeypatch.undo()
    assert store.concepts() == {"a": [1]} and store.revision == 1
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]  # the temporary file is cleaned up


def test_unreadable_or_newer_files_are_left_untouched_with_a_copy(tmp_path):
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"format": "hiddenwidgets-concepts", "version": 1, "concepts": {')
    with pytest.raises(ConceptFileError, match=r"cannot read .* left untouched; a copy is at"):
        ConceptStore(corrupt)
    assert corrupt.read_text().endswith('"concepts": {')
    assert len(list(tmp_path.glob("corrupt.unreadable-*.json"))) == 1
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({"format": "hiddenwidgets-concepts", "version": VERSION + 1, "concepts": {}}))
    content = newer.read_text()
    with pytest.raises(ConceptFileError, match=f"newer hiddenwidgets \\(format version {VERSION + 1}"):
        ConceptStore(newer)
    assert newer.read_text() == content and len(list(tmp_path.glob("newer.version*.json"))) == 1


def test_an_unwritable_place_is_refused_before_any_label(tmp_path):
    with pytest.raises(ConceptFileError, match="does not exist"):
        ConceptStore(tmp_path / "missing" / "c.json")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores permissions: use a path under a file instead
            target = tmp_path / "a-file"
            target.write_text("")
            with pytest.raises(ConceptFileError):
                ConceptStore(target / "c.json")
        else:
            with pytest.raises(ConceptFileError, match="cannot write"):
                ConceptStore(locked / "c.json")
    finally:
        locked.chmod(0o700)


def test_merge_adds_new_concepts_and_reports_conflicts_without_overwriting(tmp_path):
    mine = ConceptStore(tmp_path / "mine.json", examples=50)
    mine.create("loop", [0, 6, 8])
    mine.create("thin", [1])
    theirs = ConceptStore(tmp_path / "theirs.json", examples=50)
    theirs.create("Loop", [0, 6, 9])
    theirs.create("thin", [1])
    theirs.create("curvy", [2, 3])
    report = mine.merge(tmp_path / "theirs.json")
    assert report.added == ["curvy"] and report.same == ["thin"]
    assert report.conflicts == [{"name": "Loop", "only_here": [8], "only_there": [9]}]
    assert mine.concepts() == {"loop": [0, 6, 8], "thin": [1], "curvy": [2, 3]}
    assert "1 conflicts left as they were" in str(report)
    union = mine.merge(theirs, resolve="union")
    assert union.merged == ["Loop"] and mine["loop"] == [0, 6, 8, 9]
    with pytest.raises(ConceptFileError, match="annotates 50 examples, the other 7"):
        mine.merge(ConceptStore(tmp_path / "other.json", examples=7))


def test_export_rows_csv_and_dataframe(tmp_path):
    store = ConceptStore(tmp_path / "c.json", examples=10)
    store.create('a "quoted", name', [3, 1])
    rows = store.rows()
    assert [(r["concept"], r["example"]) for r in rows] == [('a "quoted", name', 1), ('a "quoted", name', 3)]
    text = store.to_csv(tmp_path / "c.csv").read_text()
    assert text.splitlines()[1].startswith('"a ""quoted"", name",1,')
    pd = pytest.importorskip("pandas")
    frame = store.to_dataframe()
    assert isinstance(frame, pd.DataFrame) and frame["example"].tolist() == [1, 3]


CRASHER = textwrap.dedent("""
    import os, signal, sys
    from hiddenwidgets.pipeline.concepts import ConceptStore
    path, point, at = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = ConceptStore(path, examples=100000)
    cid = store.create("grows", [0])
    calls = {"n": 0}

    def crash_at(name, after):
        real = getattr(os, name)

        def wrapped(*args):
            calls["n"] += 1
            if calls["n"] == at and not after:
                os.kill(os.getpid(), signal.SIGKILL)
            out = real(*args)
            if calls["n"] == at and after:
                os.kill(os.getpid(), signal.SIGKILL)
            return out

        setattr(os, name, wrapped)

    if point != "random":
        crash_at(point.split(":")[0], point.endswith(":after"))
    for i in range(1, 10**6):
        store.add(cid, [i])
        print(i, flush=True)      # acknowledged: the store returned after the write
    print("survived", flush=True)
""")


@pytest.mark.parametrize("point", ["os.fsync:before", "os.replace:before", "os.replace:after", "random"])
def test_killing_the_kernel_mid_save_loses_nothing_acknowledged(tmp_path, point):
    """The process adding members is SIGKILLed inside a save (before the temporary file is fsynced, before or
    after the atomic rename) or at a random moment: the file must parse and hold every acknowledged member."""
    path = tmp_path / "c.json"
    name = point.split(".", 1)[-1]
    proc = subprocess.Popen([sys.executable, "-c", CRASHER, str(path), name, "7"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    if point == "random":
        time.sleep(2.5)
        os.kill(proc.pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    lines = out.split()
    assert "survived" not in lines, f"the save path never reached {point}: saves must fsync and rename"
    assert proc.returncode == -signal.SIGKILL, err
    acked = [int(x) for x in lines]
    data = json.loads(path.read_text())  # never a half-written file
    members = set(data["concepts"][data["order"][0]]["members"])
    assert set(acked) <= members, f"acknowledged but lost: {sorted(set(acked) - members)[:5]}"
    assert len(members - set(acked) - {0}) <= 1  # at most the one change whose acknowledgement was cut off


def test_numpy_and_torch_indices_are_stored_as_plain_integers(tmp_path):
    import numpy as np
    import torch

    store = ConceptStore(tmp_path / "c.json", examples=10)
    store.create("np", np.array([3, 1], dtype=np.int64))
    store.add("np", torch.tensor([5]))
    store.undo()
    assert on_disk(tmp_path / "c.json") == {"np": [1, 3]}


def test_two_stores_on_one_file_never_erase_each_others_changes(tmp_path):
    """As two kernels would: each store re-reads the file when someone else wrote it since."""
    path = tmp_path / "c.json"
    first = ConceptStore(path, examples=10)
    second = ConceptStore(path, examples=10)
    first.create("a", [1])
    second.create("b", [2])   # second's copy predates "a": it must re-read, not overwrite
    first.add("a", [3])
    assert on_disk(path) == {"a": [1, 3], "b": [2]}
    assert ConceptStore.open(path) is ConceptStore.open(str(path)) is not first  # one shared store per file


def test_open_refuses_a_different_example_count(tmp_path):
    store = ConceptStore.open(tmp_path / "c.json", examples=10)
    with pytest.raises(ConceptFileError, match="annotates 10 examples but 12"):
        ConceptStore.open(tmp_path / "c.json", examples=12)
    assert store.concepts() == {}


def test_union_merge_of_a_subset_and_a_bad_other_file_change_nothing_half_way(tmp_path):
    mine = ConceptStore(tmp_path / "mine.json", examples=20)
    mine.create("loop", [0, 6, 8])
    theirs = ConceptStore(tmp_path / "theirs.json", examples=20)
    theirs.create("loop", [0, 6])   # a subset: the union is ours
    theirs.create("new", [1])
    report = mine.merge(theirs, resolve="union")
    assert report.same == ["loop"] and report.added == ["new"] and report.merged == []
    bad = json.loads((tmp_path / "theirs.json").read_text())
    bad["concepts"][bad["order"][1]]["members"] = [1, 99]   # out of range for 20 examples
    (tmp_path / "bad.json").write_text(json.dumps(bad | {"order": [*bad["order"]]}))
    before = mine.concepts()
    with pytest.raises(ConceptError, match="example 99 is out of range"):
        mine.merge(tmp_path / "bad.json")
    assert mine.concepts() == before


def test_saves_keep_the_files_mode_and_survive_the_file_being_deleted(tmp_path):
    path = tmp_path / "c.json"
    store = ConceptStore(path, examples=5)
    path.chmod(0o664)
    store.create("a", [1])
    assert path.stat().st_mode & 0o777 == 0o664
    path.unlink()  # someone removed it while the annotator was open: memory still holds everything
    store.add("a", [2])
    assert on_disk(path) == {"a": [1, 2]}


def test_names_must_be_savable_and_colours_plain(tmp_path):
    store = ConceptStore(tmp_path / "c.json", examples=5)
    with pytest.raises(ConceptError, match="cannot be saved as UTF-8"):
        store.create("bad \ud800", [1])
    with pytest.raises(ConceptError, match="#rrggbb"):
        store.apply({"kind": "create", "name": "x", "members": [1], "color": "url(http://example.com/a)"})
    assert store.revision == 0
