from __future__ import annotations

import json
import re
import threading
import time
from collections import OrderedDict

import numpy as np
import pytest
import torch
import traitlets
from torch import nn

import hiddenwidgets as hw
from hiddenwidgets.pipeline.transport import decode

from .test_summaries import SyncRecorder
from .test_transport import Mirror


def cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(
        conv1=nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()),
        conv2=nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.ReLU()),
        flatten=nn.Flatten(),
        fc1=nn.Linear(8 * 6 * 6, 5),
    ))


def train(model, monitor, steps, start=0, **log):
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(start)
    for i in range(start, start + steps):
        x = torch.randn(8, 1, 6, 6, generator=g)
        y = torch.randint(0, 5, (8,), generator=g)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        monitor.step(loss=loss, epoch=i // 10, **log)


def hooks(model):
    return sum(len(m._forward_hooks) for m in model.modules())


@pytest.fixture
def frames(monkeypatch):
    """Capture what the monitor sends to the browser."""
    sent = []

    def attach(monitor):
        monitor.send = lambda content, buffers=None: sent.append((content, bytes(buffers[0])))
        return sent

    return attach


def test_records_every_step_and_the_snapshot_holds_the_whole_history():
    model = cnn()
    monitor = hw.ActivationMonitor(model, ["conv1", "conv2", "fc1"], every=1)
    train(model, monitor, 40)
    monitor.flush()
    snap = monitor._history
    head = snap["header"]
    arrays = decode(head["index"], snap["data"])
    assert head["step"] == 40 and head["epoch"] == 3
    assert arrays["scalar:loss/steps"][:, 1].tolist() == list(range(1, 41))
    assert arrays["layer:conv2/steps"].shape == (40, 2)
    assert {d["layer"] for d in head["details"]} == {"conv1", "conv2", "fc1"}
    assert monitor.history.layer("conv1").shape == (8, 4, 6, 6)
    monitor.close()


def test_frames_replayed_in_order_equal_python_history(frames):
    model = cnn()
    monitor = hw.ActivationMonitor(model, ["conv1", "fc1"], every=2, fps=60)
    sent = frames(monitor)
    train(model, monitor, 60)
    monitor.flush()
    mirror = Mirror()
    seqs = [content["seq"] for content, _ in sent]
    assert seqs == list(range(len(sent)))  # numbered without gaps
    for content, data in sent:
        mirror.apply(content, data)
    for key, s in monitor.history.series.items():
        for part, arr in s.payload(0).items():
            np.testing.assert_array_equal(mirror.series[key]["parts"][part], arr)
    assert all(len(data) <= monitor.streamer.max_frame_bytes for _, data in sent)
    monitor.close()


def test_only_selected_layers_details_are_sent_live(frames):
    model = cnn()
    monitor = hw.ActivationMonitor(model, ["conv1", "conv2", "fc1"], every=1, fps=60)
    sent = frames(monitor)
    train(model, monitor, 10)
    monitor.flush()
    assert {d["layer"] for content, _ in sent for d in content["details"]} == {"conv1"}
    before = len(sent)
    monitor.selected_layers = ["fc1"]
    train(model, monitor, 5, start=10)
    monitor.flush()
    later = {d["layer"] for content, _ in sent[before:] for d in content["details"]}
    assert later == {"fc1"}
    with pytest.raises(traitlets.TraitError, match=r"unknown layer\(s\) \['nope'\]"):
        monitor.selected_layers = ["nope"]
    monitor.close()


def test_pause_stops_frames_but_not_the_history(frames):
    model = cnn()
    monitor = hw.ActivationMonitor(model, ["fc1"], every=1, fps=60)
    sent = frames(monitor)
    monitor.paused = True
    train(model, monitor, 20)
    # the sender keeps merging steps into the history while paused (at its own pace: a frame period stretched by
    # its CPU share can be up to a second), and sends nothing
    deadline = time.monotonic() + 30
    while monitor.history.layer("fc1").samples < 19 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert monitor.history.layer("fc1").samples >= 19
    assert sent == []
    monitor.paused = False
    monitor.flush()
    assert sent and sent[0][0]["resync"] is True
    monitor.close()


def test_gradient_norm_is_the_norm_of_dloss_doutput():
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    x = torch.randn(5, 3)
    h = model[1](model[0](x))
    h.retain_grad()
    model[2](h).sum().backward()
    expected = h.grad.norm().item()
    model.zero_grad()
    monitor = hw.ActivationMonitor(model, ["1"], every=1)
    model(x).sum().backward()
    monitor.step()
    monitor.flush()
    assert monitor.history.layer("1").stats()["grad_norm"][-1] == pytest.approx(expected, rel=1e-5)
    monitor.close()


def test_the_model_keeps_its_mode_requires_grad_and_ends_without_hooks():
    model = cnn().eval()
    model.conv1[0].weight.requires_grad_(False)
    monitor = hw.ActivationMonitor(model, ["conv1", "fc1"], every=1)
    assert hooks(model) == 2
    train(model, monitor, 5)
    assert not model.training and not model.conv1[0].weight.requires_grad
    monitor.close()
    assert hooks(model) == 0


def test_with_block_removes_hooks_on_keyboard_interrupt_and_keeps_the_history():
    model = cnn()
    with pytest.raises(KeyboardInterrupt), hw.ActivationMonitor(model, ["conv1"], every=1) as monitor:
        train(model, monitor, 3)
        raise KeyboardInterrupt
    assert hooks(model) == 0 and monitor.closed
    assert monitor.history.scalar("loss").samples == 3
    assert monitor._history["header"]["step"] == 3


def test_end_of_cell_removes_hooks_and_the_next_step_puts_them_back():
    model = cnn()
    monitor = hw.ActivationMonitor(model, ["conv1"], every=1)
    train(model, monitor, 3)
    monitor._end_of_cell(KeyboardInterrupt())
    assert hooks(model) == 0
    assert monitor.history.events[-1]["kind"] == "interrupted"
    train(model, monitor, 3, start=3)
    assert hooks(model) == 1
    monitor.flush()
    assert monitor.history.layer("conv1").samples == 5  # the first forward after the cell ran without hooks
    monitor.close()


def test_step_after_close_and_bad_scalars_get_clear_errors():
    model = cnn()
    monitor = hw.ActivationMonitor(model, ["fc1"])
    with pytest.raises(ValueError, match=r"tensor of shape \(8,\). Log a reduction"):
        monitor.step(loss=torch.ones(8))
    with pytest.raises(TypeError, match="needs a number or a one-element tensor, got str"):
        monitor.step(loss="low")
    with pytest.raises(TypeError, match=r"log\(acc=\.\.\.\) needs a number"):
        monitor.log(acc="abc", loss=1.0)  # checked here, not dropped later on the sender thread
    monitor.close()
    monitor.close()  # idempotent
    steps = monitor.history.step
    with pytest.warns(hw.MonitorWarning, match="closed, so step\\(\\) records nothing"):
        monitor.step(loss=1.0)  # a monitoring problem never stops the training loop
    monitor.step(loss=1.0)  # said once
    monitor.log(acc=1.0)
    assert monitor.history.step == steps


def test_unknown_options_name_the_valid_ones():
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['evry'\]; valid ones: gradients"):
        hw.ActivationMonitor(cnn(), ["fc1"], evry=3)
    with pytest.raises(ValueError, match="every must be a positive int"):
        hw.ActivationMonitor(cnn(), ["fc1"], every=0)
    with pytest.raises(hw.LayerError, match="Closest names: 'fc1'"):
        hw.ActivationMonitor(cnn(), ["fc2"])


def test_a_layer_without_tensor_output_is_reported_at_step():
    class Pair(nn.Module):
        def forward(self, x):
            return {"label": "text", "count": 3}

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2)
            self.meta = Pair()

        def forward(self, x):
            self.meta(x)
            return self.lin(x)

    net = Net()
    monitor = hw.ActivationMonitor(net, ["meta", "lin"], every=1)
    net(torch.randn(1, 2)).sum().backward()
    with pytest.warns(hw.MonitorWarning, match=r"layer 'meta' \(Pair\): the output holds no tensor"):
        monitor.step()  # recorded and said, never raised into the training loop
    net(torch.randn(1, 2)).sum().backward()
    monitor.step()
    monitor.flush()
    assert monitor.status()["meta"]["state"] == "error"
    assert "holds no tensor" in monitor.status()["meta"]["message"]
    assert any(e["layer"] == "meta" and e["kind"] == "error" for e in monitor.history.events)
    assert monitor.history.layer("lin").samples == 2  # the other layer goes on
    monitor.close()


