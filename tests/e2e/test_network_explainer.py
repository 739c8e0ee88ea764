"""examples/08_course_explainer.ipynb in JupyterLab + Chromium: a clicked unit shows the numbers the model computed,
a drawn stroke reruns the model and the overview follows, and the exported page works offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .lab import network_requests, open_offline, put_notebook, start_view

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "08_course_explainer.ipynb"
SETUP, TRAIN, VIEW, EXPORT = 1, 3, 5, 11
# appended: the model's own numbers for the unit the test clicks, computed independently of the explainer
CHECK = ("import json as _json\n"
         "with torch.no_grad():\n"
         "    _conv = model[0](gallery[:1])[0]\n"
         "print('CHECK' + _json.dumps({'conv': [float(v) for v in _conv[2].flatten()], "
         "'probs': [float(v) for v in torch.softmax(model(gallery[:1])[0], 0)], 'selected': view.selected, "
         "'prediction': view.prediction}))")


def check_values(nb, cell: int) -> dict:
    nb.run_and_wait(cell, 60)
    text = nb.output_text(cell)
    return json.loads(text[text.index("CHECK") + 5:].strip().splitlines()[0])


def test_network_explainer_in_jupyterlab(lab, browser, artifacts):
    errors: list[str] = []
    faster = {"range(8)": "range(1)", "static_inputs=[0, 1, 2]": "static_inputs=[0]"}  # train 1 epoch, export 1
    path = put_notebook(EXAMPLE, lab.root, replace=faster, extra_cells=[CHECK])
    check_cell = 12
    nb, view = start_view(browser, lab, path, "explainer", [SETUP, TRAIN, VIEW], ".hw-nx[data-ready='true']",
                          errors)
    page = nb.page
    truth = check_values(nb, check_cell)

    # click unit (channel 2, row 3, column 5) of the first convolution: its numbers are the model's
    canvas = page.wait_for_selector(".hw-nx-col[data-step='0'] canvas[data-channel='2']")
    box = canvas.bounding_box()
    canvas.click(position={"x": (5.5 / 8) * box["width"], "y": (3.5 / 8) * box["height"]})
    page.wait_for_selector(".hw-nx-detail [data-kind='conv2d']", timeout=20_000)
    shown = float(page.get_attribute(".hw-nx-detail [data-role='output'] b", "data-value"))
    assert shown == pytest.approx(truth["conv"][3 * 8 + 5], abs=1e-6)
    value = float(page.get_attribute(".hw-nx-detail [data-kind='conv2d'] [data-role='value']", "data-value"))
    assert value == pytest.approx(shown, abs=1e-5)  # the shown sum + bias makes the model's number
    # the probabilities column shows the model's softmax
    probs = [float(e.get_attribute("data-value")) for e in
             page.query_selector_all(".hw-nx-col .hw-nx-prob span[data-value]")]
    assert probs == pytest.approx(truth["probs"], abs=1e-6)

    # draw a stroke: the kernel reruns the model on the drawing and the overview follows
    page.query_selector(".hw-drawpad").scroll_into_view_if_needed()
    pad = page.query_selector(".hw-drawpad").bounding_box()
    page.mouse.move(pad["x"] + 0.5 * pad["width"], pad["y"] + 0.1 * pad["height"])
    page.mouse.down()
    for k in range(1, 9):
        page.mouse.move(pad["x"] + 0.5 * pad["width"], pad["y"] + (0.1 + 0.1 * k) * pad["height"], steps=2)
    page.mouse.up()
    page.wait_for_function("() => document.querySelector('.hw-nx').dataset.latency !== undefined", timeout=20_000)
    page.wait_for_timeout(500)
    after = check_values(nb, check_cell)
    assert after["selected"] == -1  # the drawn input is shown
    assert page.inner_text(".hw-nx .hw-am-counter") == f"The network reads: {after['prediction']}"
    view.screenshot(path=str(artifacts / "network_explainer.png"))

    nb.run_cell(EXPORT)
    nb.wait_done(EXPORT, 120)
    static, requests = open_offline(browser, lab.root / "explainer.html", errors)
    static.wait_for_selector(".hw-nx[data-ready='true']")
    static.click(".hw-nx-col[data-step='0'] canvas[data-channel='2']", position={"x": 5, "y": 5})
    static.wait_for_selector(".hw-nx-detail [data-kind='conv2d']", timeout=10_000)
    assert "needs a running kernel" in static.inner_text(".hw-nx-draw")
    assert network_requests(requests) == []
    static.close()
    assert errors == []
