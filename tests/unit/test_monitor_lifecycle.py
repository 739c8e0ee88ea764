"""Interrupts, re-runs and forgotten monitors: whatever happens, no hook is left on the user's model and no
thread is left running."""

from __future__ import annotations

import gc
import random
import signal
import threading
import time
import weakref

import pytest
import torch
from torch import nn

import hiddenwidgets as hw


def hooks(model):
    return sum(len(m._forward_hooks) for m in model.modules())


def streamer_threads():
    return [t for t in threading.enumerate() if t.name == "hiddenwidgets-streamer" and t.is_alive()]


def wait_until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


@pytest.fixture
def no_threads_left():
    yield
    gc.collect()
    assert wait_until(lambda: not streamer_threads()), [t.name for t in threading.enumerate()]


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2))


def interrupt_after(delay: float) -> None:
    """A real SIGINT (as Jupyter's interrupt sends) to this process after ``delay`` seconds."""
    signal.signal(signal.SIGALRM, lambda *a: signal.raise_signal(signal.SIGINT))
    signal.setitimer(signal.ITIMER_REAL, delay)


def disarm_timer() -> None:
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, signal.SIG_DFL)


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs POSIX interval timers")
def test_ctrl_c_at_random_moments_of_construction_stepping_and_close_leaves_no_hook_and_no_thread(no_threads_left):
    model = net()
    builds, closes = [], []
    for _ in range(5):
        t0 = time.perf_counter()
        m = hw.ActivationMonitor(model, ["1", "3"], every=1)
        builds.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        m.close()
        closes.append(time.perf_counter() - t0)
    build, close = sorted(builds)[2], sorted(closes)[2]
    rng = random.Random(0)
    interrupted = {"construction": 0, "steps": 0, "close": 0}
    for trial in range(60):
        phase = ("construction", "steps", "close")[trial % 3]
        monitor = None
        try:
            if phase == "construction":
                interrupt_after(rng.uniform(1e-5, build * 1.2))
                try:
                    monitor = hw.ActivationMonitor(model, ["1", "3"], every=1)
                except KeyboardInterrupt:
                    interrupted["construction"] += 1
            else:
                monitor = hw.ActivationMonitor(model, ["1", "3"], every=1)
                if phase == "steps":
                    interrupt_after(rng.uniform(1e-4, 0.02))
                    try:
                        for _ in range(10_000):
                            model(torch.randn(4, 8)).sum().backward()
                            monitor.step(loss=1.0)
                    except KeyboardInterrupt as err:
                        interrupted["steps"] += 1
                        monitor._end_of_cell(err)  # what the notebook does after the interrupted cell
                        assert hooks(model) == 0
                else:
                    interrupt_after(rng.uniform(1e-5, close * 1.2))
                    try:
                        monitor.close()
                    except KeyboardInterrupt:
                        interrupted["close"] += 1
                    # all or nothing: closed without hooks, or (interrupted before it began) untouched
                    assert (monitor.closed and hooks(model) == 0) or (not monitor.closed and hooks(model) == 2)
            disarm_timer()
            time.sleep(0.002)  # a SIGINT that was still on its way arrives here, outside the code under test
        except KeyboardInterrupt:
            pass
        finally:
            disarm_timer()
        if monitor is not None:
            monitor.close()
        assert hooks(model) == 0, (phase, trial)
    assert interrupted["construction"] > 0 and interrupted["steps"] > 0 and interrupted["close"] > 0, interrupted


def test_a_monitor_nobody_holds_takes_its_hooks_and_thread_with_it(no_threads_left):
    model = net()
    monitor = hw.ActivationMonitor(model, ["1"], every=1)
    model(torch.randn(2, 8)).sum().backward()
    monitor.step(loss=1.0)
    ref = weakref.ref(monitor)
    assert hooks(model) == 1 and streamer_threads()
    del monitor
    gc.collect()
    assert ref() is None  # neither its hooks nor its thread kept it alive
    assert hooks(model) == 0


