"""Scripts that only record never import the notebook stack (ipywidgets, IPython, anywidget, altair)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VIEW_STACK = ("ipywidgets", "IPython", "anywidget", "altair")


def run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_recording_imports_no_view_and_views_come_when_asked_for():
    out = run(
        "import sys, torch, hiddenwidgets as hw\n"
        f"stack = {VIEW_STACK!r}\n"
        "before = [m for m in stack if m in sys.modules]\n"
        "model = torch.nn.Sequential(torch.nn.Linear(3, 2))\n"
        "rec = hw.ActivationRecorder(model, ['0'], every=1)\n"
        "model(torch.randn(4, 3)).sum().backward(); rec.step(loss=1.0); rec.close()\n"
        "recorded = [m for m in stack if m in sys.modules]\n"
        "view = hw.ActivationMonitor\n"
        "print(before, recorded, view.__name__, 'ipywidgets' in sys.modules, 'save_html' in dir(hw))\n"
        "try:\n    hw.NoSuchView\nexcept AttributeError as err:\n    print(err)\n")
    assert out == "[] [] ActivationMonitor True True\nmodule 'hiddenwidgets' has no attribute 'NoSuchView'"
