"""Build the front end (js/ -> hiddenwidgets/static/) whenever a wheel, sdist or editable install is made.

The bundles are build output: never committed, always rebuilt from js/ with the lock file's esbuild.
Set HIDDENWIDGETS_SKIP_JS=1 to reuse bundles that are already there (e.g. a wheel built twice in a row).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class FrontEndBuildHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict) -> None:
        root = Path(self.root)
        js = root / "js"
        out = root / "hiddenwidgets" / "static"
        if self.target_name == "sdist" or not (js / "package.json").exists():
            return
        if os.environ.get("HIDDENWIDGETS_SKIP_JS") and any(out.glob("*.js")):
            return
        npm = shutil.which("npm")
        node = shutil.which("node")
        if not npm or not node:
            raise RuntimeError(
                "hiddenwidgets needs Node.js (>=18) and npm to build its front end from js/. "
                "Install Node.js, or install a prebuilt wheel instead of the source tree."
            )
        if not (js / "node_modules" / "esbuild").exists():
            subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=js, check=True)
        subprocess.run([node, "build.mjs"], cwd=js, check=True)
