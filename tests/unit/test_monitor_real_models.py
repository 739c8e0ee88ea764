"""The monitor on architectures nobody here wrote (Hugging Face models built from small configs, random weights) and
on the layouts they use: every number what the model computed, or a clear statement of what cannot be shown."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import hiddenwidgets as hw
from hiddenwidgets.pipeline.summaries import COUNT_FIELDS, MOMENT_FIELDS

transformers = pytest.importorskip("transformers")

C = {name: i for i, name in enumerate(COUNT_FIELDS)}
M = {name: i for i, name in enumerate(MOMENT_FIELDS)}


def hooks(model):
    return sum(len(m._forward_hooks) for m in model.modules())


def bert():
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=32, num_labels=3)
    return transformers.BertForSequenceClassification(cfg)


def albert():
    torch.manual_seed(0)
    cfg = transformers.AlbertConfig(vocab_size=60, embedding_size=8, hidden_size=16, num_hidden_layers=3,
                                    num_attention_heads=2, intermediate_size=32, num_labels=3)
    return transformers.AlbertForSequenceClassification(cfg)


def text_steps(model, monitor, steps, *, grad=True):
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        ids = torch.randint(0, 60, (4, 7), generator=g)
        out = model(ids, labels=torch.zeros(4, dtype=torch.long))
        out.loss.backward()
        monitor.step(loss=out.loss)


def test_a_layer_a_fused_kernel_replaces_is_reported_with_its_cause_in_python_and_in_the_view():
    model = bert().train()
    name = "bert.encoder.layer.0.attention.self.dropout"
    monitor = hw.ActivationMonitor(model, [name, "bert.encoder.layer.0.output"], every=1)
    with pytest.warns(hw.MonitorWarning) as caught:
        text_steps(model, monitor, 5)
    said = [str(w.message) for w in caught if name in str(w.message)]
    assert len(said) == 1  # once, not at every step
    assert "did not run in the first 3 training steps" in said[0] and "'sdpa'" in said[0]
    assert "watch 'bert.encoder.layer.0.attention.self'" in said[0]
    monitor.flush()
    info = monitor._history["header"]["layer_info"][name]  # what the view's card shows
    assert info["state"] == "never_ran" and "sdpa" in info["message"]
    assert monitor.sources()[name].startswith("never ran: ")
    assert monitor.status()["bert.encoder.layer.0.output"]["state"] == "ok"
    assert any(e["kind"] == "never_ran" and e["layer"] == name for e in monitor.history.events)
    monitor.close()


def test_a_silent_layer_is_reported_once_in_the_history_however_long_training_goes_on():
    """The report is an event in the history (kept, sent to the view): one per silent layer, not one per step."""
    model = bert().train()
    name = "bert.encoder.layer.0.attention.self.dropout"
    monitor = hw.ActivationMonitor(model, [name, "bert.encoder.layer.0.output"], every=1)
    with pytest.warns(hw.MonitorWarning):
        text_steps(model, monitor, 12)
    monitor.flush()
    reports = [e for e in monitor.history.events if e["kind"] == "never_ran"]
    assert [e["layer"] for e in reports] == [name] and reports[0]["step"] == 3
    assert monitor.status()[name]["state"] == "never_ran"  # still said on its card after the one event
    monitor.close()


def test_every_call_of_a_shared_layer_is_recorded_merged_separately_or_first():
    model = albert().train()
    name = "albert.encoder.albert_layer_groups.0.albert_layers.0"
    outputs = []
    handle = model.get_submodule(name).register_forward_hook(
        lambda m, a, out: outputs.append((out[0] if isinstance(out, tuple) else out).detach()))
    monitor = hw.ActivationMonitor(model, [name], every=1, gradients=False)
    ids = torch.randint(0, 60, (4, 7), generator=torch.Generator().manual_seed(3))
    model(ids, labels=torch.zeros(4, dtype=torch.long)).loss.backward()
    monitor.step()
    monitor.flush()
    handle.remove()
    assert len(outputs) == 3  # ALBERT calls its one shared layer once per hidden layer
    every = torch.cat([o.reshape(-1) for o in outputs])
    series = monitor.history.layer(name)
    row = series.rows[0]
    assert row[series.col("total")] == every.numel()  # all three calls, not only the first
    stats = series.stats()
    assert stats["mean"][0] == pytest.approx(every.mean().item(), rel=1e-4, abs=1e-6)
    assert stats["std"][0] == pytest.approx(every.std(unbiased=False).item(), rel=1e-3)
    assert stats["max"][0] == pytest.approx(every.max().item(), rel=1e-6)
    assert monitor.status()[name]["calls"] == 3
    monitor.close()

    separate = hw.ActivationMonitor(model, [name], every=1, gradients=False, calls="separate")
    model(ids, labels=torch.zeros(4, dtype=torch.long)).loss.backward()
    separate.step()
    separate.flush()
    assert separate.history.layers == [name, f"{name} · call 2", f"{name} · call 3"]
    for k, out in enumerate(outputs):
        key = name if k == 0 else f"{name} · call {k + 1}"
        assert separate.history.layer(key).stats()["mean"][0] == pytest.approx(out.mean().item(), rel=1e-4, abs=1e-6)
    separate.close()

    first = hw.ActivationMonitor(model, [name], every=1, gradients=False, calls="first")
    model(ids, labels=torch.zeros(4, dtype=torch.long)).loss.backward()
    first.step()
    first.flush()
    assert first.history.layer(name).rows[0, series.col("total")] == outputs[0].numel()
    first.close()
    with pytest.raises(ValueError, match="calls must be one of"):
        hw.ActivationMonitor(model, [name], calls="all")


def test_a_reused_activation_module_merges_its_calls_and_their_gradients():
    class Block(nn.Module):  # one ReLU object used twice, as ResNet blocks do
        def __init__(self):
            super().__init__()
            self.a, self.b, self.relu = nn.Linear(3, 4), nn.Linear(4, 4), nn.ReLU()

        def forward(self, x):
            return self.relu(self.b(self.relu(self.a(x))))

    torch.manual_seed(0)
    net = Block()
    x = torch.randn(5, 3)
    h1 = net.relu(net.a(x))
    h1.retain_grad()
    h2 = net.relu(net.b(h1))
    h2.retain_grad()
    h2.sum().backward()
    expected = torch.sqrt(h1.grad.square().sum() + h2.grad.square().sum()).item()
    net.zero_grad()
    monitor = hw.ActivationMonitor(net, ["relu"], every=1)
    net(x).sum().backward()
    monitor.step()
    monitor.flush()
    stats = monitor.history.layer("relu").stats()
    assert stats["grad_norm"][0] == pytest.approx(expected, rel=1e-5)  # the norm over both calls' gradients
    both = torch.cat([h1.detach().reshape(-1), h2.detach().reshape(-1)])
    assert stats["zero_frac"][0] == pytest.approx((both == 0).float().mean().item())
    monitor.close()


def test_channels_last_blocks_have_their_units_last_and_feature_maps_of_channels():
    torch.manual_seed(0)
    cfg = transformers.ConvNextConfig(num_channels=3, hidden_sizes=[12, 24], depths=[1, 1], num_stages=2,
                                      num_labels=3)
    model = transformers.ConvNextForImageClassification(cfg).train()
    pw = "convnext.encoder.stages.0.layers.0.pwconv1"  # a Linear on (N, H, W, C)
    block = "convnext.encoder.stages.0.layers.0"  # its output is (N, C, H, W) again
    seen = {}
    handles = [model.get_submodule(n).register_forward_hook(lambda m, a, o, n=n: seen.__setitem__(n, o.detach()))
               for n in (pw, block)]
    monitor = hw.ActivationMonitor(model, [pw, block], every=1)
    x = torch.randn(2, 3, 32, 32)
    model(x).logits.sum().backward()
    monitor.step()
    monitor.flush()
    for h in handles:
        h.remove()
    out = seen[pw]
    assert out.shape == (2, 8, 8, 48)  # channels last: 48 = 4 x 12 hidden units, H = W = 8
    expected_dead = 1.0 - (out.amax(dim=(0, 1, 2)) > 0).float().mean().item()
    stats = monitor.history.layer(pw).stats()
    assert stats["dead_frac"][0] == pytest.approx(expected_dead)
    assert "last axis" in monitor.status()[pw]["units"]
    detail = monitor.history.details[pw]
    assert detail.values.shape[0] == 48 and detail.values.shape[1:] == (8, 8)  # maps of channels, not of rows
    np.testing.assert_allclose(detail.values[5], out[0, :, :, 5].numpy(), rtol=1e-6)
    assert "channels-last" in detail.note
    assert "axis 1" in monitor.status()[block]["units"]
    assert monitor.history.details[block].values.shape == (12, 8, 8)
    monitor.close()
    # the user's choice wins, and is said
    forced = hw.ActivationMonitor(model, [pw], every=1, units={pw: "channels_first"})
    model(x).logits.sum().backward()
    forced.step()
    forced.flush()
    assert forced.status()[pw]["units"] == "channels, axis 1 (units='channels_first')"
    forced.close()
    with pytest.raises(ValueError, match="units must be"):
        hw.ActivationMonitor(model, [pw], units="depth_first")


@pytest.mark.parametrize("cell", [nn.GRU, nn.LSTM])
def test_rnns_on_packed_sequences_are_watched_on_their_outputs_never_raising(cell):
    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = cell(4, 6, batch_first=True)
            self.fc = nn.Linear(6, 2)

        def forward(self, x, lengths):
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            out, _ = self.rnn(packed)
            padded, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True)
            return self.fc(padded).sum(dim=1)

    torch.manual_seed(0)
    net = Tagger()
    outs = []
    handle = net.rnn.register_forward_hook(lambda m, a, o: outs.append(o[0].data.detach()))
    monitor = hw.ActivationMonitor(net, ["rnn"], every=1)
    x, lengths = torch.randn(3, 5, 4), torch.tensor([5, 3, 2])
    with warnings.catch_warnings():
        warnings.simplefilter("error", hw.MonitorWarning)
        for _ in range(2):
            net(x, lengths).sum().backward()
            monitor.step()
    monitor.flush()
    handle.remove()
    assert monitor.sources() == {"rnn": "output[0].data"}  # the outputs of every step, not the final hidden state
    assert monitor.history.layer("rnn").shape == (10, 6)  # 5 + 3 + 2 steps, no padding
    assert monitor.history.layer("rnn").stats()["mean"][-1] == pytest.approx(outs[-1].mean().item(), rel=1e-5)
    monitor.close()


def test_validation_is_not_recorded_as_training_and_has_its_own_series_on_request():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    val_x = torch.randn(6, 4) * 100
    for validation in (False, True):
        monitor = hw.ActivationMonitor(model, ["1"], every=1, validation=validation)
        for _ in range(4):
            loss = model(torch.randn(5, 4)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            monitor.step(loss=loss)
            model.eval()  # a validation pass with autograd still on
            val_out = model[1](model[0](val_x))
            model(val_x)
            model.train()
        monitor.flush()
        train_max = monitor.history.layer("1").stats()["max"]
        assert monitor.history.layer("1").samples == 4
        assert train_max.max() < 20  # none of the x100 validation activations
        if validation:
            val = monitor.history.layer("1 · validation")
            assert monitor.history.layers == ["1", "1 · validation"]
            assert val.stats()["max"][-1] == pytest.approx(val_out.max().item(), rel=1e-5)
        else:
            assert monitor.history.layers == ["1"]
        monitor.close()


def test_an_eval_only_layer_is_reported_as_such():
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    model[1].eval()  # e.g. a frozen part
    monitor = hw.ActivationMonitor(model, ["1"], every=1)
    with pytest.warns(hw.MonitorWarning, match="only outside training"):
        for _ in range(3):
            model(torch.randn(2, 3)).sum().backward()
            monitor.step()
    assert monitor.status()["1"]["state"] == "eval_only"
    monitor.close()


def test_a_layer_whose_weights_are_shared_and_that_never_runs_names_the_module_that_does():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(10, 4)
            self.unembed = nn.Linear(4, 10, bias=False)
            self.unembed.weight = self.embed.weight

        def forward(self, ids):  # computes the logits through the embedding's weight, never calls unembed
            return self.embed(ids) @ self.embed.weight.t()

    net = Tied()
    monitor = hw.ActivationMonitor(net, ["unembed", "embed"], every=1)
    with pytest.warns(hw.MonitorWarning, match="weights are shared with 'embed'"):
        for _ in range(3):
            net(torch.randint(0, 10, (2, 3))).sum().backward()
            monitor.step()
    monitor.close()


def test_a_compiled_model_is_recorded_when_the_monitor_came_first_and_explained_when_it_came_after():
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    monitor = hw.ActivationMonitor(model, ["1"], every=1)
    compiled = torch.compile(model)
    for _ in range(3):
        compiled(torch.randn(5, 4)).sum().backward()
        monitor.step()
    monitor.flush()
    assert monitor.history.layer("1").samples == 3
    monitor.close()
    assert hooks(model) == 0

    torch._dynamo.reset()
    late = torch.compile(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)))
    late(torch.randn(5, 4)).sum().backward()  # compiled before the monitor exists
    monitor = hw.ActivationMonitor(late, ["1"], every=1)  # the name without the _orig_mod. prefix is accepted
    with pytest.warns(hw.MonitorWarning, match="torch.compile'd graph compiled before the monitor"):
        for _ in range(3):
            late(torch.randn(5, 4)).sum().backward()
            monitor.step()
    monitor.close()
    torch._dynamo.reset()
