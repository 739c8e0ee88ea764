"""Release checks: what the wheel and the sdist carry, and that the sdist installs on a machine without Node.

The sdist carries the built bundles with the hash of the sources they came from (hatch_build.py), so a wheel built
from it, with no node or npm on PATH, must come out complete; and the tests it ships must be importable from the
unpacked sdist (every helper and fixture they use is in it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WIDGETS = ["ActivationMonitor", "AttributionExplorer", "ConceptAnnotator", "ConceptScores", "InformationPlane",
           "InterventionView", "ProbeChart", "Projector", "SimilarityMatrix", "UnitAtlas"]
needs_npm = pytest.mark.skipif(shutil.which("npm") is None, reason="building the front end from js/ needs npm")


def version() -> str:
    namespace: dict = {}
    exec((ROOT / "hiddenwidgets" / "_version.py").read_text(), namespace)
    return namespace["__version__"]


@pytest.fixture(scope="module")
def sdist(tmp_path_factory) -> Path:
    pytest.importorskip("hatchling")
    if shutil.which("npm") is None:
        pytest.skip("building the sdist from a checkout needs npm (it builds the bundles it carries)")
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "hatchling", "build", "-t", "sdist", "-d", str(out)], cwd=ROOT,
                   check=True, capture_output=True)
    return next(out.glob("hiddenwidgets-*.tar.gz"))


@needs_npm
def test_wheel_ships_front_end_licence_and_types(tmp_path):
    pytest.importorskip("hatchling")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                    "--quiet", "-w", str(tmp_path)], check=True, cwd=tmp_path)
    wheel = next(tmp_path.glob("hiddenwidgets-*.whl"))
    assert wheel.name.startswith(f"hiddenwidgets-{version()}-")  # one source of truth for the version
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        module = z.read("hiddenwidgets/static/activation_monitor.js").decode()
        licence = z.read(f"hiddenwidgets-{version()}.dist-info/licenses/LICENSE").decode()
        metadata = z.read(f"hiddenwidgets-{version()}.dist-info/METADATA").decode()
    assert {"hiddenwidgets/static/activation_monitor.js", "hiddenwidgets/static/static_boot.js",
            "hiddenwidgets/py.typed", "hiddenwidgets/templates/nbconvert/hiddenwidgets_offline.html.j2"} <= names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    with zipfile.ZipFile(wheel) as z:  # jupyter nbconvert --to hiddenwidgets finds the exporter
        assert "hiddenwidgets = hiddenwidgets.nbconvert:OfflineHTMLExporter" in z.read(entry_points).decode()
    assert "export" in module and "render" in module
    assert "http://" not in module and "https://" not in module  # nothing fetched at run time
    assert "BSD 3-Clause" in licence
    assert "License-Expression: BSD-3-Clause" in metadata and "Requires-Python: >=3.11" in metadata
    assert "Classifier: Typing :: Typed" in metadata


def test_the_bundle_is_build_output_not_source():
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "ls-files", "hiddenwidgets/static"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout
    assert tracked == ""


def test_sdist_carries_bundles_licence_sources_and_tests(sdist):
    prefix = f"hiddenwidgets-{version()}/"
    with tarfile.open(sdist) as tar:
        names = {name.removeprefix(prefix) for name in tar.getnames()}
    for view in ("activation_monitor", "projector", "unit_atlas", "static_boot"):
        assert f"hiddenwidgets/static/{view}.js" in names
        assert f"js/{view}.js" in names  # a source checkout still builds from js/
    assert {"hiddenwidgets/static/SOURCES", "LICENSE", "README.md", "hiddenwidgets/py.typed", "hatch_build.py",
            "tests/unit/conftest.py", "tests/zoo.py", "tests/peak_memory.py", "docs/screenshot.png"} <= names


def test_sdist_builds_a_complete_wheel_without_node(sdist, tmp_path):
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path / "src", filter="data")
    unpacked = next((tmp_path / "src").iterdir())
    no_tools = tmp_path / "empty-bin"  # PATH with no node, no npm
    no_tools.mkdir()
    env = {**os.environ, "PATH": str(no_tools)}
    env.pop("HIDDENWIDGETS_SKIP_JS", None)
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(unpacked), "--no-deps", "--no-build-isolation",
                    "--quiet", "-w", str(tmp_path / "wheel")], check=True, cwd=tmp_path, env=env)
    wheel = next((tmp_path / "wheel").glob("*.whl"))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target),
                    str(wheel)], check=True, env=env)
    probe = (
        "import hiddenwidgets as hw, pathlib, sys\n"
        f"assert pathlib.Path(hw.__file__).is_relative_to({str(target)!r}), hw.__file__\n"
        f"for name in {WIDGETS!r}:\n"
        "    esm = getattr(hw, name)._esm\n"
        "    assert 'export' in esm and 'missing' not in esm[:200].lower(), name\n"
        "print(hw.__version__)\n"
    )
    run = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                         env={**env, "PYTHONPATH": str(target)})
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == version()


def test_unpacked_sdist_tests_are_complete(sdist, tmp_path):
    """Every test module the sdist ships imports from the unpacked sdist: no fixture or helper left behind."""
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path, filter="data")
    unpacked = next(tmp_path.iterdir())
    run = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                          "tests"], cwd=unpacked, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " tests collected" in run.stdout or " tests collected" in run.stdout.splitlines()[-1]
    # and a test module runs there, against the unpacked sdist's own package (its bundles included)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "tests/unit/test_summaries.py"], cwd=unpacked,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(unpacked)})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout.splitlines()[-1] and "failed" not in run.stdout.splitlines()[-1]


def test_unsupported_python_or_torch_gets_a_clear_message(monkeypatch):
    from hiddenwidgets import _requirements

    with pytest.raises(ImportError, match=r"needs Python 3\.11 or newer; this is Python 3\.10"):
        _requirements.check(python=(3, 10))
    monkeypatch.delenv("HIDDENWIDGETS_ALLOW_UNTESTED", raising=False)
    with pytest.raises(ImportError, match=r"PyTorch 2\.13 or newer; this environment has 2\.5\.1\+cu121"):
        _requirements.check(python=(3, 11), torch_version="2.5.1+cu121")
    _requirements.check(python=(3, 12), torch_version="2.13.0+cpu")  # the floor itself passes
    _requirements.check(python=(3, 11), torch_version="2.14.0a0")
    monkeypatch.setenv("HIDDENWIDGETS_ALLOW_UNTESTED", "1")
    _requirements.check(python=(3, 11), torch_version="2.5.1")  # the user chose to try