def test_re_creating_a_monitor_on_the_same_model_and_layers_closes_the_old_one(no_threads_left):
    model = net()
    monitors = [hw.ActivationMonitor(model, ["1", "3"], every=1) for _ in range(50)]  # 50 re-runs of a cell
    assert all(m.closed for m in monitors[:-1]) and not monitors[-1].closed
    assert hooks(model) == 2
    assert len(streamer_threads()) <= 1
    assert "a newer monitor was created" in monitors[0].history.events[-1]["message"]
    assert monitors[0].recorder.model is None  # a closed monitor forgets the model (its history stays)
    other = hw.ActivationMonitor(model, ["3"], every=1)  # other layers: both stay
    assert not monitors[-1].closed
    for m in (*monitors, other):
        m.close()
    assert hooks(model) == 0


def test_an_idle_sender_thread_ends_and_comes_back_with_the_next_step(monkeypatch, no_threads_left):
    monkeypatch.setattr(hw.pipeline.transport.Streamer, "IDLE_EXIT", 0.2)
    model = net()
    monitor = hw.ActivationMonitor(model, ["1"], every=1)
    model(torch.randn(2, 8)).sum().backward()
    monitor.step(loss=1.0)
    assert wait_until(lambda: not monitor.streamer.running, 5)
    model(torch.randn(2, 8)).sum().backward()
    monitor.step(loss=2.0)
    assert monitor.streamer.running
    monitor.flush()
    assert monitor.history.scalar("loss").samples == 2
    monitor.close()


def test_close_does_not_wait_long_for_a_job_that_never_steps(no_threads_left):
    model = net()
    monitor = hw.ActivationMonitor(model, ["1"], every=1)
    release = threading.Event()
    job = monitor.run_in_background(lambda: release.wait(30))
    t0 = time.perf_counter()
    monitor.close()
    assert time.perf_counter() - t0 < 5  # asked to stop; not joined for 30 s
    assert hooks(model) == 0
    release.set()
    assert job.wait(10)


def test_bad_options_are_refused_at_construction_with_the_parameter_named():
    model = net()
    for options, message in [({"max_elements": 0}, "max_elements must be an integer >= 1"),
                             ({"dead_window": 0}, "dead_window must be an integer >= 1"),
                             ({"history_points": 7}, "history_points must be an even number"),
                             ({"bins": 7}, "bins must be an even number"),
                             ({"fps": 0}, "fps must be a number in"),
                             ({"overhead": "high"}, "overhead is a fraction"),
                             ({"gradients": "yes"}, "gradients must be True or False"),
                             ({"every": 2.5}, "every must be a positive int")]:
        with pytest.raises((ValueError, TypeError), match=message):
            hw.ActivationMonitor(model, ["1"], **options)
    assert hooks(model) == 0
    monitor = hw.ActivationMonitor(model, ["1"])
    with pytest.raises(TypeError, match=r"step\(epoch=\.\.\.\) needs an integer"):
        monitor.step(epoch=1.5)
    with pytest.raises(TypeError, match="complex tensor"):
        monitor.step(loss=torch.tensor(1 + 2j))
    monitor.close()


def test_a_monitor_left_open_has_its_sender_stopped_and_its_steps_sent_when_the_interpreter_exits():
    """A script that never closes its monitor: at exit the sender thread is stopped (a daemon thread left inside a
    torch operation while the interpreter tore down aborted the process now and then) after sending what was
    still queued. The exit hook is called directly here."""
    from hiddenwidgets.pipeline import transport

    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    monitor = hw.ActivationMonitor(model, ["0"], every=1)
    x = torch.randn(8, 4)
    for _ in range(5):
        model(x).sum().backward()
        monitor.step(loss=1.0)
    thread = monitor.streamer._thread
    assert thread is not None and thread.is_alive() and monitor.streamer in transport._RUNNING
    transport._stop_streamers_at_exit()
    assert not thread.is_alive()
    assert monitor.streamer.steps_drained == 5 and not monitor.streamer.inbox
    monitor.close()
