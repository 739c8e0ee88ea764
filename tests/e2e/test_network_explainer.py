"""examples/08_course_explainer.ipynb in JupyterLab + Chromium: a clicked unit shows the numbers the model computed,
a drawn stroke reruns the model and the overview follows, and the exported page works offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .lab import network_requests, open_offline, put_notebook, start_view, write_notebook

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


FOLLOW_SETUP = """
import json, os, time
import torch, torch.nn.functional as F
from torch import nn
from sklearn.datasets import load_digits
import hiddenwidgets as hw
_d = load_digits()
x = torch.tensor(_d.images, dtype=torch.float32).unsqueeze(1) / 16.0
y = torch.tensor(_d.target)
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1),
                      nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.05)
monitor = hw.ActivationMonitor(model, ["0"], every=1)   # its step() is the step boundary the copies are taken at
saved = {}

def train():
    k = 0
    while True:
        for idx in torch.randperm(1500).split(32):
            loss = F.cross_entropy(model(x[idx]), y[idx]); opt.zero_grad(); loss.backward(); opt.step()
            k += 1
            saved[k] = {n: v.clone() for n, v in model.state_dict().items()}
            saved.pop(k - 5000, None)
            monitor.step(loss=loss)
            time.sleep(0.01)

view = hw.NetworkExplainer(model, x[1500:1504], class_names=[str(d) for d in range(10)], refresh=0.3)
job = monitor.run_in_background(train)
view
"""
FOLLOW_BUSY = """
_t0 = time.time()
print("HWBUSY started", flush=True)
while time.time() - _t0 < 60 and not os.path.exists("stop-busy"):
    pass
"""
FOLLOW_CHECK = """
job.stop(); job.wait(30)
import copy as _copy
def _at(step):
    twin = _copy.deepcopy(model); twin.load_state_dict(saved[step]); return twin.eval()
with torch.no_grad():
    _u = _at({unit_step})[0](x[1500:1501])[0, 2, 3, 5]
    _p = torch.softmax(_at({probs_step})(x[1500:1501])[0], 0)
    _now = torch.softmax(model.eval()(x[1500:1501])[0], 0)
_t0 = time.time()  # the follower's last look takes the final weights; then the page is saved from that copy
while view.weights.get('step') != max(saved) and time.time() - _t0 < 10:
    time.sleep(0.05)
view.save_html('follow.html')
print('CHECK' + json.dumps({{'unit': float(_u), 'probs': _p.tolist(), 'final': _now.tolist(), 'steps': len(saved),
                            'last': max(saved)}}))
"""
RECORD_STEPS = """() => { window.__hwSteps = []; clearInterval(window.__hwTimer);
  window.__hwTimer = setInterval(() => { const s = document.querySelector('.hw-nx [data-role="weights"]').dataset.step;
    const all = window.__hwSteps; if (s !== undefined && all[all.length - 1] !== s) all.push(s); }, 30); }"""
READ_SHOWN = """() => { const d = document.querySelector('.hw-nx-detail');
  return { unitStep: d.dataset.step, stale: d.dataset.stale === 'true',
           unit: Number(d.querySelector("[data-role='output'] b").dataset.value),
           probsStep: document.querySelector('.hw-nx [data-role="weights"]').dataset.step,
           probs: [...document.querySelectorAll('.hw-nx-col .hw-nx-prob span[data-value]')]
             .map((e) => Number(e.dataset.value)) }; }"""


def test_overview_follows_a_background_job_while_a_cell_is_busy(lab, browser):
    """A training job on a background thread, the view following it (refresh=0.3 s): while a cell keeps the kernel
    busy the overview changes at least twice, a clicked unit is answered, and the numbers shown equal a forward
    pass of the weights saved at the training step the view names."""
    errors: list[str] = []
    nb_path = lab.root / "follow.ipynb"
    cells = [FOLLOW_SETUP, FOLLOW_BUSY]
    write_notebook(nb_path, cells)
    nb, _view = start_view(browser, lab, nb_path, "follow", [0], ".hw-nx[data-ready='true']", errors)
    page = nb.page
    page.wait_for_selector(".hw-nx [data-role='weights'][data-step]", timeout=30_000)
    nb.run_cell(1)
    page.wait_for_function("() => window.jupyterapp.shell.currentWidget.content.widgets[1]"
                           ".outputArea.node.innerText.includes('HWBUSY started')", timeout=30_000)
    page.evaluate(RECORD_STEPS)
    page.wait_for_function("() => window.__hwSteps.length >= 3", timeout=30_000)  # two changes at least
    steps = page.evaluate("() => window.__hwSteps")
    canvas = page.wait_for_selector(".hw-nx-col[data-step='0'] canvas[data-channel='2']")
    box = canvas.bounding_box()
    canvas.click(position={"x": (5.5 / 8) * box["width"], "y": (3.5 / 8) * box["height"]})
    page.wait_for_selector(".hw-nx-detail[data-step] [data-kind='conv2d']", timeout=30_000)
    shown = page.evaluate(READ_SHOWN)
    assert nb.busy(1), "the busy cell ended before the checks: the changes were not seen during a busy kernel"
    (lab.root / "stop-busy").write_text("")
    nb.wait_done(1, 60)
    assert len(set(steps)) >= 3 and [int(s) for s in steps] == sorted(int(s) for s in steps), steps

    source = FOLLOW_CHECK.format(unit_step=int(shown["unitStep"]), probs_step=int(shown["probsStep"]))
    index = page.evaluate("(src) => { const nb = window.jupyterapp.shell.currentWidget.content;"
                          " const n = nb.model.sharedModel.cells.length;"
                          " nb.model.sharedModel.insertCell(n, {cell_type: 'code', source: src}); return n; }",
                          source)
    truth = check_values(nb, index)
    assert shown["unit"] == pytest.approx(truth["unit"], abs=1e-6)  # the drill-down's number, at its step
    assert shown["probs"] == pytest.approx(truth["probs"], abs=1e-6)  # the overview's, at the step it names
    assert max(abs(a - b) for a, b in zip(truth["probs"], truth["final"], strict=True)) > 1e-4  # not the final weights
    # the page saved after the job names the step of the weights it embeds, and shows their numbers
    static, requests = open_offline(browser, lab.root / "follow.html", errors)
    static.wait_for_selector(".hw-nx[data-ready='true']")
    line = static.wait_for_selector(".hw-nx [data-role='weights'][data-step]")
    assert line.get_attribute("data-step") == str(truth["last"])
    assert line.inner_text().startswith(f"weights of training step {truth['last']} (copied ")
    assert "following" not in line.inner_text()
    page_probs = static.evaluate("() => [...document.querySelectorAll('.hw-nx-col .hw-nx-prob span[data-value]')]"
                                 ".map((e) => Number(e.dataset.value))")
    assert page_probs == pytest.approx(truth["final"], abs=1e-6)
    assert network_requests(requests) == []
    static.close()
    assert errors == []
