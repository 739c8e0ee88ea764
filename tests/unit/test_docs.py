"""Documentation a user can navigate: every public name documented in one style, and the API reference builds.

The API reference is built from the docstrings by pdoc (numpydoc sections rendered) into ``artifacts/api/`` — CI
keeps that folder, so each run's reference can be opened from the run's artifacts.
"""

from __future__ import annotations

import inspect
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

import hiddenwidgets as hw

ROOT = Path(__file__).resolve().parents[2]
PUBLIC = sorted(hw.__all__)


def test_every_public_name_has_a_docstring():
    missing = [name for name in PUBLIC if not (inspect.getdoc(getattr(hw, name)) or "").strip()]
    assert not missing, f"public names without a docstring: {missing}"


def test_one_docstring_style():
    """numpydoc sections (``Parameters`` + dashes), never Google's ``Args:`` blocks, anywhere in the package."""
    google = []
    for path in (ROOT / "hiddenwidgets").rglob("*.py"):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.fullmatch(r"\s*(Args|Arguments|Keyword Args|Raises|Returns|Yields):\s*", line):
                google.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not google, "Google-style sections; write numpydoc instead:\n" + "\n".join(google)


def test_the_monitors_options_are_in_its_signature():
    """Shift+Tab in a notebook shows a signature: the options must be named parameters, not **kwargs."""
    params = inspect.signature(hw.ActivationMonitor).parameters
    for option in ("gradients", "validation", "calls", "units", "every", "overhead", "fps", "bins", "history_points"):
        assert option in params and params[option].kind is inspect.Parameter.KEYWORD_ONLY, option
        assert params[option].default is not inspect.Parameter.empty


def test_the_api_reference_builds_with_every_public_name():
    if shutil.which("pdoc") is None and not _has_module("pdoc"):
        pytest.skip("pdoc is not installed (pip install -e '.[test]' installs it)")
    out = ROOT / "artifacts" / "api"
    shutil.rmtree(out, ignore_errors=True)
    run = subprocess.run([sys.executable, "-m", "pdoc", "--docformat", "numpy", "--no-show-source", "-o", str(out),
                          "hiddenwidgets", "hiddenwidgets.analysis"], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    page = (out / "hiddenwidgets.html").read_text(encoding="utf-8")
    documented = [name for name in PUBLIC if not isinstance(getattr(hw, name), types.ModuleType)]
    absent = [name for name in documented if f'id="{name}"' not in page]
    assert not absent, f"not in the API reference: {absent}"
    # numpydoc sections are rendered as sections, not left as raw text
    assert page.count('id="parameters"') >= 5
    assert (out / "hiddenwidgets" / "analysis" / "tcav.html").exists()


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
