"""A run written by another process (a training script), followed in JupyterLab + Chromium: frames appear in the
monitor view while the script writes them, and after it ends the view holds its last step and says it ended; a run
that also holds information-plane and representation records replays with those views under the monitor."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from .lab import NotebookPage, write_notebook
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
        write_notebook(nb_path, cells)
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


def test_a_run_with_information_and_representation_records_replays_all_three_views(lab, browser, artifacts):
    import torch

    import hiddenwidgets as hw

    run = lab.root / "runs" / "planes"
    run.parent.mkdir(exist_ok=True)
    torch.manual_seed(0)  # the job: this test's process, not the notebook's kernel
    model = torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.Tanh(), torch.nn.Linear(12, 3))
    x = torch.randn(64, 6)
    y = (x[:, 0] > 0).long()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with hw.ActivationRecorder(model, ["0", "2"], logdir=run, every=1) as rec, \
            hw.InformationRecorder(model, ["1", "2"], x, y, epochs=[0, 1, 2], logdir=run) as info, \
            hw.RepresentationRecorder(model, ["1"], x, logdir=run) as reps:
        for epoch in range(3):
            for i in range(0, 64, 16):
                loss = torch.nn.functional.cross_entropy(model(x[i:i + 16]), y[i:i + 16])
                opt.zero_grad()
                loss.backward()
                info.step()
                opt.step()
                rec.step(epoch=epoch, loss=loss)
            info.end_epoch()
            reps.end_epoch()
    nb_path = lab.root / "planes.ipynb"
    write_notebook(nb_path, ["import hiddenwidgets as hw\nview = hw.ActivationMonitor.follow('runs/planes')\nview"])
    page = browser.new_page(viewport={"width": 1300, "height": 1400})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    nb = NotebookPage(page, lab, nb_path.name, "planes")
    nb.run_and_wait(0, 120)
    wait_for(page, ".hw-am[data-step='12']", "the replayed monitor at the run's last step", 30, artifacts)
    wait_for(page, ".hw-ip[data-recorded='3']", "the information plane with the 3 recorded epochs", 30, artifacts)
    wait_for(page, "[data-hw-view='projector'] .hw-am-frames:has-text('64 points')", "the projector's points", 30,
             artifacts)
    titles = page.eval_on_selector_all(".hw-am-title", "els => els.map(e => e.textContent)")
    assert titles[0] == "planes · followed from disk" and "representations, followed from disk" in titles[-1]
    page.screenshot(path=str(artifacts / "follow_run_planes.png"))
    assert errors == []
