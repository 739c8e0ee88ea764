"""Concept annotations that are never lost: a JSON file written atomically after every change, before the change
is acknowledged.

A concept is a named set of example indices (into the examples the annotator shows). Every change is an
*operation* with an id chosen by whoever makes it (the view, or Python):

- ``create`` (name, members), ``add`` / ``remove`` (members), ``rename`` (name), ``delete``, ``undo``, ``redo``.

:meth:`ConceptStore.apply` validates the operation, applies it, writes the whole file atomically (a temporary
file in the same folder, flushed and fsynced, then ``os.replace`` and an fsync of the folder) and only then
returns, so a change the caller saw acknowledged is on disk. If the write fails the change is undone in memory
and the error raised. Operation ids are remembered in the file: an operation sent twice (the browser resends
what was not acknowledged, e.g. after a reconnect or a kernel restart) is applied once.

File format (``"format": "hiddenwidgets-concepts"``, ``"version": 1``): ``concepts`` (id -> name, colour,
members, created/updated times), ``order`` (ids), ``undo`` / ``redo`` stacks of inverse operations, ``applied``
(the last 10,000 operation ids), ``revision`` (counts acknowledged changes), ``examples`` (how many examples the
indices refer to). A file that cannot be read, or one from a newer version, is left untouched: opening it raises
:class:`ConceptFileError` and a copy is kept next to it (``<name>.unreadable-<time>.json``).
"""

from __future__ import annotations

import contextlib
import copy
import csv
import json
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..analysis.matrices import RepresentationError
from .listeners import Listeners

__all__ = ["FORMAT", "VERSION", "ConceptError", "ConceptFileError", "ConceptStore", "MergeReport"]

FORMAT = "hiddenwidgets-concepts"
VERSION = 1
APPLIED_KEPT = 10_000
UNDO_KEPT = 500
COLOURS = ["#e15759", "#4e79a7", "#59a14f", "#f28e2b", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7", "#9c755f",
           "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b"]
OPS = ("create", "add", "remove", "rename", "delete", "undo", "redo")
_OPEN: weakref.WeakValueDictionary[str, ConceptStore] = weakref.WeakValueDictionary()
_OPEN_LOCK = threading.Lock()


class ConceptError(RepresentationError):
    """A change to the concepts that cannot be made (the message says why and what to do instead)."""


class ConceptFileError(ConceptError):
    """The annotation file cannot be used (unreadable, newer format, not writable). The file is left untouched."""


@dataclass
class MergeReport:
    """What :meth:`ConceptStore.merge` did: concepts added, already equal, and conflicts left for you."""

    added: list[str] = field(default_factory=list)
    same: list[str] = field(default_factory=list)
    conflicts: list[dict[str, Any]] = field(default_factory=list)  # name, only_here, only_there
    merged: list[str] = field(default_factory=list)  # conflicts resolved by union (resolve="union")

    def __str__(self) -> str:
        parts = [f"{len(self.added)} added", f"{len(self.same)} identical"]
        if self.merged:
            parts.append(f"{len(self.merged)} merged by union")
        if self.conflicts:
            parts.append(f"{len(self.conflicts)} conflicts left as they were: " + ", ".join(
                f"{c['name']!r} ({len(c['only_here'])} only here, {len(c['only_there'])} only there)"
                for c in self.conflicts))
        return "; ".join(parts)


def _now() -> float:
    return round(time.time(), 3)


def _members(values: Any, n: int | None, what: str = "members") -> list[int]:
    try:
        out = sorted({int(v) for v in values})
    except (TypeError, ValueError) as err:
        raise ConceptError(f"{what} must be example indices (integers); got {values!r:.80}") from err
    if out and (out[0] < 0 or (n is not None and out[-1] >= n)):
        bad = out[0] if out[0] < 0 else out[-1]
        raise ConceptError(f"example {bad} is out of range: there are {n} examples (0..{(n or 1) - 1})")
    return out


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ConceptError(f"a concept needs a non-empty name; got {name!r}")
    if len(name) > 200:
        raise ConceptError(f"concept names are at most 200 characters; got {len(name)}")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ConceptError(f"concept name {name!r} cannot be saved as UTF-8 ({err.reason}); retype it") from None
    return name.strip()


