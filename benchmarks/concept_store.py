"""How long one concept edit takes to be durable, as the edit history grows: the store alone (no browser, no kernel).

    python benchmarks/concept_store.py [--ops 1000] [--window 30] [--examples 60000] [--selection 5000]
                                       [--old-ops 130] [--old-ref main] [--folder DIR]

Workload (the same for each implementation): ``examples`` examples; ops 1-4 create four concepts from random
``selection``-member selections; every later op adds a fresh random selection to one concept or removes one from
it (concepts in turn, add and remove alternating), so every op changes up to ``selection`` members and every undo
entry holds that many. The time is :meth:`ConceptStore.apply` from call to return (the change is durable when it
returns: committed with ``synchronous=FULL``, or for the old JSON store written, fsynced and renamed).

Prints JSON lines: an ``environment`` line; then per implementation and per mark (op 1, 100, 1,000) ``{"figure":
"store_edit_ms", "impl", "at_op", "ops": [first, last], "median", "p95", "max", "n", "file_mb", "wal_mb"}`` over
the ``window`` ops starting at the mark, with the sizes of the file and of its write-ahead log (edits back to back
outrun the checkpoint thread, so the log grows towards SQLite's backstop checkpoint at 40 MB); then
``store_open_ms`` (opening the database after the last op, in a new store), ``store_catch_up_ms`` (an edit right
after another store changed the database, which re-reads what changed) and ``wal_at_pace_mb`` (the log's largest
size over ``--paced`` edits made 0.2 s apart, as a person makes them).

``--old-ops`` runs the JSON store of ``--old-ref`` (git show <ref>:hiddenwidgets/pipeline/concepts.py) as far as that
op (0 skips it): it rewrites the whole file with the whole undo stack per edit, so op 1,000 would take hours.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MARKS = (1, 100, 1000)


def p95(values: list[float]) -> float:
    s = sorted(values)
    return s[max(0, math.ceil(0.95 * len(s)) - 1)]


def old_module(ref: str):
    """The store as it is at ``ref``, imported from a temporary file (its relative imports made absolute)."""
    source = subprocess.run(["git", "show", f"{ref}:hiddenwidgets/pipeline/concepts.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    source = source.replace("from ..analysis.matrices import", "from hiddenwidgets.analysis.matrices import")
    source = source.replace("from .listeners import", "from hiddenwidgets.pipeline.listeners import")
    path = Path(tempfile.mkdtemp(prefix="hw-old-store-")) / "concepts_old.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("concepts_old", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (its dataclasses look their module up)
    spec.loader.exec_module(module)
    return module


def workload(count: int, examples: int, selection: int, seed: int = 0):
    """The operations, generated lazily (the same sequence for every implementation)."""
    rng = random.Random(seed)
    for k in range(1, count + 1):
        members = rng.sample(range(examples), selection)
        if k <= 4:
            yield {"kind": "create", "name": f"concept {k}", "members": members, "op_id": f"op-{k}"}
        else:
            kind = "add" if ((k - 5) // 4) % 2 == 0 else "remove"
            yield {"kind": kind, "concept": f"concept {(k - 5) % 4 + 1}", "members": members, "op_id": f"op-{k}"}


def sizes_mb(path: Path) -> dict[str, float]:
    """The file and (SQLite) its write-ahead log, in MB."""
    wal = Path(f"{path}-wal")
    return {"file_mb": round(path.stat().st_size / 1e6, 2),
            **({"wal_mb": round(wal.stat().st_size / 1e6, 2)} if wal.exists() else {})}


def run(impl: str, store, path: Path, count: int, window: int, examples: int, selection: int) -> None:
    times: dict[int, float] = {}
    sizes: dict[int, dict[str, float]] = {}
    for k, op in enumerate(workload(count, examples, selection), start=1):
        t = time.perf_counter()
        store.apply(op)
        times[k] = (time.perf_counter() - t) * 1000
        if any(k == m + window - 1 for m in MARKS):
            sizes[k] = sizes_mb(path)
    for mark in MARKS:
        span = [times[k] for k in range(mark, mark + window) if k in times]
        if len(span) < window:
            continue
        print(json.dumps({"figure": "store_edit_ms", "impl": impl, "at_op": mark, "ops": [mark, mark + window - 1],
                          "median": round(statistics.median(span), 2), "p95": round(p95(span), 2),
                          "max": round(max(span), 2), "n": len(span), **sizes[mark + window - 1]}),
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=1000 + 29, help="operations for the SQLite store")
    parser.add_argument("--window", type=int, default=30, help="ops measured from each mark")
    parser.add_argument("--examples", type=int, default=60_000)
    parser.add_argument("--selection", type=int, default=5_000, help="members per selection")
    parser.add_argument("--old-ops", type=int, default=0, help="run the old JSON store up to this op (e.g. 130)")
    parser.add_argument("--old-ref", default="main")
    parser.add_argument("--paced", type=int, default=100, help="edits 0.2 s apart for wal_at_pace_mb (0 skips)")
    parser.add_argument("--folder", default=None, help="where the files go (default: a temporary folder)")
    args = parser.parse_args()
    args.ops = max(args.ops, max(m for m in MARKS if m <= args.ops) + args.window - 1)
    from hiddenwidgets.pipeline.concepts import ConceptStore

    folder = Path(args.folder or tempfile.mkdtemp(prefix="hw-bench-store-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(json.dumps({"figure": "environment", "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
                      "cpus": os.cpu_count(), "folder": str(folder), "examples": args.examples,
                      "selection": args.selection, "window": args.window}), flush=True)

    path = folder / "store.db"
    store = ConceptStore(path, examples=args.examples)
    run("sqlite", store, path, args.ops, args.window, args.examples, args.selection)

    t = time.perf_counter()
    again = ConceptStore(path, examples=args.examples)
    opened = (time.perf_counter() - t) * 1000
    print(json.dumps({"figure": "store_open_ms", "impl": "sqlite", "after_ops": args.ops, "ms": round(opened, 1),
                      "members": sum(len(m) for m in again.concepts().values())}), flush=True)
    rng = random.Random(1)
    catch_up = []
    for k in range(args.window):  # each edit in `store` follows one made in `again`: it must re-read first
        again.apply({"kind": "add", "concept": "concept 1", "members": [rng.randrange(args.examples)]})
        t = time.perf_counter()
        store.apply({"kind": "remove" if k % 2 else "add", "concept": "concept 2",
                     "members": rng.sample(range(args.examples), args.selection)})
        catch_up.append((time.perf_counter() - t) * 1000)
    print(json.dumps({"figure": "store_catch_up_ms", "impl": "sqlite", "median": round(statistics.median(catch_up), 2),
                      "p95": round(p95(catch_up), 2), "n": len(catch_up)}), flush=True)
    store.close()
    again.close()

    paced = ConceptStore(folder / "paced.db", examples=args.examples)
    largest = 0
    for op in workload(args.paced, args.examples, args.selection):
        paced.apply(op)
        largest = max(largest, Path(f"{folder / 'paced.db'}-wal").stat().st_size)
        time.sleep(0.2)
    print(json.dumps({"figure": "wal_at_pace_mb", "impl": "sqlite", "edits": args.paced, "seconds_apart": 0.2,
                      "largest": round(largest / 1e6, 2)}), flush=True)
    paced.close()

    if args.old_ops:
        old = old_module(args.old_ref)
        old_path = folder / "store.json"
        run(f"json ({args.old_ref})", old.ConceptStore(old_path, examples=args.examples), old_path, args.old_ops,
            args.window, args.examples, args.selection)


if __name__ == "__main__":
    main()
