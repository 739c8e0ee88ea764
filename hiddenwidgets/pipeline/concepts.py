"""Concept annotations that are never lost: an SQLite database (the standard library's ``sqlite3``), one
transaction per change, committed to disk before the change is acknowledged.

A concept is a named set of example indices (into the examples the annotator shows). Every change is an
*operation* with an id chosen by whoever makes it (the view, or Python):

- ``create`` (name, members), ``add`` / ``remove`` (members), ``rename`` (name), ``delete``, ``undo``, ``redo``.

**Durability.** :meth:`ConceptStore.apply` validates the operation and applies it in one ``BEGIN IMMEDIATE``
transaction; the database is in WAL mode with ``synchronous=FULL``, so ``COMMIT`` returns only once the change is
fsynced to the write-ahead log. Only then is the change acknowledged. A process killed at any moment (kill -9, a
kernel restart) leaves every acknowledged change in the database; the next open recovers the log. A change that
cannot be written (disk full, read-only folder, the database locked by another process for more than
``BUSY_TIMEOUT_S``) is rolled back and raised as :class:`ConceptFileError`, and the store's memory is left as it
was. Operation ids are kept (the last ``APPLIED_KEPT``): an operation sent twice (the browser resends what was
not acknowledged, e.g. after a reconnect or a kernel restart) is applied once.

**Several processes.** Any number of processes (kernels, scripts) may open one database. Every change takes
SQLite's write lock; inside its transaction the store checks whether another connection committed since it last
looked (``PRAGMA data_version``) and re-reads the concepts first if so, so no process erases another's change.
Opening an existing database never writes it (only a migration does, under an exclusive lock). Reads
(:meth:`~ConceptStore.concepts`, :meth:`~ConceptStore.snapshot`, :meth:`~ConceptStore.refresh`, ...) notice
changes made elsewhere too; the listeners are called when they do. Within one process use
:meth:`ConceptStore.open`: one store per file. WAL needs a local filesystem (not NFS/SMB) and a writable folder
(SQLite keeps ``<file>-wal`` and ``<file>-shm`` next to the database while it is open). Do not delete, move or
replace the database while it is open: a deleted database is written back complete (undo history included) at
the next change if this process was its only user; a replaced one is refused.

**Cost.** Members are rows (concept, example), the concept by its integer row key (half the bytes of its text
id; the view ``concept_members`` shows id, name and example): adding or removing k members writes O(k) rows.
Undo and redo entries are rows holding the inverse operation (the last ``UNDO_KEPT``), applied operation ids an
indexed table (the last ``APPLIED_KEPT``), the revision and the example count rows of ``meta``. Nothing is
rewritten in full. Another connection's changes are caught up by re-reading only the concepts they touched. A
background thread copies the log into the database (a PASSIVE checkpoint once the log passes
``CHECKPOINT_BYTES``), so no edit waits for that.

**Paths.** A path ending in ``.json`` names the database ``<stem>.db`` next to it (``concepts.json`` ->
``concepts.db``): earlier releases wrote JSON there, notebooks still name it, and a binary database under a
``.json`` name would be opened as text (and could be saved over) by editors and JupyterLab's file browser. Any
other path is the database itself; ``.db`` is the suggested suffix. ``store.path`` is the database's path.

**Files of earlier releases** (JSON, ``"version": 1``) still open: under an exclusive lock (the lock file the
JSON writer used, so an older hiddenwidgets still running cannot write in between), the JSON is checked, copied
atomically to ``<stem>.v1-backup.json`` (a free name is chosen; nothing is overwritten), migrated into a
database built in a temporary file and renamed into place, and then the JSON is removed (for ``x.json``: the
database is ``x.db``; a JSON file under another name is replaced by its database). Concepts, order, undo/redo
stacks, applied ids and the revision carry over, so undo works across the migration. If the JSON reappears
after it was migrated (an older hiddenwidgets wrote it again), opening it is refused with a way out: merge it.

**Refusals.** A file that is not a concept database or file, is structurally invalid (wrong shapes, unknown ids,
out-of-range members, a colour that is not ``#rrggbb``, duplicate names), or was written by a newer format, is
refused with :class:`ConceptFileError` at open and left untouched (byte-identical; no copy is written).
Undo/redo entries of a database are checked when they are used. Format marker: ``PRAGMA application_id``
(``APPLICATION_ID``) and ``PRAGMA user_version`` (``VERSION``), plus a ``meta`` row ``format``.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import glob
import hashlib
import json
import operator
import os
import re
import sqlite3
import tempfile
import threading
import time
import urllib.parse
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._optional import require
from ..analysis.matrices import RepresentationError
from .listeners import Listeners

__all__ = ["APPLICATION_ID", "FORMAT", "JSON_VERSION", "VERSION", "ConceptError", "ConceptFileError", "ConceptStore",
           "MergeReport", "read_snapshot"]

FORMAT = "hiddenwidgets-concepts"
VERSION = 2  # the SQLite format; user_version of the database
JSON_VERSION = 1  # the JSON files of earlier releases (migrated on open)
APPLICATION_ID = 0x68774331  # "hwC1": PRAGMA application_id of a concept database
APPLIED_KEPT = 10_000
UNDO_KEPT = 500
BUSY_TIMEOUT_S = 30.0
CHECKPOINT_BYTES = 4 << 20  # the log is copied into the database, off the edits' path, once it is this big
BACKSTOP_PAGES = 10_000  # SQLite's own checkpoint (inside an edit's COMMIT) should the thread fall behind
COLOURS = ["#e15759", "#4e79a7", "#59a14f", "#f28e2b", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7", "#9c755f",
           "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b"]
OPS = ("create", "add", "remove", "rename", "delete", "undo", "redo")
EDITS = OPS[:5]
_SQLITE_MAGIC = b"SQLite format 3\x00"
_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")
_OPEN: weakref.WeakValueDictionary[str, ConceptStore] = weakref.WeakValueDictionary()
_OPEN_LOCK = threading.Lock()
# connections inherited through fork(): SQLite forbids using (or closing) them in the child, so they are kept here
_INHERITED: list[sqlite3.Connection] = []

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE concepts (key INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, name TEXT NOT NULL, color TEXT NOT NULL,
                       position INTEGER NOT NULL, created REAL NOT NULL, updated REAL NOT NULL,
                       changed_at INTEGER NOT NULL);
CREATE TABLE members (concept INTEGER NOT NULL, example INTEGER NOT NULL, PRIMARY KEY (concept, example))
    WITHOUT ROWID;
CREATE VIEW concept_members AS SELECT concepts.id AS concept_id, concepts.name AS concept, members.example
    FROM members JOIN concepts ON concepts.key = members.concept ORDER BY concepts.position, members.example;
CREATE TABLE history (seq INTEGER PRIMARY KEY, stack TEXT NOT NULL, entry TEXT NOT NULL);
CREATE INDEX history_stack ON history (stack, seq);
CREATE TABLE applied (op_id TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX applied_seq ON applied (seq);
"""
_COLUMNS = {"meta": ["key", "value"], "concepts": ["key", "id", "name", "color", "position", "created",
                                                           "updated", "changed_at"],
            "members": ["concept", "example"], "history": ["seq", "stack", "entry"], "applied": ["op_id", "seq"]}


class ConceptError(RepresentationError):
    """A change to the concepts that cannot be made (the message says why and what to do instead)."""


class ConceptFileError(ConceptError):
    """The annotation database cannot be used (unreadable, invalid, newer format, not writable, disk full). A file
    refused at open is left untouched; a change that could not be written is not applied."""


class _Invalid(ValueError):
    """A structural problem found while checking a file (wrapped into ConceptFileError with the path)."""


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


def _index(value: Any) -> int:
    if isinstance(value, float):  # 3.0 is example 3; 3.5 is no example
        if not value.is_integer():
            raise ValueError(value)
        return int(value)
    return operator.index(value)