class ConceptStore:
    """Concepts (named sets of example indices) backed by one JSON file; see the module docstring.

    Parameters
    ----------
    path : the annotation file. Created if missing (its folder must exist and be writable: checked now, before
        any label is accepted); read if present.
    examples : how many examples the indices refer to (checked against the file's own count).

    Listeners (:meth:`subscribe`) are called with the store after each acknowledged change. Thread-safe.
    """

    def __init__(self, path: str | os.PathLike, examples: int | None = None):
        self.path = Path(path).expanduser().resolve()
        self._lock = threading.RLock()
        self._listeners = Listeners()
        self._backed_up = False
        self._seen: tuple[int, int, int] | None = None
        if not self.path.parent.is_dir():
            raise ConceptFileError(f"cannot keep annotations in {self.path}: folder {self.path.parent} does not "
                                   "exist; create it or choose another path")
        if self.path.exists():
            self.data = self._read(self.path)
            known = self.data.get("examples")
            if examples is not None and known is not None and known != examples:
                raise ConceptFileError(f"{self.path} annotates {known} examples but {examples} are shown here; open "
                                       "it with the examples it was made for")
            if examples is not None and known is None:
                self.data["examples"] = examples
        else:
            self.data = {"format": FORMAT, "version": VERSION, "examples": examples, "revision": 0,
                         "concepts": {}, "order": [], "undo": [], "redo": [], "applied": [], "created": _now()}
        self._applied = set(self.data["applied"])
        self._write()  # proves the file can be written before any label is accepted

    @classmethod
    def open(cls, path: str | os.PathLike, examples: int | None = None) -> ConceptStore:
        """The store of ``path`` in this process: one per file, shared by every annotator on it (two stores on one
        file would each write their own copy and erase the other's changes)."""
        key = str(Path(path).expanduser().resolve())
        with _OPEN_LOCK:
            store = _OPEN.get(key)
            if store is None:
                store = cls(path, examples)
                _OPEN[key] = store
            elif examples is not None and store.data.get("examples") not in (None, examples):
                raise ConceptFileError(f"{key} annotates {store.data['examples']} examples but {examples} are shown "
                                       "here; open it with the examples it was made for")
            return store

    # -- reading -------------------------------------------------------------------------------------------------
    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        """An advisory lock on ``.<file>.lock`` (POSIX), so two processes never interleave read-change-write."""
        try:
            import fcntl
        except ImportError:  # Windows: the in-process lock and the re-read below still apply
            yield
            return
        with open(self.path.with_name(f".{self.path.name}.lock"), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _refresh(self) -> None:
        """Re-read the file if something else (another process, another kernel) wrote it since this store did."""
        stamp = self._stamp()
        if stamp is None:  # deleted or moved away: what is in memory is all there is; the next write restores it
            return
        if stamp != self._seen:
            self.data = self._read(self.path)
            self._applied = set(self.data["applied"])
            self._seen = self._stamp()

    @staticmethod
    def _read(path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                found = data.get("format") if isinstance(data, dict) else type(data).__name__
                raise ValueError(f"not a {FORMAT} file (format {found!r})")
            version = data.get("version")
            if not isinstance(version, int):
                raise ValueError(f"no format version ({version!r})")
        except (OSError, UnicodeDecodeError, ValueError) as err:
            backup = ConceptStore._keep_copy(path, "unreadable")
            raise ConceptFileError(f"cannot read the annotation file {path}: {err}. It was left untouched; a copy is "
                                   f"at {backup}. Fix it, or choose another path") from err
        if version > VERSION:
            backup = ConceptStore._keep_copy(path, f"version{version}")
            raise ConceptFileError(f"{path} was written by a newer hiddenwidgets (format version {version}; this one "
                                   f"reads up to {VERSION}). It was left untouched; a copy is at {backup}. Upgrade "
                                   "hiddenwidgets to open it")
        for key, default in (("concepts", {}), ("order", []), ("undo", []), ("redo", []), ("applied", []),
                             ("revision", 0), ("examples", None)):
            data.setdefault(key, default)
        return data

    @staticmethod
    def _keep_copy(path: Path, why: str) -> Path:
        backup = path.with_name(f"{path.stem}.{why}-{time.strftime('%Y%m%d-%H%M%S')}{path.suffix or '.json'}")
        with contextlib.suppress(OSError):
            shutil.copy2(path, backup)
        return backup

    # -- writing -------------------------------------------------------------------------------------------------
    def _mode(self) -> int:
        try:
            return os.stat(self.path).st_mode & 0o777
        except OSError:
            umask = os.umask(0)
            os.umask(umask)
            return 0o666 & ~umask

    def _write(self) -> None:
        """Atomically replace the file with the current data: temp file in the same folder, fsync, replace,
        fsync the folder. A crash at any point leaves either the old file or the new one, never a mix."""
        if self.path.exists() and not self._backed_up:  # the file as it was before this session's first change
            shutil.copy2(self.path, self.path.with_name(self.path.name + ".bak"))
        self._backed_up = True
        text = json.dumps(self.data, indent=1, ensure_ascii=False)
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        except OSError as err:
            raise ConceptFileError(f"cannot write annotations next to {self.path}: {err}; choose a writable "
                                   "folder") from err
        try:
            if hasattr(os, "fchmod"):  # mkstemp makes 0600; keep the file's mode (shared annotation folders)
                os.fchmod(fd, self._mode())
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException as err:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(err, OSError):
                raise ConceptFileError(f"cannot write {self.path}: {err}") from err
            raise
        with contextlib.suppress(OSError):  # make the rename itself durable
            dirfd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dirfd)
            finally:
                os.close(dirfd)
        self._seen = self._stamp()

    # -- operations ----------------------------------------------------------------------------------------------
    def apply(self, op: Mapping[str, Any]) -> dict[str, Any]:
        """Apply one operation and write the file; returns ``{"op_id", "revision", "concept"}`` once it is on
        disk. An operation whose id was already applied is acknowledged again without being applied twice."""
        op = dict(op)
        op_id = str(op.get("op_id") or uuid.uuid4().hex)
        with self._lock, self._file_lock():
            self._refresh()
            if op_id in self._applied:
                return {"op_id": op_id, "revision": self.data["revision"], "concept": op.get("concept"),
                        "duplicate": True}
            before = copy.deepcopy(self.data)
            try:
                concept = self._apply(op)
                self.data["revision"] += 1
                self.data["applied"] = ([*self.data["applied"], op_id])[-APPLIED_KEPT:]
                self._write()
            except BaseException:
                self.data = before
                raise
            self._applied = set(self.data["applied"])
            ack = {"op_id": op_id, "revision": self.data["revision"], "concept": concept}
        self._listeners.call(self)
        return ack

    def _apply(self, op: dict[str, Any], record: bool = True) -> str | None:
        kind = op.get("kind")
        if kind not in OPS:
            raise ConceptError(f"unknown operation {kind!r}; one of {OPS}")
        if kind in ("undo", "redo"):
            return self._undo_redo(kind)
        concepts = self.data["concepts"]
        n = self.data.get("examples")
        if kind == "create":
            name = _check_name(op.get("name"))
            self._unique(name)
            members = op["members"] = _members(op.get("members", []), n)
            if not members and not op.get("allow_empty"):
                raise ConceptError(f"nothing is selected to make concept {name!r} from: select examples first")
            cid = str(op.get("concept") or f"c{uuid.uuid4().hex[:10]}")
            if cid in concepts:
                raise ConceptError(f"a concept with id {cid!r} exists")
            colour = op.get("color") or COLOURS[len(self.data["order"]) % len(COLOURS)]
            if not re.fullmatch(r"#[0-9a-fA-F]{6}", str(colour)):  # it becomes a CSS colour in the view
                raise ConceptError(f"a concept colour is '#rrggbb'; got {colour!r}")
            concepts[cid] = {"name": name, "color": colour, "members": members, "created": _now(), "updated": _now()}
            self.data["order"].append(cid)
            inverse = {"kind": "delete", "concept": cid}
        else:
            cid = self._resolve(op.get("concept"))
            c = concepts[cid]
            if kind in ("add", "remove"):
                members = op["members"] = _members(op.get("members", []), n)
                if not members:
                    raise ConceptError(f"nothing is selected to {kind} {'to' if kind == 'add' else 'from'} "
                                       f"{c['name']!r}: select examples first")
                old = set(c["members"])
                new = old | set(members) if kind == "add" else old - set(members)
                changed = sorted(new ^ old)
                c["members"] = sorted(new)
                inverse = {"kind": "remove" if kind == "add" else "add", "concept": cid, "members": changed}
                if not changed:
                    inverse = None
            elif kind == "rename":
                name = _check_name(op.get("name"))
                self._unique(name, itself=cid)
                inverse = {"kind": "rename", "concept": cid, "name": c["name"]}
                c["name"] = name
            else:  # delete
                inverse = {"kind": "create", "concept": cid, "name": c["name"], "members": c["members"],
                           "color": c["color"], "allow_empty": True, "position": self.data["order"].index(cid)}
                del concepts[cid]
                self.data["order"].remove(cid)
            c_after = concepts.get(cid)
            if c_after is not None:
                c_after["updated"] = _now()
        if kind == "create" and "position" in op:
            self.data["order"].remove(cid)
            self.data["order"].insert(int(op["position"]), cid)
        if record and inverse is not None:
            self.data["undo"] = [*self.data["undo"], {**inverse, "redo": {k: v for k, v in op.items()
                                                                          if k not in ("op_id",)} | {"concept": cid}}
                                 ][-UNDO_KEPT:]
            self.data["redo"] = []
        return cid

    def _undo_redo(self, kind: str) -> str | None:
        stack, other = ("undo", "redo") if kind == "undo" else ("redo", "undo")
        if not self.data[stack]:
            raise ConceptError(f"nothing to {kind}")
        entry = self.data[stack].pop()
        forward = {k: v for k, v in entry.items() if k != "redo"}
        redo = entry["redo"]
        cid = self._apply(forward, record=False)
        self.data[other].append({**redo, "redo": forward})
        return cid

    def _unique(self, name: str, itself: str | None = None) -> None:
        for cid, c in self.data["concepts"].items():
            if cid != itself and c["name"].casefold() == name.casefold():
                raise ConceptError(f"a concept named {c['name']!r} exists; choose another name, or add to it")

    def _resolve(self, concept: Any) -> str:
        concepts = self.data["concepts"]
        if concept in concepts:
            return concept
        for cid, c in concepts.items():
            if c["name"] == concept:
                return cid
        names = [c["name"] for c in concepts.values()]
        raise ConceptError(f"no concept {concept!r}; concepts: {names}")

    # -- Python API ----------------------------------------------------------------------------------------------
    def create(self, name: str, members: Iterable[int]) -> str:
        """A new concept from example indices; returns its id."""
        return self.apply({"kind": "create", "name": name, "members": list(members)})["concept"]

    def add(self, concept: str, members: Iterable[int]) -> None:
        self.apply({"kind": "add", "concept": concept, "members": list(members)})

    def remove(self, concept: str, members: Iterable[int]) -> None:
        self.apply({"kind": "remove", "concept": concept, "members": list(members)})

    def rename(self, concept: str, name: str) -> None:
        self.apply({"kind": "rename", "concept": concept, "name": name})

    def delete(self, concept: str) -> None:
        self.apply({"kind": "delete", "concept": concept})

    def undo(self) -> None:
        self.apply({"kind": "undo"})

    def redo(self) -> None:
        self.apply({"kind": "redo"})

    @property
    def revision(self) -> int:
        return self.data["revision"]

    def concepts(self) -> dict[str, list[int]]:
        """Concept name -> sorted member indices, in creation order."""
        with self._lock:
            return {self.data["concepts"][cid]["name"]: list(self.data["concepts"][cid]["members"])
                    for cid in self.data["order"]}

    def __getitem__(self, name: str) -> list[int]:
        with self._lock:
            return list(self.data["concepts"][self._resolve(name)]["members"])

    def snapshot(self) -> dict[str, Any]:
        """What a view shows: revision, concepts in order (id, name, colour, members), undo/redo availability."""
        with self._lock:
            d = self.data
            return {"revision": d["revision"], "can_undo": bool(d["undo"]), "can_redo": bool(d["redo"]),
                    "concepts": [{"id": cid, **{k: d["concepts"][cid][k] for k in ("name", "color", "members")}}
                                 for cid in d["order"]]}

    def subscribe(self, listener: Callable[[ConceptStore], None]) -> Callable[[], None]:
        """Call ``listener(store)`` after each acknowledged change; returns the function that stops it."""
        return self._listeners.add(listener)

    # -- merging and export --------------------------------------------------------------------------------------
    def merge(self, other: str | os.PathLike | ConceptStore, resolve: str = "report") -> MergeReport:
        """Bring in another annotator's concepts. New names are added; equal ones noted; a name whose members
        differ is a conflict: reported and left as it is here (``resolve="union"`` takes the union instead).
        Each addition is an acknowledged operation (undoable)."""
        if resolve not in ("report", "union"):
            raise ConceptError(f"resolve must be 'report' or 'union'; got {resolve!r}")
        theirs = other.data if isinstance(other, ConceptStore) else self._read(Path(other).expanduser())
        n_here, n_there = self.data.get("examples"), theirs.get("examples")
        if n_here is not None and n_there is not None and n_here != n_there:
            raise ConceptFileError(f"cannot merge: this file annotates {n_here} examples, the other {n_there}")
        report = MergeReport()
        here = {c["name"].casefold(): cid for cid, c in self.data["concepts"].items()}
        n = self.data.get("examples")
        plan = []  # every operation is checked before any is applied: a merge never stops half-way
        for cid in theirs.get("order", list(theirs["concepts"])):
            c = theirs["concepts"][cid]
            members = _members(c["members"], n, f"members of {c['name']!r} in the other file")
            key = _check_name(c["name"]).casefold()
            if key not in here:
                plan.append({"kind": "create", "name": c["name"], "members": members, "allow_empty": True})
                report.added.append(c["name"])
                continue
            mine = set(self.data["concepts"][here[key]]["members"])
            extra = sorted(set(members) - mine)
            if mine == set(members) or (resolve == "union" and not extra):  # (a subset: the union is ours)
                report.same.append(c["name"])
            elif resolve == "union":
                plan.append({"kind": "add", "concept": here[key], "members": extra})
                report.merged.append(c["name"])
            else:
                report.conflicts.append({"name": c["name"], "only_here": sorted(mine - set(members)),
                                         "only_there": extra})
        for op in plan:
            self.apply(op)
        return report

    def rows(self) -> list[dict[str, Any]]:
        """One row per (concept, example): concept, example, concept_id."""
        with self._lock:
            return [{"concept": self.data["concepts"][cid]["name"], "example": i, "concept_id": cid}
                    for cid in self.data["order"] for i in self.data["concepts"][cid]["members"]]

    def to_dataframe(self):
        """:meth:`rows` as a pandas DataFrame (needs pandas)."""
        try:
            import pandas as pd
        except ImportError as err:
            raise ImportError("to_dataframe needs pandas: pip install pandas (or use rows() / to_csv())") from err
        return pd.DataFrame(self.rows(), columns=["concept", "example", "concept_id"])

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write :meth:`rows` as CSV (concept, example, concept_id). Returns the path."""
        path = Path(path)
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=["concept", "example", "concept_id"])
            writer.writeheader()
            writer.writerows(self.rows())
        return path
