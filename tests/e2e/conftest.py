from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from .lab import CHROMIUM, FLAGS, Lab, missing_requirements

ARTIFACTS = Path(os.environ.get("HW_ARTIFACTS", Path(__file__).resolve().parents[2] / "artifacts"))


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/e2e" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def e2e_ready():
    why = missing_requirements()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests cannot run in CI: {why}")
        pytest.skip(f"browser tests skipped: {why}")


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="module")
def lab(e2e_ready):
    root = Path(tempfile.mkdtemp(prefix="hw-lab-"))
    server = Lab(root)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser(e2e_ready):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()
