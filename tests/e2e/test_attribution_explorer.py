"""examples/02_attribution.ipynb in JupyterLab + Chromium: the grid fills in, a method ticked in the view is
computed, a slow one can be cancelled, and the exported page renders offline."""

from __future__ import annotations

import time
from pathlib import Path

from .lab import network_requests, open_offline, put_notebook, start_view
from .test_live_monitor import wait_for

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "02_attribution.ipynb"
TRAIN, EXPLORER, METRICS, SANITY, EXPORT = 1, 2, 4, 6, 7
READY = ".hw-ae-cell[data-ready='true'], .hw-ae-cell[data-error='true']"


def test_attribution_explorer_in_jupyterlab(lab, browser, artifacts):
    errors: list[str] = []
    nb, view = start_view(browser, lab, put_notebook(EXAMPLE, lab.root), "explorer", [TRAIN, EXPLORER], ".hw-ae",
                          errors)
    page = nb.page
    page.wait_for_function(f"() => document.querySelectorAll(\"{READY}\").length === 80", timeout=180_000)
    assert page.query_selector_all(".hw-ae-cell[data-error='true']") == []

    # tick a method in the view: Python computes it and its row fills in
    page.check('input[data-method="smoothgrad"]')
    wait_for(page, '.hw-ae-cell[data-method="smoothgrad"][data-ready="true"]', "SmoothGrad's cells", 60, artifacts)
    # several slower methods at once, cancelled from the view while they run
    slow = ["layer_conductance", "layer_integrated_gradients", "shapley_value_sampling", "lime", "kernel_shap",
            "smoothgrad_sq", "vargrad", "gradient_shap"]
    page.evaluate("(names) => names.forEach((n) => document.querySelector(`input[data-method=\"${n}\"]`).click())",
                  slow)
    page.wait_for_selector(".hw-ae-cancel:not([hidden])", timeout=10_000)
    t0 = time.monotonic()
    page.click(".hw-ae-cancel")
    page.wait_for_function("() => document.querySelector('.hw-ae-status').textContent === 'cancelled'",
                           timeout=30_000)
    cancel_s = time.monotonic() - t0
    done = [n for n in slow if page.query_selector(f'.hw-ae-cell[data-method="{n}"][data-ready="true"]')]
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
    assert errors == []