def _members(values: Any, n: int | None, what: str = "members") -> list[int]:
    try:
        if isinstance(values, (list, tuple)) and all(type(v) is int for v in values):  # the view's lists
            out = sorted(set(values))
        else:
            out = sorted({_index(v) for v in values})
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


# -- checking files ----------------------------------------------------------------------------------------------
def _int(value: Any, what: str, low: int = 0, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(f"{what} must be an integer; got {value!r:.60}")
    if value < low or (high is not None and value >= high):
        raise _Invalid(f"{what} is {value}, outside {low}..{'' if high is None else high - 1}")
    return value


def _member_list(values: Any, n: int | None, what: str) -> list[int]:
    if not isinstance(values, list):
        raise _Invalid(f"{what} must be a list of example indices; got {type(values).__name__}")
    return sorted({_int(v, f"a member of {what}", 0, n) for v in values})


def _valid_name(name: Any, what: str) -> str:
    try:
        return _check_name(name)
    except ConceptError as err:
        raise _Invalid(f"{what}: {err}") from None


def _valid_colour(colour: Any, what: str) -> str:
    if not isinstance(colour, str) or not _COLOUR.fullmatch(colour):
        raise _Invalid(f"{what} has colour {colour!r:.40}; a colour is '#rrggbb'")
    return colour


def _valid_id(cid: Any, what: str) -> str:
    if not isinstance(cid, str) or not cid or len(cid) > 200:
        raise _Invalid(f"{what} has concept id {cid!r:.60}; an id is a non-empty string")
    return cid


def _valid_op(op: Any, n: int | None, what: str) -> dict[str, Any]:
    """An edit as kept in the undo/redo stacks, checked and reduced to the keys an edit has."""
    if not isinstance(op, dict) or op.get("kind") not in EDITS:
        raise _Invalid(f"{what} is not an edit ({', '.join(EDITS)}): {op!r:.80}")
    out = {"kind": op["kind"], "concept": _valid_id(op.get("concept"), what)}
    if op["kind"] in ("create", "add", "remove"):
        out["members"] = _member_list(op.get("members"), n, what)
    if op["kind"] in ("create", "rename"):
        out["name"] = _valid_name(op.get("name"), what)
    if op["kind"] == "create":
        if "color" in op:
            out["color"] = _valid_colour(op["color"], what)
        if "position" in op:
            out["position"] = _int(op["position"], f"the position in {what}")
        if "allow_empty" in op:
            if not isinstance(op["allow_empty"], bool):
                raise _Invalid(f"{what}: allow_empty must be true or false")
            out["allow_empty"] = op["allow_empty"]
    return out


def _valid_entry(entry: Any, n: int | None, what: str) -> dict[str, Any]:
    """An undo/redo entry: the operation to apply, with the one that reverses it under ``"redo"``."""
    if not isinstance(entry, dict):
        raise _Invalid(f"{what} is not an object")
    return {**_valid_op(entry, n, what), "redo": _valid_op(entry.get("redo"), n, f"the reverse of {what}")}


def _valid_concepts(rows: Iterable[tuple[str, Any, Any, Any, Any]]) -> None:
    """(id, name, colour, created, updated) of every concept: valid, names unique regardless of case."""
    seen: dict[str, str] = {}
    for cid, name, colour, created, updated in rows:
        _valid_id(cid, "a concept")
        what = f"concept {cid!r}"
        name = _valid_name(name, what)
        _valid_colour(colour, what)
        for t in (created, updated):
            if isinstance(t, bool) or not isinstance(t, (int, float)):
                raise _Invalid(f"{what} has a time that is not a number: {t!r:.40}")
        if name.casefold() in seen:
            raise _Invalid(f"two concepts are named {name!r} ({seen[name.casefold()]!r} and {cid!r})")
        seen[name.casefold()] = cid


def _legacy(path: Path, raw: bytes, examples: int | None) -> dict[str, Any]:
    """A JSON file of an earlier release, checked in full; raises ConceptFileError (the file is not touched)."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise ConceptFileError(f"cannot read the annotation file {path}: {err}. It was left untouched; fix it, or "
                               "choose another path") from err
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ConceptFileError(f"{path} is not a hiddenwidgets concept file (format {found!r:.60}). It was left "
                               "untouched; choose another path")
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ConceptFileError(f"{path} has no format version ({version!r:.40}). It was left untouched; fix it, or "
                               "choose another path")
    if version > JSON_VERSION:
        raise ConceptFileError(f"{path} was written by a newer hiddenwidgets (JSON format version {version}; this "
                               f"one reads up to {JSON_VERSION}). It was left untouched; upgrade hiddenwidgets to "
                               "open it")
    try:
        n = data.get("examples")
        if n is not None:
            _int(n, "the example count")
        if examples is not None and n is not None and n != examples:
            raise ConceptFileError(f"{path} annotates {n} examples but {examples} are shown here; open it with the "
                                   "examples it was made for")
        n = examples if n is None else n
        concepts = data.get("concepts", {})
        if not isinstance(concepts, dict):
            raise _Invalid("'concepts' must be an object (id -> concept)")
        out: dict[str, dict[str, Any]] = {}
        for cid, c in concepts.items():
            if not isinstance(c, dict):
                raise _Invalid(f"concept {cid!r} is not an object")
            out[cid] = {"name": _valid_name(c.get("name"), f"concept {cid!r}"), "color": c.get("color"),
                        "members": _member_list(c.get("members"), n, f"concept {cid!r}"),
                        "created": c.get("created", 0.0), "updated": c.get("updated", c.get("created", 0.0))}
        _valid_concepts((cid, c["name"], c["color"], c["created"], c["updated"]) for cid, c in out.items())
        order = data.get("order", list(concepts))
        if not isinstance(order, list) or not all(isinstance(cid, str) for cid in order):
            raise _Invalid("'order' must be a list of concept ids")
        unknown = [cid for cid in order if cid not in out]
        if unknown or len(set(order)) != len(order) or set(order) != set(out):
            missing = sorted(set(out) - set(order))
            raise _Invalid(f"'order' does not list each concept once (unknown ids {unknown[:5]}, missing "
                           f"{missing[:5]}, {len(order) - len(set(order))} repeated)")
        stacks = {}
        for stack in ("undo", "redo"):
            entries = data.get(stack, [])
            if not isinstance(entries, list):
                raise _Invalid(f"'{stack}' must be a list")
            stacks[stack] = [_valid_entry(e, n, f"{stack} entry {i}") for i, e in enumerate(entries)]
        applied = data.get("applied", [])
        if not isinstance(applied, list) or not all(isinstance(a, str) for a in applied):
            raise _Invalid("'applied' must be a list of operation ids")
        revision = _int(data.get("revision", 0), "the revision")
        created = data.get("created")
        if created is not None and (isinstance(created, bool) or not isinstance(created, (int, float))):
            raise _Invalid(f"'created' is not a time: {created!r:.40}")
    except _Invalid as err:
        raise ConceptFileError(f"{path} is not a valid concept file: {err}. It was left untouched; fix it, or "
                               "choose another path") from None
    return {"examples": n, "concepts": out, "order": order, "undo": stacks["undo"], "redo": stacks["redo"],
            "applied": applied, "revision": revision, "created": created}


def _sniff(path: Path) -> tuple[str, bytes]:
    """("sqlite" | "other", the first 100 bytes); OSError if it cannot be read."""
    with open(path, "rb") as f:
        head = f.read(100)
    return ("sqlite" if head.startswith(_SQLITE_MAGIC) else "other"), head


def _check_version(path: Path, application_id: int, user_version: int) -> None:
    if application_id != APPLICATION_ID:
        raise ConceptFileError(f"{path} is an SQLite database but not a hiddenwidgets concept database "
                               f"(application_id {application_id:#x}). It was left untouched; choose another path")
    if user_version > VERSION:
        raise ConceptFileError(f"{path} was written by a newer hiddenwidgets (format version {user_version}; this one "
                               f"reads up to {VERSION}). It was left untouched; upgrade hiddenwidgets to open it")
    if user_version < VERSION:
        raise ConceptFileError(f"{path} has concept format version {user_version}, which no release wrote. It was "
                               "left untouched; choose another path")


def _read_state(conn: sqlite3.Connection, path: Path, examples: int | None) -> dict[str, Any]:
    """Everything a store keeps in memory, read (and checked) from ``conn`` inside the caller's transaction."""
    try:
        _check_version(path, conn.execute("PRAGMA application_id").fetchone()[0],
                       conn.execute("PRAGMA user_version").fetchone()[0])
        for table, columns in _COLUMNS.items():
            found = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
            if found != columns:
                raise _Invalid(f"table {table} has columns {found}, expected {columns}")
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        if meta.get("format") != FORMAT:
            raise _Invalid(f"meta format is {meta.get('format')!r:.40}")
        revision = _int(meta.get("revision"), "the revision")
        n = meta.get("examples")
        if n is not None:
            _int(n, "the example count")
        if examples is not None and n is not None and n != examples:
            raise ConceptFileError(f"{path} annotates {n} examples but {examples} are shown here; open it with the "
                                   "examples it was made for")
        limit = n  # (an example count given now but not in the database is checked by the store)
        rows = conn.execute("SELECT id, name, color, position, created, updated, changed_at, key FROM concepts "
                            "ORDER BY position, id").fetchall()
        _valid_concepts((r[0], r[1], r[2], r[4], r[5]) for r in rows)
        positions = [r[3] for r in rows]
        if not all(isinstance(p, int) and not isinstance(p, bool) for p in positions) or \
                len(set(positions)) != len(positions):
            raise _Invalid("concept positions are not distinct integers")
        for r in rows:
            _int(r[6], f"the revision concept {r[0]!r} last changed at")
        concepts = {r[0]: {"name": r[1], "color": r[2], "members": set(), "created": r[4], "updated": r[5],
                           "changed_at": r[6], "key": r[7]} for r in rows}
        ids = {r[7]: r[0] for r in rows}
        bad = conn.execute("SELECT concept, example FROM members WHERE typeof(example) != 'integer' OR example < 0 "
                           "OR example >= ? OR concept NOT IN (SELECT key FROM concepts) LIMIT 1",
                           (limit if limit is not None else 1 << 62,)).fetchone()
        if bad is not None:
            where = f"concept {ids[bad[0]]!r}" if bad[0] in ids else f"an unknown concept (key {bad[0]!r:.60})"
            raise _Invalid(f"{where} has member {bad[1]!r:.40}" + (f"; there are {limit} examples" if limit else ""))
        for key, example in conn.execute("SELECT concept, example FROM members"):
            concepts[ids[key]]["members"].add(example)
        stacks = dict(conn.execute("SELECT stack, count(*) FROM history GROUP BY stack"))
        if set(stacks) - {"undo", "redo"}:
            raise _Invalid(f"history has stacks {sorted(stacks)}")
        bad = conn.execute("SELECT count(*) FROM history WHERE typeof(entry) != 'text'").fetchone()[0]
        bad += conn.execute("SELECT count(*) FROM applied WHERE typeof(op_id) != 'text' "
                            "OR typeof(seq) != 'integer'").fetchone()[0]
        if bad:
            raise _Invalid(f"{bad} history or applied rows have the wrong types")
    except _Invalid as err:
        raise ConceptFileError(f"{path} is not a valid concept database: {err}. It was left untouched; fix it, or "
                               "choose another path") from None
    return {"revision": revision, "examples": n, "concepts": concepts, "order": [r[0] for r in rows],
            "n_undo": stacks.get("undo", 0), "n_redo": stacks.get("redo", 0), "created": meta.get("created"),
            "migrated_from": meta.get("migrated_from"), "migrated_sha256": meta.get("migrated_sha256"),
            "backup": meta.get("backup")}


def _sqlite_error(err: BaseException, path: Path, doing: str) -> ConceptFileError:
    """An sqlite3 or OS error as a ConceptFileError that says what to do."""
    text = str(err)
    code = getattr(err, "sqlite_errorcode", None)
    code = code & 0xFF if isinstance(code, int) else None
    number = getattr(err, "errno", None)
    if code == 13 or number in (errno.ENOSPC, getattr(errno, "EDQUOT", -1), errno.EFBIG) or "full" in text:
        hint = "the disk is full (or a size limit was reached): free space, then retry; the view resends changes " \
               "it has not seen saved"
    elif code in (8, 3, 23) or number in (errno.EACCES, errno.EPERM, errno.EROFS) or "readonly" in text:
        hint = (f"the database or its folder {path.parent} is not writable (SQLite also writes {path.name}-wal and "
                f"{path.name}-shm next to it): make both writable, or choose another path")
    elif code in (5, 6) or "locked" in text:
        hint = (f"another process kept the database locked for more than {BUSY_TIMEOUT_S:.0f} s; retry (the view "
                "resends), or find the process holding it")
    elif code == 14:
        hint = f"the folder {path.parent} must exist and be writable, on a local filesystem (not NFS/SMB)"
    elif code == 10:
        hint = "the disk refused the write (full, a file size limit, or failing); free space or fix the disk, " \
               "then retry; the view resends changes it has not seen saved"
    elif code in (11, 26):
        hint = "it is damaged or not a database; it was left untouched: restore a copy, or choose another path"
    else:
        hint = "nothing was changed; retry, or choose another path"
    name = getattr(err, "sqlite_errorname", None) or type(err).__name__
    return ConceptFileError(f"cannot {doing} {path}: {text} ({name}); {hint}")


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not possible on every platform: the rename is still atomic
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def _file_lock(lock: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``lock`` (POSIX ``flock``), held while a database is created or migrated."""
    try:
        import fcntl
    except ImportError:  # Windows: creation is still atomic (rename); two simultaneous migrations are not excluded
        yield
        return
    try:
        handle = open(lock, "a")  # noqa: SIM115 (held across the yield)
    except OSError as err:
        raise _sqlite_error(err, lock, "create the lock file") from err
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_temporaries(folder: Path, prefix: str) -> None:
    """Temporary files a killed process left (only a lock holder makes them; the caller holds the lock)."""
    for stale in folder.glob(f"{glob.escape(prefix)}*.tmp*"):
        with contextlib.suppress(OSError):
            stale.unlink()


def _unlink_temporary(tmp: str) -> None:
    for suffix in ("", "-journal", "-wal", "-shm"):
        with contextlib.suppress(OSError):
            os.unlink(tmp + suffix)


def _write_file(target: Path, data: bytes, mode: int) -> None:
    """``target`` written atomically: a temporary file in its folder, fsynced, renamed over it, folder fsynced."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        _unlink_temporary(tmp)
        raise
    _fsync_folder(target.parent)


def _locate(path: Path) -> tuple[Path, Path | None]:
    """(the database, the JSON file of an earlier release that becomes it) for a path a user gave."""
    path = path.expanduser().resolve()
    if path.suffix.lower() == ".json":
        return path.with_suffix(".db"), path
    if path.suffix.lower() == ".db":
        return path, path.with_suffix(".json")
    return path, None


def _is_concept_json(path: Path) -> bool:
    """Whether ``path`` looks like a concept file of an earlier release (its first bytes; no full parse)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return head.lstrip().startswith(b"{") and FORMAT.encode() in head


def _snapshot_of(state: dict[str, Any]) -> dict[str, Any]:
    return {"revision": state["revision"], "examples": state["examples"], "can_undo": state["n_undo"] > 0,
            "can_redo": state["n_redo"] > 0,
            "concepts": [{"id": cid, "name": state["concepts"][cid]["name"], "color": state["concepts"][cid]["color"],
                          "members": sorted(state["concepts"][cid]["members"])} for cid in state["order"]]}


class _Connection(sqlite3.Connection):
    """A connection that knows whether its SQLite has JSON functions (built in by default since 3.38)."""

    json_functions = False


def _member_rows(conn: sqlite3.Connection, kind: str, key: int, members: list[int]) -> None:
    """Insert (``kind="add"``) or delete the rows (key, m) of a concept: one statement over a JSON array where
    SQLite has JSON functions (about five times faster than a statement per row), else a statement per row."""
    if not members:
        return
    if getattr(conn, "json_functions", False):
        sql = "INSERT INTO members SELECT ?, value FROM json_each(?)" if kind == "add" else \
            "DELETE FROM members WHERE concept = ? AND example IN (SELECT value FROM json_each(?))"
        conn.execute(sql, (key, json.dumps(members)))
    else:
        sql = "INSERT INTO members VALUES (?, ?)" if kind == "add" else \
            "DELETE FROM members WHERE concept = ? AND example = ?"
        conn.executemany(sql, ((key, m) for m in members))


def _connect(path: Path, immutable: bool = False) -> _Connection:
    """A connection to ``path`` (``immutable``: read-only, no locks, no log: for a folder nobody can write)."""
    target, uri = (f"file:{urllib.parse.quote(str(path))}?immutable=1", True) if immutable else (str(path), False)
    conn = sqlite3.connect(target, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False,
                           factory=_Connection, uri=uri)
    try:
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=OFF")
        try:
            conn.execute("SELECT json_valid('[]')")
            conn.json_functions = True
        except sqlite3.OperationalError:
            conn.json_functions = False
    except BaseException:
        conn.close()
        raise
    return conn


class _Checkpointer:
    """Copies the write-ahead log into the database from a thread with a connection of its own, so that no edit
    waits for it (SQLite would otherwise do it inside the COMMIT of each edit that takes the log past 1,000
    pages). PASSIVE: it never blocks an edit, and an edit never waits for it."""

    def __init__(self, path: Path):
        self._path = path
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"hiddenwidgets checkpoint {path.name}", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        self._wake.set()

    def stop_soon(self) -> None:
        """Ask the thread to close its connection and end (from any thread, the garbage collector's included)."""
        self._stopping = True
        self._wake.set()

    def stop(self) -> None:
        self.stop_soon()
        if self._thread is not threading.current_thread():
            self._thread.join(BUSY_TIMEOUT_S)

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(str(self._path), timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                   check_same_thread=False)
        except sqlite3.Error:  # SQLite's backstop checkpoint still runs
            return
        try:
            conn.execute("PRAGMA synchronous=FULL")
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stopping:
                    return
                with contextlib.suppress(sqlite3.Error):  # a busy reader: the next poke tries again
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            conn.close()


def read_snapshot(path: str | os.PathLike) -> dict[str, Any]:
    """What a concept database (or a JSON file of an earlier release) holds, read without opening a store: nothing
    is written, nothing migrated. Returns ``{"revision", "examples", "can_undo", "can_redo", "concepts": [{"id",
    "name", "color", "members"}]}``; raises :class:`ConceptFileError` if it cannot be read."""
    db, legacy = _locate(Path(path))
    if db.exists():
        try:
            kind, head = _sniff(db)
        except OSError as err:
            raise _sqlite_error(err, db, "read") from err
        if kind == "sqlite":
            _check_version(db, int.from_bytes(head[68:72], "big"), int.from_bytes(head[60:64], "big"))
            # in a folder this process cannot write, SQLite cannot make the log it reads through; with no log
            # there, no process can be writing the database either, so it is read as an immutable file
            immutable = not os.access(db.parent, os.W_OK) and not Path(f"{db}-wal").exists()
            try:
                conn = _connect(db, immutable)
            except sqlite3.Error as err:
                raise _sqlite_error(err, db, "open") from err
            try:
                conn.execute("PRAGMA query_only=1")
                conn.execute("BEGIN")
                state = _read_state(conn, db, None)
                conn.execute("COMMIT")
            except sqlite3.Error as err:
                raise _sqlite_error(err, db, "read") from err
            finally:
                conn.close()
            return _snapshot_of(state)
        legacy = db
    if legacy is None or not legacy.exists():
        raise ConceptFileError(f"no concept database at {db}" + (f" nor {legacy}" if legacy else ""))
    try:
        raw = legacy.read_bytes()
    except OSError as err:
        raise _sqlite_error(err, legacy, "read") from err
    data = _legacy(legacy, raw, None)
    return _snapshot_of({**data, "concepts": {cid: {**c, "members": set(c["members"])}
                                              for cid, c in data["concepts"].items()},
                         "n_undo": len(data["undo"]), "n_redo": len(data["redo"])})


class ConceptStore:
    """Concepts (named sets of example indices) in an SQLite database; see the module docstring.

    Parameters
    ----------
    path : the database. Created if missing (its folder must exist and be writable: checked now, before any label
        is accepted); opened if present. ``x.json`` means ``x.db`` (and a JSON file of an earlier release there is
        migrated).
    examples : how many examples the indices refer to (checked against the database's own count).

    Listeners (:meth:`subscribe`) are called with the store after each acknowledged change, and when a read or a
    change finds that another process changed the database. Thread-safe.
    """

    def __init__(self, path: str | os.PathLike, examples: int | None = None):
        if examples is not None:
            try:
                examples = operator.index(examples)
            except TypeError:
                raise ConceptError(f"examples is a count of examples (an integer); got {examples!r:.40}") from None
            if examples < 0:
                raise ConceptError(f"examples is a count of examples; got {examples}")
        self.path, legacy = _locate(Path(path))
        self._lock = threading.RLock()
        self._listeners = Listeners()
        self._requested = examples
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        if not self.path.parent.is_dir():
            raise ConceptFileError(f"cannot keep annotations in {self.path}: folder {self.path.parent} does not "
                                   "exist; create it or choose another path")
        self._open(legacy, explicit_json=Path(path).suffix.lower() == ".json")

    @classmethod
    def open(cls, path: str | os.PathLike, examples: int | None = None) -> ConceptStore:
        """The store of ``path`` in this process: one per database, shared by every annotator on it (``x.json``
        and ``x.db`` are the same database)."""
        key = str(_locate(Path(path))[0])
        with _OPEN_LOCK:
            store = _OPEN.get(key)
            if store is None or store._conn is None or store._pid != os.getpid():
                store = cls(path, examples)
                _OPEN[key] = store
            elif examples is not None and store._examples not in (None, examples):
                raise ConceptFileError(f"{key} annotates {store._examples} examples but {examples} are shown here; "
                                       "open it with the examples it was made for")
            return store

    # -- opening -------------------------------------------------------------------------------------------------
    @property
    def _lock_file(self) -> Path:
        return self.path.with_name(f".{self.path.name}.lock")

    def _open(self, legacy: Path | None, explicit_json: bool) -> None:
        if legacy is not None and legacy.exists() and legacy != self.path and \
                (explicit_json or _is_concept_json(legacy)):
            if self.path.exists():
                self._connect_existing()
                self._leftover(legacy)
                return
            self._migrate(legacy)
        elif not self.path.exists():
            self._create()
        elif self._kind() == "other":
            if not _is_concept_json(self.path):
                raise ConceptFileError(f"{self.path} is neither a concept database nor a concept file of an earlier "
                                       "release. It was left untouched; choose another path")
            self._migrate(self.path)
        self._connect_existing()

    def _kind(self) -> str:
        try:
            return _sniff(self.path)[0]
        except OSError as err:
            raise _sqlite_error(err, self.path, "read") from err

    def _connect_existing(self) -> None:
        try:
            kind, head = _sniff(self.path)
        except OSError as err:
            raise _sqlite_error(err, self.path, "read") from err
        if kind != "sqlite":
            raise ConceptFileError(f"{self.path} is not a concept database. It was left untouched; choose another "
                                   "path")
        # the header is read without SQLite, so a file of a newer format or another program is refused untouched
        _check_version(self.path, int.from_bytes(head[68:72], "big"), int.from_bytes(head[60:64], "big"))
        if not os.access(self.path, os.W_OK):
            raise ConceptFileError(f"cannot write {self.path}: permission denied; make it writable, or copy it and "
                                   "open the copy")
        try:
            conn = _connect(self.path)
        except sqlite3.Error as err:
            raise _sqlite_error(err, self.path, "open") from err
        try:
            conn.execute("BEGIN")
            state = _read_state(conn, self.path, self._requested)
            dv = conn.execute("PRAGMA data_version").fetchone()[0]
            conn.execute("COMMIT")
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":  # only if something changed it
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
            conn.execute("PRAGMA journal_size_limit=0")  # a restarted log starts empty: its size says how full
            conn.execute("BEGIN IMMEDIATE")  # proves the database can be written (takes the lock, writes nothing)
            conn.execute("ROLLBACK")
            st = os.stat(self.path)
        except BaseException as err:
            conn.close()
            if isinstance(err, (sqlite3.Error, OSError)):
                raise _sqlite_error(err, self.path, "open") from err
            raise
        self._conn, self._dv, self._ident = conn, dv, (st.st_dev, st.st_ino)
        self._set_state(state)
        self._wal = f"{self.path}-wal"
        self._checkpointer: _Checkpointer | None = None  # started when the log first passes CHECKPOINT_BYTES

    def _set_state(self, state: dict[str, Any]) -> None:
        examples = state["examples"]
        self._examples_unsaved = examples is None and self._requested is not None
        if self._examples_unsaved:
            examples = self._requested
            for c in state["concepts"].values():
                if c["members"] and max(c["members"]) >= examples:
                    raise ConceptFileError(f"{self.path} has concept {c['name']!r} with example {max(c['members'])}, "
                                           f"but {examples} examples are shown here; open it with the examples it "
                                           "was made for")
        self._examples = examples
        self._revision = state["revision"]
        self._concepts = state["concepts"]
        self._order = state["order"]
        self._n_undo, self._n_redo = state["n_undo"], state["n_redo"]
        self._sorted: dict[str, list[int]] = {}
        self._migrated = state.get("migrated_from"), state.get("migrated_sha256"), state.get("backup")

    @property
    def migrated_from(self) -> Path | None:
        """The JSON file of an earlier release this database was migrated from (it is gone; see ``backup``)."""
        return self.path.with_name(self._migrated[0]) if self._migrated[0] else None

    def _build(self, fill: Callable[[sqlite3.Connection], None], mode: int, doing: str = "create") -> None:
        """Write a complete database to a temporary file next to ``self.path`` and rename it into place: the path
        never holds half a database. The caller holds the lock and has checked what is at the path."""
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        try:
            conn = sqlite3.connect(tmp, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode=OFF")  # a temporary file: fsynced once, below
                conn.execute("PRAGMA synchronous=OFF")
                conn.executescript(f"BEGIN; {_SCHEMA} PRAGMA application_id={APPLICATION_ID}; "
                                   f"PRAGMA user_version={VERSION};")
                conn.executemany("INSERT INTO meta VALUES (?, ?)", [("format", FORMAT), ("created", _now())])
                fill(conn)
                conn.execute("COMMIT")
                conn.execute("PRAGMA journal_mode=WAL")
            finally:
                conn.close()
            fd = os.open(tmp, os.O_RDWR)
            try:
                if hasattr(os, "fchmod"):
                    os.fchmod(fd, mode)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except BaseException as err:
            _unlink_temporary(tmp)
            if isinstance(err, (sqlite3.Error, OSError)):
                raise _sqlite_error(err, self.path, doing) from err
            raise
        _fsync_folder(self.path.parent)

    def _create(self) -> None:
        examples = self._requested
        try:
            with _file_lock(self._lock_file):
                if self.path.exists():  # another process created it meanwhile
                    return
                _remove_temporaries(self.path.parent, f".{self.path.name}.")
                self._build(lambda conn: conn.executemany("INSERT INTO meta VALUES (?, ?)", [
                    ("revision", 0), ("examples", examples)]), _default_mode())
        except OSError as err:
            raise _sqlite_error(err, self.path, "create") from err

    def _migrate(self, legacy: Path) -> None:
        """A JSON file of an earlier release becomes this database (see the module docstring)."""
        try:
            _legacy(legacy, legacy.read_bytes(), self._requested)  # a file that will be refused: before any lock file
            locks = [self._lock_file] + ([legacy.with_name(f".{legacy.name}.lock")] if legacy != self.path else [])
            with contextlib.ExitStack() as stack:
                for lock in locks:
                    stack.enter_context(_file_lock(lock))
                if legacy != self.path and self.path.exists():  # another process migrated it meanwhile
                    return
                if legacy == self.path and self._kind() == "sqlite":
                    return
                raw = legacy.read_bytes()
                data = _legacy(legacy, raw, self._requested)
                mode = os.stat(legacy).st_mode & 0o777
                _remove_temporaries(self.path.parent, f".{self.path.name}.")
                backup, made = self._backup(legacy, raw, mode)
                digest = hashlib.sha256(raw).hexdigest()
                try:
                    self._build(lambda conn: self._fill(conn, data, legacy.name, digest, backup.name), mode,
                                f"migrate {legacy.name} into")
                except BaseException:
                    if made:  # nothing was migrated: the JSON is still where it was
                        with contextlib.suppress(OSError):
                            backup.unlink()
                    raise
                if legacy != self.path:
                    with contextlib.suppress(OSError):  # if it stays, the next open sees it was migrated
                        legacy.unlink()
                        _fsync_folder(self.path.parent)
        except OSError as err:
            raise _sqlite_error(err, self.path, f"migrate {legacy.name} into") from err

    @staticmethod
    def _backup(legacy: Path, raw: bytes, mode: int) -> tuple[Path, bool]:
        """``<stem>.v1-backup.json`` (or ``-2``, ``-3``, ... if taken by different bytes), written atomically;
        whether it was written now."""
        for k in range(1, 1000):
            backup = legacy.with_name(f"{legacy.stem}.v{JSON_VERSION}-backup{'' if k == 1 else f'-{k}'}.json")
            if not backup.exists():
                _write_file(backup, raw, mode)
                return backup, True
            if backup.read_bytes() == raw:
                return backup, False
        raise ConceptFileError(f"cannot choose a backup name next to {legacy}: 999 backups exist; move some away")

    @staticmethod
    def _fill(conn: sqlite3.Connection, data: dict[str, Any], name: str, digest: str, backup: str) -> None:
        conn.executemany("INSERT INTO meta VALUES (?, ?)", [
            ("revision", data["revision"]), ("examples", data["examples"]), ("migrated_from", name),
            ("migrated_sha256", digest), ("backup", backup)])
        if data["created"] is not None:
            conn.execute("UPDATE meta SET value = ? WHERE key = 'created'", (data["created"],))
        for position, cid in enumerate(data["order"]):
            c = data["concepts"][cid]
            conn.execute("INSERT INTO concepts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (position + 1, cid, c["name"], c["color"], position, c["created"], c["updated"],
                          data["revision"]))
            _member_rows(conn, "add", position + 1, c["members"])
        for stack in ("undo", "redo"):
            conn.executemany("INSERT INTO history (stack, entry) VALUES (?, ?)",
                             ((stack, json.dumps(e, ensure_ascii=False)) for e in data[stack]))
        first = data["revision"] - len(data["applied"]) + 1
        conn.executemany("INSERT OR IGNORE INTO applied VALUES (?, ?)",
                         ((op_id, first + i) for i, op_id in enumerate(data["applied"])))

    def _leftover(self, legacy: Path) -> None:
        """Both ``x.json`` and ``x.db`` exist: the JSON as migrated (a migration cut short: finished now) or one
        written again by an older release after the migration (refused: it would be ignored otherwise)."""
        try:
            raw = legacy.read_bytes()
        except OSError as err:
            self.close()
            raise _sqlite_error(err, legacy, "read") from err
        name, digest, backup = self._migrated
        if name == legacy.name and digest == hashlib.sha256(raw).hexdigest():
            kept = legacy.with_name(backup) if backup else None
            if kept is not None and kept.exists() and kept.read_bytes() == raw:
                with contextlib.suppress(OSError), _file_lock(self._lock_file):
                    legacy.unlink()  # the backup holds the same bytes
                    _fsync_folder(legacy.parent)
            return
        self.close()
        raise ConceptFileError(
            f"both {legacy.name} and {self.path.name} exist in {legacy.parent}, and {legacy.name} is not the file "
            f"{self.path.name} was migrated from (an older hiddenwidgets may have written it since). Nothing was "
            f"changed. Move {legacy.name} to another name (e.g. {legacy.stem}.later.json), then open "
            f"{self.path.name} and bring its changes in: ConceptStore.open({self.path.name!r}).merge("
            f"'{legacy.stem}.later.json')")

    # -- the connection ------------------------------------------------------------------------------------------
    def _connection(self, writing: bool) -> sqlite3.Connection:
        """The open connection, after checking the store is still usable in this process and, before a write,
        that the database is still the file this connection has open."""
        if self._conn is None:
            raise ConceptError(f"the store of {self.path} was closed; open it again: ConceptStore.open(path)")
        if os.getpid() != self._pid:  # forked: the parent's connection must not be used (nor closed) here
            _INHERITED.append(self._conn)  # (nor its checkpoint thread's, which did not come along)
            self._conn = self._checkpointer = None
            self._pid = os.getpid()
            self._connect_existing()
        if writing:
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                self._restore()
            except OSError as err:
                raise _sqlite_error(err, self.path, "write") from err
            else:
                if (st.st_dev, st.st_ino) != self._ident:
                    raise ConceptFileError(
                        f"{self.path} was replaced by another file while this store had it open; nothing was "
                        "written. Open it again (ConceptStore.open(path)) to use the new file")
        assert self._conn is not None
        return self._conn

    def _restore(self) -> None:
        """The database was deleted while open: write a complete copy from this connection back to the path."""
        assert self._conn is not None
        old = self._conn
        with _file_lock(self._lock_file):
            if self.path.exists():
                raise ConceptFileError(f"{self.path} was replaced while this store had it open; nothing was "
                                       "written. Open it again (ConceptStore.open(path)) to use the new file")
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
            os.close(fd)
            try:
                copy = sqlite3.connect(tmp, isolation_level=None)
                try:
                    old.backup(copy)
                    copy.execute("PRAGMA journal_mode=WAL")
                finally:
                    copy.close()
                fd = os.open(tmp, os.O_RDWR)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except BaseException as err:
                _unlink_temporary(tmp)
                if isinstance(err, (sqlite3.Error, OSError)):
                    raise _sqlite_error(err, self.path, "restore") from err
                raise
            self._stop_checkpointer()
            old.close()  # the last connection to the deleted file removes its -wal and -shm names
            self._conn = None
            if any(Path(f"{self.path}{s}").exists() for s in ("-wal", "-shm")):
                raise ConceptFileError(
                    f"{self.path} was deleted while another process had it open; nothing was written. A complete "
                    f"copy of what this store held is at {tmp}: move it to {self.path} once the other process has "
                    "closed the database, then open it again")
            os.replace(tmp, self.path)
            _fsync_folder(self.path.parent)
        self._connect_existing()

    def close(self) -> None:
        """Close the database (the store cannot be used afterwards; :meth:`open` makes a new one)."""
        with self._lock:
            if self._conn is not None and os.getpid() == self._pid:
                self._stop_checkpointer()  # first: this connection, the last, then removes the log
                self._conn.close()
            self._conn = None
        with _OPEN_LOCK:
            if _OPEN.get(str(self.path)) is self:
                del _OPEN[str(self.path)]

    def _checkpoint(self) -> None:
        """Have the log copied into the database, by the store's checkpoint thread (started now if need be; it
        ends when the store is closed or garbage-collected)."""
        if self._checkpointer is None:
            self._checkpointer = _Checkpointer(self.path)
            weakref.finalize(self, self._checkpointer.stop_soon)
        self._checkpointer.poke()

    def _stop_checkpointer(self) -> None:
        if getattr(self, "_checkpointer", None) is not None:
            self._checkpointer.stop()
            self._checkpointer = None

    def __enter__(self) -> ConceptStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _catch_up(self, conn: sqlite3.Connection) -> bool:
        """Inside a transaction: if another connection committed since this one last looked, re-read what it
        changed (the concepts whose ``changed_at`` differs from memory's; all of it after an interruption)."""
        dv = conn.execute("PRAGMA data_version").fetchone()[0]
        meta = dict(conn.execute("SELECT key, value FROM meta WHERE key IN ('revision', 'examples')"))
        if dv == self._dv and meta.get("revision") == self._revision:
            return False
        if self._dv is None or not isinstance(meta.get("revision"), int) or meta.get("examples") not in (
                None, self._examples):
            self._set_state(_read_state(conn, self.path, self._requested))
        else:
            rows = conn.execute("SELECT id, name, color, position, created, updated, changed_at, key FROM concepts "
                                "ORDER BY position, id").fetchall()
            concepts = {}
            for cid, name, colour, _, created, updated, changed_at, key in rows:
                kept = self._concepts.get(cid)
                if kept is None or kept["changed_at"] != changed_at or kept["key"] != key:
                    members = {m for (m,) in conn.execute("SELECT example FROM members WHERE concept = ?", (key,))}
                    self._sorted.pop(cid, None)
                else:
                    members = kept["members"]
                concepts[cid] = {"name": name, "color": colour, "members": members, "created": created,
                                 "updated": updated, "changed_at": changed_at, "key": key}
            for gone in set(self._concepts) - set(concepts):
                self._sorted.pop(gone, None)
            stacks = dict(conn.execute("SELECT stack, count(*) FROM history GROUP BY stack"))
            self._concepts, self._order = concepts, [r[0] for r in rows]
            self._revision = meta["revision"]
            self._n_undo, self._n_redo = stacks.get("undo", 0), stacks.get("redo", 0)
        self._dv = dv
        return True

    def _sync(self) -> bool:
        """Re-read if another process changed the database; True if it did (the caller calls the listeners)."""
        conn = self._connection(writing=False)
        try:
            if conn.execute("PRAGMA data_version").fetchone()[0] == self._dv:
                return False
            conn.execute("BEGIN")
            try:
                changed = self._catch_up(conn)
            finally:
                conn.execute("ROLLBACK")
        except sqlite3.Error as err:
            raise _sqlite_error(err, self.path, "read") from err
        return changed

    def refresh(self) -> bool:
        """Re-read the concepts if another process changed the database; returns whether it did (the listeners
        were called then). Reads do this themselves; a view can call it to follow another kernel."""
        with self._lock:
            changed = self._sync()
        if changed:
            self._listeners.call(self)
        return changed

    # -- operations ----------------------------------------------------------------------------------------------
    def apply(self, op: Mapping[str, Any]) -> dict[str, Any]:
        """Apply one operation in one transaction; returns ``{"op_id", "revision", "concept"}`` once it is
        committed (fsynced). An operation whose id was already applied is acknowledged again (``"duplicate":
        True``) without being applied twice. A failed write raises and leaves the store as it was."""
        if not isinstance(op, Mapping):
            raise ConceptError(f"an operation is a mapping with a 'kind' (one of {OPS}); got {op!r:.80}")
        op = dict(op)
        op_id = str(op.get("op_id") or uuid.uuid4().hex)
        reloaded = done = False
        try:
            with self._lock:
                conn = self._connection(writing=True)
                begun = False
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    begun = True
                    reloaded = self._catch_up(conn)
                    if conn.execute("SELECT 1 FROM applied WHERE op_id = ?", (op_id,)).fetchone():
                        conn.execute("ROLLBACK")
                        return {"op_id": op_id, "revision": self._revision, "concept": op.get("concept"),
                                "duplicate": True}
                    changes: list[tuple] = []
                    concept = self._plan(conn, op, True, changes)
                    now, revision = _now(), self._revision + 1
                    counts, keys = self._write(conn, changes, now, revision)
                    conn.execute("UPDATE meta SET value = ? WHERE key = 'revision'", (revision,))
                    if self._examples_unsaved:
                        conn.execute("UPDATE meta SET value = ? WHERE key = 'examples'", (self._examples,))
                    conn.execute("INSERT INTO applied VALUES (?, ?)", (op_id, revision))
                    if revision > APPLIED_KEPT:
                        conn.execute("DELETE FROM applied WHERE seq <= ?", (revision - APPLIED_KEPT,))
                    conn.execute("COMMIT")
                except BaseException as err:
                    if conn.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            conn.execute("ROLLBACK")
                    elif begun:  # COMMIT failed (SQLite rolled back) or was interrupted after it succeeded:
                        self._dv = None  # memory, unchanged, is checked against the database before its next use
                    if isinstance(err, sqlite3.Error):
                        raise _sqlite_error(err, self.path, "write") from err
                    raise
                self._patch(changes, now, revision, counts, keys)
                self._revision = revision
                self._examples_unsaved = False
                done = True
                with contextlib.suppress(OSError):
                    if os.path.getsize(self._wal) >= CHECKPOINT_BYTES:
                        self._checkpoint()
                ack = {"op_id": op_id, "revision": revision, "concept": concept}
        finally:
            if reloaded and not done:  # what another process wrote is shown, even though this change failed
                self._listeners.call(self)
        self._listeners.call(self)
        return ack

    def _plan(self, conn: sqlite3.Connection, op: dict[str, Any], record: bool, changes: list[tuple]) -> str:
        """Check ``op`` against the concepts in memory and append what it changes to ``changes``; returns the
        concept's id. Writes nothing."""
        kind = op.get("kind")
        if kind not in OPS:
            raise ConceptError(f"unknown operation {kind!r}; one of {OPS}")
        if kind in ("undo", "redo"):
            return self._plan_undo_redo(conn, kind, changes)
        n = self._examples
        inverse: dict[str, Any] | None
        if kind == "create":
            name = _check_name(op.get("name"))
            self._unique(name)
            members = op["members"] = _members(op.get("members", []), n)
            if not members and not op.get("allow_empty"):
                raise ConceptError(f"nothing is selected to make concept {name!r} from: select examples first")
            cid = op.get("concept") or f"c{uuid.uuid4().hex[:10]}"
            if not isinstance(cid, str) or len(cid) > 200:
                raise ConceptError(f"a concept id is a string of at most 200 characters; got {cid!r:.60}")
            if cid in self._concepts:
                raise ConceptError(f"a concept with id {cid!r} exists")
            colour = op.get("color") or COLOURS[len(self._order) % len(COLOURS)]
            if not isinstance(colour, str) or not _COLOUR.fullmatch(colour):  # it becomes a CSS colour in the view
                raise ConceptError(f"a concept colour is '#rrggbb'; got {colour!r}")
            position = len(self._order)
            if op.get("position") is not None:
                try:
                    position = max(0, min(operator.index(op["position"]), len(self._order)))
                except TypeError:
                    raise ConceptError(f"a position is an integer; got {op['position']!r:.40}") from None
            changes.append(("create", cid, name, colour, members, position))
            inverse = {"kind": "delete", "concept": cid}
        else:
            cid = self._resolve(op.get("concept"))
            c = self._concepts[cid]
            if kind in ("add", "remove"):
                members = op["members"] = _members(op.get("members", []), n)
                if not members:
                    raise ConceptError(f"nothing is selected to {kind} {'to' if kind == 'add' else 'from'} "
                                       f"{c['name']!r}: select examples first")
                have = c["members"]
                changed = sorted(set(members) - have if kind == "add" else have.intersection(members))
                changes.append((kind, cid, changed))
                inverse = {"kind": "remove" if kind == "add" else "add", "concept": cid, "members": changed}
                if not changed:
                    inverse = None
            elif kind == "rename":
                name = _check_name(op.get("name"))
                self._unique(name, itself=cid)
                inverse = {"kind": "rename", "concept": cid, "name": c["name"]}
                changes.append(("rename", cid, name))
            else:  # delete
                inverse = {"kind": "create", "concept": cid, "name": c["name"], "members": self._members_of(cid),
                           "color": c["color"], "allow_empty": True, "position": self._order.index(cid)}
                changes.append(("delete", cid))
        if record and inverse is not None:
            forward = {k: op[k] for k in ("kind", "name", "members", "color", "allow_empty", "position")
                       if op.get(k) is not None}
            if kind == "create":
                forward.update(color=colour, position=position, allow_empty=bool(op.get("allow_empty", False)))
            changes.append(("push", "undo", {**inverse, "redo": {**forward, "concept": cid}}))
            changes.append(("clear", "redo"))
        return cid

    def _plan_undo_redo(self, conn: sqlite3.Connection, kind: str, changes: list[tuple]) -> str:
        stack, other = ("undo", "redo") if kind == "undo" else ("redo", "undo")
        row = conn.execute("SELECT seq, entry FROM history WHERE stack = ? ORDER BY seq DESC LIMIT 1",
                           (stack,)).fetchone()
        if row is None:
            raise ConceptError(f"nothing to {kind}")
        try:
            entry = _valid_entry(json.loads(row[1]), self._examples, f"the {stack} entry")
        except (ValueError, _Invalid) as err:
            raise ConceptFileError(f"cannot {kind}: the {stack} entry in {self.path} is damaged ({err}); nothing "
                                   "was changed") from None
        forward = {k: v for k, v in entry.items() if k != "redo"}
        cid = self._plan(conn, forward, False, changes)
        changes.append(("pop", stack, row[0]))
        changes.append(("push", other, {**entry["redo"], "redo": forward}))
        return cid

    def _write(self, conn: sqlite3.Connection, changes: list[tuple], now: float,
               revision: int) -> tuple[tuple[int, int], dict[str, int]]:
        """Issue the SQL for ``changes`` (inside the caller's transaction); returns the new stack sizes and the
        row keys of the concepts it created."""
        n_undo, n_redo = self._n_undo, self._n_redo
        keys: dict[str, int] = {}
        for change in changes:
            kind = change[0]
            if kind == "create":
                _, cid, name, colour, members, position = change
                conn.execute("UPDATE concepts SET position = position + 1 WHERE position >= ?", (position,))
                keys[cid] = conn.execute("INSERT INTO concepts (id, name, color, position, created, updated, "
                                         "changed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                                         (cid, name, colour, position, now, now, revision)).lastrowid
                _member_rows(conn, "add", keys[cid], members)
            elif kind in ("add", "remove"):
                _member_rows(conn, kind, self._concepts[change[1]]["key"], change[2])
                conn.execute("UPDATE concepts SET updated = ?, changed_at = ? WHERE id = ?", (now, revision, change[1]))
            elif kind == "rename":
                conn.execute("UPDATE concepts SET name = ?, updated = ?, changed_at = ? WHERE id = ?",
                             (change[2], now, revision, change[1]))
            elif kind == "delete":
                cid = change[1]
                conn.execute("DELETE FROM members WHERE concept = ?", (self._concepts[cid]["key"],))
                conn.execute("DELETE FROM concepts WHERE id = ?", (cid,))
                conn.execute("UPDATE concepts SET position = position - 1 WHERE position > ?",
                             (self._order.index(cid),))
            elif kind == "push":
                _, stack, entry = change
                conn.execute("INSERT INTO history (stack, entry) VALUES (?, ?)",
                             (stack, json.dumps(entry, ensure_ascii=False, separators=(",", ":"))))
                if stack == "redo":
                    n_redo += 1
                else:
                    n_undo += 1
                    if n_undo > UNDO_KEPT:
                        conn.execute("DELETE FROM history WHERE seq = (SELECT seq FROM history WHERE stack = 'undo' "
                                     "ORDER BY seq LIMIT 1)")
                        n_undo -= 1
            elif kind == "pop":
                conn.execute("DELETE FROM history WHERE seq = ?", (change[2],))
                if change[1] == "undo":
                    n_undo -= 1
                else:
                    n_redo -= 1
            elif kind == "clear" and n_redo:
                conn.execute("DELETE FROM history WHERE stack = 'redo'")
                n_redo = 0
        return (n_undo, n_redo), keys

    def _patch(self, changes: list[tuple], now: float, revision: int, counts: tuple[int, int],
               keys: dict[str, int]) -> None:
        """Bring memory in line with what was just committed (plain dict and set operations: cannot fail)."""
        for change in changes:
            kind, cid = change[0], change[1]
            if kind == "create":
                _, cid, name, colour, members, position = change
                self._concepts[cid] = {"name": name, "color": colour, "members": set(members), "created": now,
                                       "updated": now, "changed_at": revision, "key": keys[cid]}
                self._order.insert(position, cid)
            elif kind in ("add", "remove"):
                c = self._concepts[cid]
                (c["members"].update if kind == "add" else c["members"].difference_update)(change[2])
                c["updated"], c["changed_at"] = now, revision
                self._sorted.pop(cid, None)
            elif kind == "rename":
                self._concepts[cid].update(name=change[2], updated=now, changed_at=revision)
            elif kind == "delete":
                del self._concepts[cid]
                self._order.remove(cid)
                self._sorted.pop(cid, None)
        self._n_undo, self._n_redo = counts

    def _members_of(self, cid: str) -> list[int]:
        if cid not in self._sorted:
            self._sorted[cid] = sorted(self._concepts[cid]["members"])
        return self._sorted[cid]

    def _unique(self, name: str, itself: str | None = None) -> None:
        for cid, c in self._concepts.items():
            if cid != itself and c["name"].casefold() == name.casefold():
                raise ConceptError(f"a concept named {c['name']!r} exists; choose another name, or add to it")

    def _resolve(self, concept: Any) -> str:
        if isinstance(concept, str) and concept in self._concepts:
            return concept
        for cid, c in self._concepts.items():
            if c["name"] == concept:
                return cid
        names = [self._concepts[cid]["name"] for cid in self._order]
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

    def _read(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` under the lock, after catching up with other processes (listeners called if they changed it)."""
        with self._lock:
            changed = self._sync()
            out = fn()
        if changed:
            self._listeners.call(self)
        return out

    @property
    def revision(self) -> int:
        """How many changes were acknowledged (by any process)."""
        return self._read(lambda: self._revision)

    @property
    def examples(self) -> int | None:
        """How many examples the indices refer to (None: not said)."""
        return self._examples

    def concepts(self) -> dict[str, list[int]]:
        """Concept name -> sorted member indices, in creation order."""
        return self._read(lambda: {self._concepts[cid]["name"]: list(self._members_of(cid)) for cid in self._order})

    def __getitem__(self, name: str) -> list[int]:
        return self._read(lambda: list(self._members_of(self._resolve(name))))

    def snapshot(self) -> dict[str, Any]:
        """What a view shows: revision, concepts in order (id, name, colour, members), undo/redo availability."""
        return self._read(lambda: {
            "revision": self._revision, "can_undo": self._n_undo > 0, "can_redo": self._n_redo > 0,
            "concepts": [{"id": cid, "name": self._concepts[cid]["name"], "color": self._concepts[cid]["color"],
                          "members": list(self._members_of(cid))} for cid in self._order]})

    def subscribe(self, listener: Callable[[ConceptStore], None]) -> Callable[[], None]:
        """Call ``listener(store)`` after each acknowledged change (and when another process's change is
        noticed); returns the function that stops it."""
        return self._listeners.add(listener)

    # -- merging and export --------------------------------------------------------------------------------------
    def merge(self, other: str | os.PathLike | ConceptStore, resolve: str = "report") -> MergeReport:
        """Bring in another annotator's concepts (a store, a database, or a JSON file of an earlier release, which
        is only read). New names are added; equal ones noted; a name whose members differ is a conflict: reported
        and left as it is here (``resolve="union"`` takes the union instead). Each addition is an acknowledged
        operation (undoable)."""
        if resolve not in ("report", "union"):
            raise ConceptError(f"resolve must be 'report' or 'union'; got {resolve!r}")
        theirs = other.snapshot() | {"examples": other.examples} if isinstance(other, ConceptStore) else \
            read_snapshot(other)
        mine = self.snapshot()
        n_here, n_there = self._examples, theirs.get("examples")
        if n_here is not None and n_there is not None and n_here != n_there:
            raise ConceptFileError(f"cannot merge: this file annotates {n_here} examples, the other {n_there}")
        report = MergeReport()
        here = {c["name"].casefold(): c for c in mine["concepts"]}
        plan = []  # every operation is checked before any is applied: a merge never stops half-way
        for c in theirs["concepts"]:
            members = _members(c["members"], n_here, f"members of {c['name']!r} in the other file")
            key = _check_name(c["name"]).casefold()
            if key not in here:
                plan.append({"kind": "create", "name": c["name"], "members": members, "allow_empty": True})
                report.added.append(c["name"])
                continue
            have = set(here[key]["members"])
            extra = sorted(set(members) - have)
            if have == set(members) or (resolve == "union" and not extra):  # (a subset: the union is ours)
                report.same.append(c["name"])
            elif resolve == "union":
                plan.append({"kind": "add", "concept": here[key]["id"], "members": extra})
                report.merged.append(c["name"])
            else:
                report.conflicts.append({"name": c["name"], "only_here": sorted(have - set(members)),
                                         "only_there": extra})
        for op in plan:
            self.apply(op)
        return report

    def rows(self) -> list[dict[str, Any]]:
        """One row per (concept, example): concept, example, concept_id."""
        return self._read(lambda: [{"concept": self._concepts[cid]["name"], "example": i, "concept_id": cid}
                                   for cid in self._order for i in self._members_of(cid)])

    def to_dataframe(self):
        """:meth:`rows` as a pandas DataFrame (needs pandas)."""
        pd = require("pandas", "ConceptStore.to_dataframe (or use rows() / to_csv())")
        return pd.DataFrame(self.rows(), columns=["concept", "example", "concept_id"])

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write :meth:`rows` as CSV (concept, example, concept_id), atomically. Text that a spreadsheet would run
        as a formula (starting with ``= + - @``, a tab or a carriage return) is written with a leading ``'``.
        Returns the path."""
        path = Path(path).expanduser()
        rows = self.rows()
        buffer = _CsvBuffer()
        writer = csv.writer(buffer)
        writer.writerow(["concept", "example", "concept_id"])
        writer.writerows([_cell(r["concept"]), r["example"], _cell(r["concept_id"])] for r in rows)
        try:
            mode = os.stat(path).st_mode & 0o777 if path.exists() else _default_mode()
            _write_file(path, "".join(buffer.parts).encode("utf-8"), mode)
        except OSError as err:
            raise _sqlite_error(err, path, "write the CSV") from err
        return path


class _CsvBuffer:
    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> None:
        self.parts.append(text)


def _cell(text: str) -> str:
    """A CSV cell a spreadsheet shows as text (OWASP's advice on CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
