"""A run written by another process (a training script), followed in JupyterLab + Chromium: frames appear in the
monitor view while the script writes them, and after it ends the view holds its last step and says it ended."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from .lab import KERNELSPEC, NotebookPage
from .test_live_monitor import wait_for

WRITER = Path(__file__).with_name("rundir_writer.py")


def test_a_script_run_is_followed_live_in_the_notebook(lab, browser, artifacts):
    run = lab.root / "runs" / "exp1"
    run.parent.mkdir(exist_ok=True)
    script = subprocess.Popen([sys.executable, str(WRITER), str(run)], cwd=lab.root)
    try:
        nb_path = lab.root / "follow.ipynb"
        cells = ["import time, pathlib\nwhile not pathlib.Path('runs/exp1/run.json').exists(): time.sleep(0.1)\n"
                 "import hiddenwidgets as hw\nview = hw.ActivationMonitor.follow('runs/exp1', poll=0.2)\nview"]
        nb_path.write_text(json.dumps({
            "cells": [{"cell_type": "code", "metadata": {}, "source": c, "outputs": [], "execution_count": None}
                      for c in cells],
            "metadata": {"kernelspec": KERNELSPEC}, "nbformat": 4, "nbformat_minor": 5}))
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        nb = NotebookPage(page, lab, nb_path.name, "follow")
        nb.run_and_wait(0, 120)
        wait_for(page, ".hw-am[data-step]:not([data-step='0'])", "frames of the followed run", 30, artifacts)
        view = page.query_selector(".hw-am")
        first = int(view.get_attribute("data-step"))
        received = int(view.get_attribute("data-received"))
        time.sleep(2.0)
        assert script.poll() is None, "the writer ended before the view could be seen updating"
        later = int(view.get_attribute("data-step"))
        assert later > first and int(view.get_attribute("data-received")) > received  # live: new frames arrived
        assert page.inner_text(".hw-am-title") == "exp1 · followed from disk"
        page.screenshot(path=str(artifacts / "follow_run_live.png"))

        run.with_suffix(".stop").write_text("")
        assert script.wait(60) == 0
        last = int(run.with_suffix(".done").read_text())
        page.wait_for_function(f"() => document.querySelector('.hw-am').dataset.step === '{last}'", timeout=15_000)
        wait_for(page, f".hw-am-events:has-text('the run ended at step {last}')", "the end of the run", 10,
                 artifacts)
        assert int(view.get_attribute("data-gaps")) == 0 and errors == []
    finally:
        if script.poll() is None:
            script.kill()
