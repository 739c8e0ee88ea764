"""The real-architecture matrix as figures: for each architecture of tests/zoo.py and each column (monitor,
layer_features, and with --attribution every method of hw.attribute on 12 models), how many cells work (equal to a
value computed by hand from the model's own outputs, or to the paper's formula on activations reshaped by hand),
are refused clearly, or are wrong. One JSON line per cell, then the totals.

    python benchmarks/zoo_matrix.py                      # this checkout
    python benchmarks/zoo_matrix.py --package /tmp/old   # an older checkout of the package, for "before" figures

``--package`` puts that folder first on sys.path, so ``import hiddenwidgets`` is the other version while the
matrix (tests/zoo.py) stays this one.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import warnings
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--package", type=Path, help="a checkout whose hiddenwidgets package to measure")
    parser.add_argument("--only", nargs="*", help="architecture names (substrings) to run")
    parser.add_argument("--attribution", action="store_true", help="also the attribution column (slow)")
    args = parser.parse_args()
    sys.path.insert(0, str((args.package or ROOT).resolve()))
    warnings.filterwarnings("ignore", module="transformers")
    import hiddenwidgets as hw

    spec = importlib.util.spec_from_file_location("hw_zoo", ROOT / "tests" / "zoo.py")  # this checkout's matrix
    zoo = importlib.util.module_from_spec(spec)
    sys.modules["hw_zoo"] = zoo
    spec.loader.exec_module(zoo)

    columns = [("monitor", zoo.monitor_cells), ("layer_features", zoo.features_cells)]
    totals: Counter = Counter()
    for arch in zoo.ZOO:
        if args.only and not any(s.lower() in arch.name.lower() for s in args.only):
            continue
        for column, cells_of in columns:
            if column == "layer_features" and arch.compile:
                continue
            try:
                cells = cells_of(arch, hw)
            except Exception as err:
                cells = {"(all)": ("wrong", f"{type(err).__name__}: {err}"[:200])}
            for layer, (verdict, why) in cells.items():
                totals[(column, verdict)] += 1
                print(json.dumps({"arch": arch.name, "column": column, "cell": layer, "verdict": verdict,
                                  "why": why}), flush=True)
    verdicts = ["works", "refused", "wrong"]
    if args.attribution:
        columns.append(("attribute", None))
        verdicts[1:1] = ["works_unchecked"]
        verdicts[-1:-1] = ["wrong_warned"]
        verdicts.append("unclear_error")
        cases = [c for c in zoo.attribution_cases() if not args.only or any(s.lower() in c.name for s in args.only)]
        for (model, method), (outcome, detail) in zoo.attribution_cells(hw, cases).items():
            totals[("attribute", outcome)] += 1
            print(json.dumps({"arch": model, "column": "attribute", "cell": method, "verdict": outcome,
                              "why": detail}), flush=True)
    for column, _ in columns:
        print(json.dumps({"column": column, **{v: totals[(column, v)] for v in verdicts if totals[(column, v)]}}))
    print(json.dumps({"package": str(Path(hw.__file__).parent), "total": {
        v: sum(n for (c, vv), n in totals.items() if vv == v) for v in verdicts}}))


if __name__ == "__main__":
    main()