def test_nan_and_inf_are_counted_flagged_and_never_crash():
    model = nn.Sequential(nn.Linear(3, 3))
    monitor = hw.ActivationMonitor(model, ["0"], every=1)
    x = torch.tensor([[1.0, float("nan"), 2.0]])
    model(x).sum()
    monitor.step(loss=float("nan"))
    model(torch.ones(1, 3))
    monitor.step(loss=1.0)
    monitor.flush()
    stats = monitor.history.layer("0").stats()
    assert stats["nonfinite"][0] == 3 and stats["nonfinite"][1] == 0
    kinds = [(e["kind"], e["layer"]) for e in monitor.history.events]
    assert ("nonfinite", "0") in kinds and ("nonfinite", None) in kinds
    monitor.close()


def test_huge_activations_give_bounded_frames(frames):
    class Big(nn.Module):
        def forward(self, x):
            return x.expand(1, 64, 1250, 1250)  # 1e8 elements, a view: no 400 MB allocation in the test

    model = nn.Sequential(OrderedDict(big=Big()))
    monitor = hw.ActivationMonitor(model, ["big"], every=1, fps=60, gradients=False)
    sent = frames(monitor)
    model(torch.randn(1, 64, 1, 1))
    monitor.step()
    monitor.flush()
    assert monitor.history.layer("big").rows[0, monitor.history.layer("big").col("total")] == 1e8
    assert sent and max(len(data) for _, data in sent) <= 256 * 1024
    detail = monitor.history.details["big"]
    assert detail.values.size <= 32768 and "64 of 64 channels, 1250x1250 pooled" in detail.note
    monitor.close()


