"""examples/02_attribution.ipynb in JupyterLab + Chromium: the grid fills in, a method ticked in the view is
computed, a slow one can be cancelled, and the exported page renders offline."""

from __future__ import annotations

import time
from pathlib import Path

from .lab import network_requests, open_offline, put_notebook, start_view
from .test_live_monitor import wait_for
from .visual import audit_in_lab

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "02_attribution.ipynb"
TRAIN, EXPLORER, METRICS, SANITY, EXPORT = 1, 2, 4, 6, 7
SLOW = 8  # appended below: the same model on 48 x 48 images, where perturbation methods take seconds
SLOW_SOURCE = ("import torch.nn.functional as _F\n"
               "slow = hw.AttributionExplorer(model, _F.interpolate(images, size=48), labels, selected=['saliency'],\n"
               "                              title='larger images')\n"
               "slow")
READY = ".hw-ae-cell[data-ready='true'], .hw-ae-cell[data-error='true']"


def test_attribution_explorer_in_jupyterlab(lab, browser, artifacts):
    errors: list[str] = []
    path = put_notebook(EXAMPLE, lab.root, extra_cells=[SLOW_SOURCE])
    nb, view = start_view(browser, lab, path, "explorer", [TRAIN, EXPLORER], ".hw-ae", errors)
    page = nb.page
    page.wait_for_function(f"() => document.querySelectorAll(\"{READY}\").length === 80", timeout=180_000)
    assert page.query_selector_all(".hw-ae-cell[data-error='true']") == []

    # tick a method in the view: Python computes it and its row fills in
    page.check('input[data-method="smoothgrad"]')
    wait_for(page, '.hw-ae-cell[data-method="smoothgrad"][data-ready="true"]', "SmoothGrad's cells", 60, artifacts)
    # slow methods on larger images, in a second explorer, cancelled from its view while they run
    nb.run_and_wait(SLOW, 120)
    page.wait_for_function("() => document.querySelectorAll('.hw-ae').length === 2", timeout=30_000)
    slow = ["shapley_value_sampling", "lime", "kernel_shap", "occlusion", "layer_conductance"]
    t0 = time.monotonic()
    page.evaluate("(names) => { const v = document.querySelectorAll('.hw-ae')[1];"
                  " names.forEach((n) => v.querySelector(`input[data-method=\"${n}\"]`).click());"
                  " setTimeout(() => v.querySelector('.hw-ae-cancel').click(), 300); }", slow)
    page.wait_for_function("() => document.querySelectorAll('.hw-ae')[1].querySelector('.hw-ae-status')"
                           ".textContent === 'cancelled'", timeout=60_000)
    cancel_s = time.monotonic() - t0 - 0.3
    second = page.query_selector_all(".hw-ae")[1]
    done = [n for n in slow if second.query_selector(f'.hw-ae-cell[data-method="{n}"][data-ready="true"]')]
    assert len(done) < len(slow), "everything finished before Cancel: nothing was cancelled"
    view.scroll_into_view_if_needed()
    view.screenshot(path=str(artifacts / "attribution_explorer.png"))

    nb.run_and_wait(METRICS, 120)
    assert "occlusion" in nb.output_text(METRICS) and "deletion" in nb.output_text(METRICS)
    nb.run_and_wait(SANITY, 120)
    nb.run_and_wait(EXPORT, 60)
    static, requests = open_offline(browser, lab.root / "attribution.html", errors)
    assert len(static.query_selector_all(".hw-ae-cell[data-ready='true']")) >= 80
    assert network_requests(requests) == []
    static.close()
    print(f"E2E explorer: cancel took {cancel_s:.2f} s")
    audit_in_lab(page, EXAMPLE.stem, artifacts)  # issue 13: records for test_visual.py
    assert errors == []
