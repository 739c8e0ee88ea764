from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("npm") is None, reason="building the front end needs npm")
def test_wheel_ships_the_built_front_end(tmp_path):
    pytest.importorskip("hatchling")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                    "--quiet", "-w", str(tmp_path)], check=True, cwd=tmp_path)
    wheel = next(tmp_path.glob("hiddenwidgets-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert {"hiddenwidgets/static/activation_monitor.js", "hiddenwidgets/static/static_boot.js"} <= names
        module = z.read("hiddenwidgets/static/activation_monitor.js").decode()
    assert "export" in module and "render" in module
    assert "http://" not in module and "https://" not in module  # nothing fetched at run time


def test_the_bundle_is_build_output_not_source():
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "ls-files", "hiddenwidgets/static"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout
    assert tracked == ""