def test_adaptive_sampling_keeps_summaries_within_the_time_budget():
    model = cnn()
    monitor = hw.ActivationMonitor(model, ["conv1", "conv2", "fc1"], overhead=0.02)
    train(model, monitor, 200)
    monitor.flush()
    samples = monitor.history.layer("conv2").samples
    assert 1 <= samples < 200
    assert monitor.recorder._interval > 1
    fixed = hw.ActivationMonitor(model, ["fc1"], every=7)
    train(model, fixed, 70)
    fixed.flush()
    assert fixed.history.layer("fc1").samples == 10
    monitor.close()
    fixed.close()


def test_a_monitored_step_never_waits_for_the_device():
    model = cnn()
    monitor = hw.ActivationMonitor(model, ["conv1", "conv2", "fc1"], every=1)
    train(model, monitor, 2)  # first samples place each layer's histogram grid (one read per layer)
    monitor.streamer.stop()  # keep the sender thread's own reads out of the recording
    x, y = torch.randn(8, 1, 6, 6), torch.randint(0, 5, (8,))
    with SyncRecorder() as rec:
        for _ in range(3):
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            monitor.step(loss=loss, accuracy=torch.tensor(0.5))
    assert rec.calls == []
    monitor.close()


def test_a_stopped_job_records_the_step_it_stopped_at():
    """job.stop() ends the loop at its next step(), which records that step first: its optimizer step happened, so
    its loss and the step count are kept (a snapshot taken afterwards names it), none is lost."""
    model = cnn()
    monitor = hw.ActivationMonitor(model, ["fc1"], every=3)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    taken = []

    def loop():
        g = torch.Generator().manual_seed(0)
        while True:
            loss = nn.functional.cross_entropy(model(torch.randn(8, 1, 6, 6, generator=g)),
                                               torch.randint(0, 5, (8,), generator=g))
            opt.zero_grad()
            loss.backward()
            opt.step()
            taken.append(float(loss))
            monitor.step(loss=loss)
            time.sleep(0.002)

    job = monitor.run_in_background(loop)
    deadline = time.monotonic() + 30
    while len(taken) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    job.stop()
    assert job.wait(30) and job.exception is None
    monitor.flush()
    loss = monitor.history.scalar("loss")
    assert loss.samples == len(taken) == monitor.history.step  # the last step too (it had been dropped)
    assert float(loss.rows[loss.count - 1, 3]) == pytest.approx(taken[-1])
    from hiddenwidgets.pipeline.model_state import ModelSnapshot

    snap = ModelSnapshot(model)
    assert snap.step == len(taken)
    monitor.close()


def test_background_job_trains_stops_and_reports_errors():
    model = cnn()
    monitor = hw.ActivationMonitor(model, ["fc1"], every=1)

    def loop(n):
        train(model, monitor, n)
        return "done"

    job = monitor.run_in_background(loop, 20)
    assert job.wait(60) and job.result == "done"
    assert monitor.history.scalar("loss").samples == 20 and hooks(model) == 0
    assert monitor._history["header"]["step"] == 20  # the job flushed when it ended

    started = threading.Event()

    def forever():
        while True:
            started.set()
            train(model, monitor, 1)

    job = monitor.run_in_background(forever)
    started.wait(10)
    with pytest.raises(RuntimeError, match="already running"):
        monitor.run_in_background(forever)
    job.stop()
    assert job.wait(30) and "stopped" in repr(monitor.history.events[-1])
    assert hooks(model) == 0

    def broken():
        raise ValueError("bad batch")

    job = monitor.run_in_background(broken)
    with pytest.raises(ValueError, match="bad batch"):
        job.wait(30)
    assert "background job failed: ValueError: bad batch" in monitor.history.events[-1]["message"]
    monitor.close()


