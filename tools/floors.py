"""Print the oldest versions pyproject.toml admits, as pip pins: `>=X` becomes `==X` (the floors CI tests).

    python tools/floors.py            # one requirement per line, for pip install -r /dev/stdin
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# floors written without a patch version that must name an installable release (a CPU build of torch)
EXACT = {"torch": "torch==2.13.0"}


def floors() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = []
    for requirement in project["dependencies"]:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9.]*)", requirement.strip())
        if match is None:
            raise SystemExit(f"tools/floors.py: cannot read a floor from {requirement!r}; write it as name>=version")
        name, version = match.groups()
        pins.append(EXACT.get(name.lower(), f"{name}=={version}"))
    return pins


if __name__ == "__main__":
    sys.stdout.write("\n".join(floors()) + "\n")
