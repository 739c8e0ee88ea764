"""examples/03_information_plane.ipynb in JupyterLab + Chromium: the plane updates while training runs, the
estimator can be switched in the view while the cell is busy, and the exported pages render offline."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from .lab import network_requests, open_offline, put_notebook, start_view
from .test_live_monitor import wait_for
from .visual import audit_in_lab

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "03_information_plane.ipynb"
SETUP, TANH_VIEW, TANH_TRAIN, RELU_VIEW, RELU_TRAIN, ALTAIR, EXPORT = 1, 3, 4, 6, 7, 9, 10


@pytest.mark.timeout(1200)
def test_information_plane_in_jupyterlab(lab, browser, artifacts):
    errors: list[str] = []
    nb, view = start_view(browser, lab, put_notebook(EXAMPLE, lab.root), "plane", [SETUP, TANH_VIEW], ".hw-ip",
                          errors)
    page = nb.page
    nb.run_cell(TANH_TRAIN)

    # live: more recorded epochs appear while the cell runs
    page.wait_for_function("() => Number(document.querySelector('.hw-ip').dataset.recorded) >= 3", timeout=60_000)
    first = int(view.get_attribute("data-recorded"))
    time.sleep(2)
    assert nb.busy(TANH_TRAIN), "training ended too early for this test; raise EPOCHS in the example"
    assert int(view.get_attribute("data-recorded")) > first

    # switch the estimator in the view while training runs: Python recomputes and the view shows it
    t0 = time.monotonic()
    page.select_option(".hw-ip-estimator", "kde_upper")
    wait_for(page, ".hw-ip .hw-panel-title:text('KDE upper bound')", "the KDE estimates during training", 30,
             artifacts)
    switch_s = time.monotonic() - t0
    assert nb.busy(TANH_TRAIN), "the training cell ended before the estimator switch could be observed"
    page.select_option(".hw-ip-estimator", "binned")
    wait_for(page, ".hw-ip .hw-panel-title:text('binning')", "the binned estimates again", 15, artifacts)
    view.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "information_plane_during_training.png"))

    # the example's 3,000 epochs took 290-320 s on a 2-core CI machine with two torch threads (300 s timed out
    # once); the example now trains on one thread: 105 s on a quiet machine. The wait keeps the margin
    nb.wait_done(TANH_TRAIN, 600)
    out = nb.output_text(TANH_TRAIN)
    compression = [float(v) for v in re.findall(r"compression (\d+\.\d+)", out)]
    assert len(compression) == 6 and max(compression) > 0.5, out  # the deepest layers compress
    nb.run_and_wait(RELU_VIEW, 60)
    nb.run_and_wait(RELU_TRAIN, 300)
    relu = re.findall(r"(\d+\.\d+) ->\s+(\d+\.\d+) bits", nb.output_text(RELU_TRAIN))
    assert len(relu) == 6 and all(float(b) >= float(a) - 0.05 for a, b in relu)  # no compression (Saxe et al.)
    nb.run_and_wait(ALTAIR, 60)
    saved = re.search(r"saved a Vega-Lite spec with (\d+) points", nb.output_text(ALTAIR))
    assert saved and int(saved.group(1)) % 6 == 0 and int(saved.group(1)) > 300  # recorded epochs x 6 layers
    nb.run_and_wait(EXPORT, 60)
    assert "wrote information_plane_tanh.html" in nb.output_text(EXPORT)

    static, requests = open_offline(browser, lab.root / "information_plane_tanh.html", errors)
    assert static.inner_text(".hw-am-counter").startswith("epoch 2999 ·")
    assert network_requests(requests) == []
    static.screenshot(path=str(artifacts / "information_plane_static.png"), full_page=True)
    static.close()
    (artifacts / "e2e_information_plane.json").write_text(json.dumps({"estimator_switch_s": round(switch_s, 2)}))
    print("E2E information plane", json.dumps({"estimator_switch_s": round(switch_s, 2), "compression": compression}))
    audit_in_lab(page, EXAMPLE.stem, artifacts)  # issue 13: records for test_visual.py
    assert errors == []
    page.close()