def test_tuple_outputs_are_watched_through_the_named_tensor():
    class Recurrent(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(3, 4, batch_first=True)
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            out, _ = self.lstm(x)
            return self.head(out[:, -1])

    net = Recurrent()
    monitor = hw.ActivationMonitor(net, {"lstm": 0}, every=1)
    net(torch.randn(2, 5, 3)).sum().backward()
    monitor.step()
    monitor.flush()
    assert monitor.sources() == {"lstm": "output[0]"}
    assert monitor.history.layer("lstm").shape == (2, 5, 4)
    monitor.close()


def test_save_html_is_self_contained_escaped_and_offline(tmp_path):
    model = nn.Sequential(OrderedDict([("fc</script><img src=x onerror=alert(1)>", nn.Linear(3, 3))]))
    evil = "fc</script><img src=x onerror=alert(1)>"
    monitor = hw.ActivationMonitor(model, [evil], every=1, title="Run <b>1</b> & </script>")
    model(torch.randn(2, 3)).sum().backward()
    monitor.step(**{"loss </script>": 1.0})
    path = monitor.save_html(tmp_path / "page.html")
    text = path.read_text()
    assert text.count("</script>") == 2  # the payload's and the boot script's closing tags, nothing else
    assert "<img" not in text
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    assert not re.search(r"""(src|href)=["']?https?:""", text)
    assert "<title>Run &lt;b&gt;1&lt;/b&gt; &amp; &lt;/script&gt;</title>" in text
    payload = json.loads(re.search(r'id="hw-payload">(.*?)</script>', text, re.S).group(1))
    assert payload["state"]["layers"] == [evil]
    assert payload["module"] == str(hw.ActivationMonitor._esm)
    assert len(payload["buffers"]) == 1 and payload["buffers"][0]["path"] == ["_history", "data"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        monitor.save_html(tmp_path / "missing" / "page.html")
    monitor.close()


def test_a_layer_whose_first_output_is_all_zero_is_summarised_not_a_crash():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    nn.init.zeros_(model[0].weight)
    nn.init.zeros_(model[0].bias)
    monitor = hw.ActivationMonitor(model, ["1"], every=1)
    model(torch.randn(5, 3)).sum().backward()
    monitor.step()
    monitor.flush()
    grid = monitor.history.layer("1").grid
    assert grid.hi > grid.lo == 0.0
    assert monitor.history.layer("1").stats()["zero_frac"][0] == 1.0
    monitor.close()


def test_a_failing_summary_is_reported_at_step_never_inside_forward(monkeypatch):
    model = nn.Sequential(nn.Linear(3, 4))
    monitor = hw.ActivationMonitor(model, ["0"], every=1)

    def broken(tensor, **kw):
        raise RuntimeError("summary exploded")

    monkeypatch.setattr(monitor.recorder._summarizers["0"], "summarize", broken)
    out = model(torch.randn(2, 3))  # the user's forward still works
    assert out.shape == (2, 4)
    with pytest.warns(hw.MonitorWarning, match="summarising its output failed: RuntimeError: summary exploded"):
        monitor.step()
    monitor.close()


def test_feature_maps_are_a_copy_taken_before_later_inplace_ops():
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(conv=nn.Conv2d(1, 4, 3, padding=1), act=nn.ReLU(inplace=True)))
    monitor = hw.ActivationMonitor(model, ["conv"], every=1)
    model(torch.randn(1, 1, 5, 5))  # one example: the feature maps show all of it
    monitor.step()
    monitor.flush()
    detail = monitor.history.details["conv"].values
    assert detail.min() < 0  # the conv's own output, not what the in-place ReLU left in that memory
    assert monitor.history.layer("conv").stats()["min"][0] == pytest.approx(detail.min(), abs=1e-6)
    monitor.close()


def test_a_layer_that_skips_forwards_does_not_stop_the_others():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(2, 2)
            self.aux = nn.Linear(2, 2)

        def forward(self, x, use_aux=False):
            h = self.a(x)
            return self.aux(h) if use_aux else h

    net = Branchy()
    monitor = hw.ActivationMonitor(net, ["a", "aux"], every=1)
    for _ in range(10):
        net(torch.randn(3, 2)).sum().backward()
        monitor.step()
    monitor.flush()
    assert monitor.history.layer("a").samples == 10 and monitor.history.layer("aux").samples == 0
    monitor.close()


def test_close_inside_the_background_job_ends_it_cleanly():
    model = cnn()
    monitor = hw.ActivationMonitor(model, ["fc1"], every=1)

    def loop():
        with monitor:
            train(model, monitor, 5)

    job = monitor.run_in_background(loop)
    assert job.wait(30) and job.exception is None
    assert monitor.closed and hooks(model) == 0
    assert monitor._history["header"]["step"] == 5
    assert monitor.streamer._thread is None


def test_an_event_alone_reaches_the_browser(frames):
    model = cnn()
    monitor = hw.ActivationMonitor(model, ["fc1"], every=1, fps=60)
    sent = frames(monitor)
    train(model, monitor, 3)
    monitor.flush()
    before = len(sent)

    def broken():
        raise ValueError("bad batch")

    job = monitor.run_in_background(broken)
    with pytest.raises(ValueError):
        job.wait(30)
    monitor.flush()
    assert any("bad batch" in e["message"] for content, _ in sent[before:] for e in content["events"])
    assert any("bad batch" in e["message"] for e in monitor._history["header"]["events"])
    monitor.close()


def test_a_step_loop_faster_than_the_sender_is_slowed_never_dropped(monkeypatch):
    model = nn.Sequential(nn.Linear(2, 2))
    monitor = hw.ActivationMonitor(model, ["0"], every=10**6)
    monkeypatch.setattr(monitor.recorder, "MAX_BACKLOG", 50)
    peak = 0
    for i in range(3000):
        monitor.step(loss=float(i))
        peak = max(peak, len(monitor.streamer.inbox))
    monitor.flush()
    assert peak <= 51
    assert monitor.history.scalar("loss").samples == 3000
    monitor.close()


def test_between_samples_an_eager_model_runs_without_hooks_and_every_sample_still_has_all_its_calls():
    model = cnn()
    monitor = hw.ActivationMonitor(model, ["conv1", "fc1"], every=5)
    seen = []
    for i in range(20):
        train(model, monitor, 1, start=i)
        seen.append(hooks(model))
    monitor.flush()
    # hooks stay for the first steps (a layer that never runs is found there), then only for the sampled steps
    # hooks for the first CHECK_AFTER (3) steps, a layer that never runs is found there; then only for the sampled
    # steps (seen[i] holds what step i + 2 runs with): they came off as soon as the check was done, not at the next
    # sample (they had stayed on for steps 4 and 5)
    assert seen == [2, 2, 0, 0] + [2, 0, 0, 0, 0] * 3 + [2]
    assert monitor.history.layer("conv1").samples == 4  # steps 1, 6, 11, 16: every 5th, none lost
    assert monitor.status()["fc1"]["calls"] == 1
    monitor.close()


def test_with_sampling_off_the_hooks_come_off_after_the_first_steps_and_stay_off():
    model = cnn()
    monitor = hw.ActivationMonitor(model, ["conv1", "fc1"], every=10**9)
    seen = []
    for i in range(12):
        train(model, monitor, 1, start=i)
        seen.append(hooks(model))
    monitor.flush()
    assert seen == [2, 2] + [0] * 10  # they had stayed on for good: every step took the hooked call path
    assert monitor.history.layer("conv1").samples == 1 and monitor.history.scalar("loss").samples == 12
    monitor.close()


def test_the_sampling_interval_counts_the_fixed_cost_of_every_step():
    model = cnn()
    recorder = hw.ActivationRecorder(model, ["conv1"], overhead=0.02)
    recorder.streamer.stop()  # its CPU time stays put while the test sets the figures
    # a 1 ms step with a 2% budget has 20 µs to spare per step; 10 µs of it go to step() and the sender thread,
    # so a 1 ms sample fits once every 1 ms / 10 µs = 100 steps (without the fixed cost: every 50)
    recorder._step_time, recorder._step, recorder._budget_step = 1e-3, 1000, 0
    recorder._fixed, recorder._budget_sender = 1000 * 6e-6, recorder.streamer.cpu_seconds - 1000 * 4e-6
    assert recorder._interval_for(1e-3) == 100
    # a fixed cost above the budget: samples still get a quarter of it, 5 µs per step: every 200 steps
    recorder._step, recorder._fixed = 2000, 1000 * 30e-6
    assert recorder._interval_for(1e-3) == 200
    recorder.close()
