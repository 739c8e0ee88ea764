"""Build the front end (js/ -> hiddenwidgets/static/) for wheels, sdists and editable installs.

The bundles are build output, never committed. Each build writes ``hiddenwidgets/static/SOURCES`` with the
SHA-256 of the sources it was built from (js/*.js, js/lib/, package.json, the lock file, build.mjs). That makes
one rule possible for every way the package is built:

- bundles whose recorded hash matches the sources are reused as they are (an sdist carries them, so
  ``pip install hiddenwidgets-<v>.tar.gz`` and ``--no-binary`` builds need no Node.js);
- otherwise the bundles are rebuilt with the lock file's esbuild, which needs Node.js and npm, and the error says
  so when they are missing.

Set HIDDENWIDGETS_SKIP_JS=1 to reuse whatever bundles are there without checking.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

STAMP = "SOURCES"


def source_files(js: Path) -> list[Path]:
    files = [*js.glob("*.js"), *js.glob("*.mjs"), *(js / "lib").rglob("*.js")]
    files += [js / name for name in ("package.json", "package-lock.json") if (js / name).exists()]
    return sorted(files)


def source_hash(js: Path) -> str:
    digest = hashlib.sha256()
    for path in source_files(js):
        digest.update(path.relative_to(js).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def bundles_current(js: Path, out: Path) -> bool:
    stamp = out / STAMP
    return stamp.exists() and any(out.glob("*.js")) and stamp.read_text().strip() == source_hash(js)


def build_front_end(js: Path, out: Path) -> None:
    npm, node = shutil.which("npm"), shutil.which("node")
    if not npm or not node:
        raise RuntimeError(
            "hiddenwidgets needs Node.js (>=18) and npm to build its front end from js/, because the bundles in "
            f"{out} are missing or were built from other sources. Install Node.js, or install the sdist or a "
            "wheel from the package index, which carry the built bundles."
        )
    if not (js / "node_modules" / "esbuild").exists():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=js, check=True)
    subprocess.run([node, "build.mjs"], cwd=js, check=True)
    (out / STAMP).write_text(source_hash(js) + "\n")


class FrontEndBuildHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict) -> None:
        root = Path(self.root)
        js = root / "js"
        out = root / "hiddenwidgets" / "static"
        if not (js / "package.json").exists():
            if not any(out.glob("*.js")):
                raise RuntimeError(f"neither the front end's sources (js/) nor built bundles ({out}) are here")
            return
        if os.environ.get("HIDDENWIDGETS_SKIP_JS") and any(out.glob("*.js")):
            return
        if not bundles_current(js, out):
            build_front_end(js, out)
