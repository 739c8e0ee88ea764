"""Background work never touches what the training thread uses: a training loop in one thread while every kind of
hiddenwidgets computation runs in another gets exactly the gradients of a run nobody watched."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from torch import nn

import hiddenwidgets as hw
from hiddenwidgets.analysis.interventions import intervene
from hiddenwidgets.analysis.tcav import tcav

STEPS = 40


def cnn() -> nn.Module:
    torch.manual_seed(0)
    # batch norm: a forward in eval mode (running statistics) gives other gradients than one in training mode,
    # and dropout-free, so two runs of the same steps are bitwise identical
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(24, 3))


def batches():
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 1, 8, 8, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(STEPS)]


def train(model, data, monitor=None, pace=None):
    """The user's loop: returns every step's gradients, and checks the model's mode at every step."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    grads, modes = [], []
    for x, y in data:
        modes.append(all(m.training for m in model.modules()))
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        grads.append(torch.cat([p.grad.reshape(-1).clone() for p in model.parameters()]))
        opt.step()
        if monitor is not None:
            monitor.step(loss=loss)
        if pace is not None:
            pace()
    return grads, modes


@pytest.fixture(scope="module")
def reference():
    model = cnn()
    grads, _ = train(model, batches())
    return grads, model.state_dict()


def hammer(model, images, labels, stop: threading.Event, done: list):
    """Every computation hiddenwidgets runs on a model, over and over, until told to stop."""
    concepts = {"first": list(range(0, 8)), "second": list(range(8, 16))}
    jobs = [
        lambda: hw.attribute(model, images[:4], "guided_backprop", target=0),  # backward hooks on every ReLU
        lambda: hw.attribute(model, images[:4], "grad_cam", target=0, layer="3"),
        lambda: hw.attribute(model, images[:4], "integrated_gradients", target=1),
        lambda: hw.layer_features(model, images, ["2", "4"]),
        lambda: tcav(model, images, concepts, ["4"], labels=labels, random_sets=3, random_pool=range(16, 40)),
        lambda: intervene(model, images[:8], "6", torch.ones(24), mode="project"),
        lambda: hw.Projector.from_model(model, images, ["4"]),
    ]
    i = 0
    while not stop.is_set():
        jobs[i % len(jobs)]()
        done.append(i % len(jobs))
        i += 1


def test_a_background_job_trains_undisturbed_while_every_analysis_runs_in_the_cell(reference):
    ref_grads, ref_state = reference
    model = cnn()
    images, labels = torch.randn(40, 1, 8, 8), torch.randint(0, 3, (40,))
    monitor = hw.ActivationMonitor(model, ["2", "4"], every=1)
    done: list[int] = []
    gate = threading.Event()
    results = {}

    def loop():
        results["grads"], results["modes"] = train(model, batches(), monitor, pace=lambda: gate.wait(10))

    stop = threading.Event()
    with pytest.warns(UserWarning, match="training on another thread: hiddenwidgets computes on a copy"):
        job = monitor.run_in_background(loop)
        worker = threading.Thread(target=hammer, args=(model, images, labels, stop, done))
        worker.start()
        while len(done) < 14 and worker.is_alive():  # every computation at least twice while training is paused
            time.sleep(0.01)                          # between two steps, and then during the steps
        gate.set()
        assert job.wait(120)
        stop.set()
        worker.join(120)
    assert len(set(done)) == 7
    assert all(results["modes"])  # every step ran in training mode
    for step, (got, want) in enumerate(zip(results["grads"], ref_grads, strict=True)):
        assert torch.equal(got, want), f"step {step}: gradients differ from the unobserved run"
    assert all(torch.equal(v, ref_state[k]) for k, v in model.state_dict().items())  # BN statistics too
    assert sum(len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules()) == 0
    monitor.close()


def test_a_users_own_training_thread_is_undisturbed_by_the_explorers_background_work(reference):
    ref_grads, _ = reference
    model = cnn()
    images = torch.randn(6, 1, 8, 8)
    monitor = hw.ActivationMonitor(model, ["4"], every=1)
    results = {}
    started = threading.Event()

    def loop():
        started.set()
        results["grads"], results["modes"] = train(model, batches(), monitor, pace=lambda: time.sleep(0.005))

    thread = threading.Thread(target=loop)  # the user's own thread, not run_in_background
    thread.start()
    started.wait(10)
    explorer = hw.AttributionExplorer(model, images, selected=["guided_backprop", "grad_cam", "saliency",
                                                               "deconvolution"], layer="3", metrics=False)
    for _ in range(3):
        explorer.refresh()  # copies of the weights taken between two steps of the running loop
    thread.join(120)
    explorer.close()
    assert "at training step" in explorer.weights
    assert all(results["modes"])
    for step, (got, want) in enumerate(zip(results["grads"], ref_grads, strict=True)):
        assert torch.equal(got, want), f"step {step}: gradients differ from the unobserved run"
    assert all(c["error"] is None for c in explorer._cache.values())
    monitor.close()


def test_an_analysis_on_a_model_trained_unannounced_in_another_thread_is_refused_not_silently_mixed():
    model = cnn()
    images = torch.randn(64, 1, 8, 8)
    stop = threading.Event()

    def loop():  # no monitor: hiddenwidgets cannot know this thread trains the model
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        while not stop.is_set():
            loss = model(torch.randn(8, 1, 8, 8)).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        with pytest.raises(hw.ModelChangedError, match="another thread is training it"):
            for _ in range(200):
                hw.layer_features(model, images, ["4"], batch_size=8)
    finally:
        stop.set()
        thread.join(30)
