"""The Lightning and Hugging Face callbacks with the real frameworks, a tiny model, a few steps each: what they
recorded (steps, the losses the model computed, layer samples, validation metrics) and that hooks never outlive
the fit, also when it fails."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import hiddenwidgets as hw

pytestmark = pytest.mark.usefixtures("one_thread")


def data(n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    return x, (x[:, 0] > 0).long()


def no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


# -- Lightning ----------------------------------------------------------------------------------------------------
def lightning_module(fail_at: int | None = None):
    L = pytest.importorskip("lightning.pytorch")

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
            self.losses: list[float] = []

        def training_step(self, batch, i):
            if fail_at is not None and i == fail_at:
                raise RuntimeError("boom")
            x, y = batch
            loss = nn.functional.cross_entropy(self.net(x), y)
            self.losses.append(loss.item())
            return loss

        def validation_step(self, batch, i):
            x, y = batch
            self.log("val_loss", nn.functional.cross_entropy(self.net(x), y))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return L, Tiny()


def lightning_fit(L, module, callback, tmp_path, epochs=2):
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*data()), batch_size=8)
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        default_root_dir=tmp_path, callbacks=[callback])
    trainer.fit(module, loader, loader)
    return trainer


def test_lightning_callback_records_each_optimizer_step_and_validation(tmp_path):
    from hiddenwidgets.integrations.lightning import MonitorCallback

    L, module = lightning_module()
    cb = MonitorCallback(["net.0", "net.2"], logdir=tmp_path / "run", every=1)
    lightning_fit(L, module, cb, tmp_path)
    assert cb.monitor.closed and no_hooks(module)
    run = hw.read_run(tmp_path / "run")
    h = run.history
    assert run.ended and h.step == 6 and h.epoch == 1  # 3 batches x 2 epochs
    loss = h.scalar("loss")
    assert loss.rows[: loss.count, 3].tolist() == pytest.approx(module.losses, rel=1e-6)
    assert h.layer("net.0").samples == 6 and h.layer("net.2").samples == 6
    val = h.scalar("val_loss")
    assert val.rows[: val.count, 0].tolist() == [3, 6]  # logged at the step each validation ran


def test_lightning_callback_closes_the_run_when_training_fails(tmp_path):
    from hiddenwidgets.integrations.lightning import MonitorCallback

    L, module = lightning_module(fail_at=2)
    cb = MonitorCallback(["net.0"], logdir=tmp_path / "run", every=1)
    with pytest.raises(RuntimeError, match="boom"):
        lightning_fit(L, module, cb, tmp_path)
    assert cb.monitor.closed and no_hooks(module)
    run = hw.read_run(tmp_path / "run")
    assert run.ended and run.end_reason == "training ended by RuntimeError: boom" and run.history.step == 2


def test_lightning_callback_steps_a_monitor_the_user_gave_and_leaves_it_open(tmp_path):
    from hiddenwidgets.integrations.lightning import MonitorCallback

    L, module = lightning_module()
    monitor = hw.ActivationMonitor(module, ["net.0"], every=1)
    lightning_fit(L, module, MonitorCallback(monitor=monitor), tmp_path, epochs=1)
    assert not monitor.closed and monitor.history.step == 3 and monitor.history.layer("net.0").samples == 3
    monitor.close()
    with pytest.raises(TypeError, match=r"monitor=\.\.\. already says what to record"):
        MonitorCallback(["net.0"], monitor=monitor)
    with pytest.raises(TypeError, match="valid ones: layers, monitor, logdir, gradients"):
        MonitorCallback(["net.0"], evry=1)


# -- Hugging Face Trainer ----------------------------------------------------------------------------------------
class HFTiny(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))

    def forward(self, x, labels=None):
        logits = self.net(x)
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return {"loss": loss, "logits": logits}


def hf_trainer(model, callback, tmp_path, max_steps=5):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    x, y = data()
    rows = [{"x": x[i], "labels": y[i]} for i in range(len(x))]
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=max_steps, per_device_train_batch_size=4, learning_rate=0.1,
        logging_steps=1, eval_strategy="steps", eval_steps=5, save_strategy="no", report_to=[], use_cpu=True,
        disable_tqdm=True, dataloader_num_workers=0)
    return transformers.Trainer(model=model, args=args, train_dataset=rows, eval_dataset=rows[:8],
                                callbacks=[callback])


def test_huggingface_callback_records_steps_logs_and_evaluation(tmp_path):
    from hiddenwidgets.integrations.huggingface import MonitorCallback

    model = HFTiny()
    with MonitorCallback(["net.0", "net.2"], logdir=tmp_path / "run", every=1) as cb:
        trainer = hf_trainer(model, cb, tmp_path)
        trainer.train()
    assert cb.monitor.closed and no_hooks(model)
    run = hw.read_run(tmp_path / "run")
    h = run.history
    assert run.ended and h.step == 5 and h.layer("net.0").samples == 5
    logged = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    loss = h.scalar("loss")
    assert len(logged) == 5 and loss.rows[: loss.count, 3].tolist() == pytest.approx(logged)
    assert loss.rows[: loss.count, 0].tolist() == [1, 2, 3, 4, 5]
    evals = [e["eval_loss"] for e in trainer.state.log_history if "eval_loss" in e]
    ev = h.scalar("eval_loss")
    assert ev.samples >= 1 and ev.rows[0, 3] == pytest.approx(evals[0])


def test_huggingface_callback_closes_a_failed_run(tmp_path):
    from hiddenwidgets.integrations.huggingface import MonitorCallback

    model = HFTiny()
    calls = []

    def failing(x, labels=None):
        calls.append(1)
        if len(calls) == 3:
            raise ValueError("bad batch")
        return HFTiny.forward(model, x, labels)

    model.forward = failing
    with pytest.raises(ValueError, match="bad batch"), \
            MonitorCallback(["net.0"], logdir=tmp_path / "run", every=1) as cb:
        hf_trainer(model, cb, tmp_path).train()
    assert cb.monitor.closed and no_hooks(model)
    run = hw.read_run(tmp_path / "run")
    assert run.ended and run.end_reason == "training ended by ValueError: bad batch" and run.history.step == 2


# -- the other recorders, passed through ---------------------------------------------------------------------------
def test_lightning_callback_steps_information_recorders_into_the_same_run(tmp_path):
    from hiddenwidgets.integrations.lightning import MonitorCallback

    from .test_rundir import assert_same_information

    L, module = lightning_module()
    x, y = data(seed=3)
    run = tmp_path / "run"
    info = hw.InformationRecorder(module.net, ["0", "2"], x, y, epochs=[1], logdir=run)
    cb = MonitorCallback(["net.0"], logdir=run, every=1, recorders=[info])  # the monitor joins info's run
    lightning_fit(L, module, cb, tmp_path)
    assert info.grad_epochs == [0, 1] and [r.epoch for r in info.records] == [1]
    assert all(np.isfinite(info.grad_mean[name]).all() and min(info.grad_std[name]) > 0 for name in ("0", "2"))
    assert not hw.read_run(run).ended  # the recorder is the user's: the run ends when they close it
    info.close()
    got = hw.read_run(run)
    assert got.ended and got.history.step == 6 and got.history.layer("net.0").samples == 6
    assert_same_information(info, got.information)
    with pytest.raises(TypeError, match="has no end_epoch"):
        MonitorCallback(["net.0"], recorders=[object()])


def test_huggingface_callback_steps_information_and_representation_recorders(tmp_path):
    from hiddenwidgets.integrations.huggingface import MonitorCallback

    from .test_rundir import assert_same_information, assert_same_representations

    model = HFTiny()
    x, y = data(seed=4)
    run = tmp_path / "run"
    info = hw.InformationRecorder(model, ["net.0"], x, y, epochs=[0, 1], logdir=run)
    reps = hw.RepresentationRecorder(model, ["net.2"], x, logdir=run)
    with MonitorCallback(recorders=[info, reps]) as cb:  # recorders only: no monitor of its own
        hf_trainer(model, cb, tmp_path, max_steps=12).train()  # 24 rows, batches of 4: two epochs
    assert cb.monitor is None and no_hooks(model)
    assert info.grad_epochs == [0, 1] and reps.representations.epochs == [0, 1]
    info.close()
    reps.close()
    got = hw.read_run(run)
    assert got.ended and got.history.layers == []
    assert_same_information(info, got.information)
    assert_same_representations(reps.representations, got.representations)
