"""Run directories: the recorder's frames on disk, read back exactly; crash safety under real SIGKILLs; one writer
per directory; bad directories; a write error never stops training."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import struct
import time

import numpy as np
import pytest
import torch

import hiddenwidgets as hw
from hiddenwidgets.pipeline import records, rundir
from hiddenwidgets.pipeline.rundir import RunDirError, RunReader, RunWriter, read_run
from hiddenwidgets.pipeline.transport import History, decode

from . import rundir_jobs

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ctx():
    """A forkserver that has imported torch and hiddenwidgets once: children start in milliseconds."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "torch._dynamo", "hiddenwidgets", "tests.unit.rundir_jobs"])
    return ctx


def snapshot_arrays(h: History):
    header, data = h.build(full=True, details=list(h.details))
    return header, decode(header["index"], data)


def assert_same_history(a: History, b: History) -> None:
    """Same snapshot, header and arrays; events a follower adds of its own (the run ended...) aside."""
    ha, da = snapshot_arrays(a)
    hb, db = snapshot_arrays(b)
    hb["events"] = [e for e in hb["events"] if e["kind"] not in ("run_ended", "writer_gone", "torn")]
    for key in ("step", "epoch", "layers", "series", "layer_info", "details", "events"):
        assert ha[key] == hb[key], key
    assert da.keys() == db.keys()
    for key in da:
        np.testing.assert_array_equal(da[key], db[key], err_msg=key)


def last_ack(conn, acked: int = 0) -> int:
    """The last step a killed child acknowledged (the pipe reads as closed once the child is gone)."""
    try:
        while conn.poll():
            acked = conn.recv()
    except EOFError:
        pass
    return acked


def small_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.ReLU(), torch.nn.Linear(12, 3))


def train(model, rec, steps, seed=0):
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        loss = model(torch.randn(8, 6, generator=g)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        rec.step(loss=loss)


# -- the format ---------------------------------------------------------------------------------------------------
def test_crc32c_and_framing_match_tfrecord():
    # RFC 3720 B.4 check values of CRC-32C
    assert records.crc32c(b"123456789") == 0xE3069283
    assert records.crc32c(bytes(32)) == 0x8A9136AA
    assert records.crc32c(bytes([0xFF]) * 32) == 0x62A8AB43
    data = os.urandom(5000)  # the C library (a dependency), the vectorised fallback and the byte loop agree
    assert records.crc32c(data) == records._crc32c_numpy(data) == records._crc32c_python(data)
    assert records._crc32c_numpy(b"123456789" * 600) == records._crc32c_python(b"123456789" * 600)
    rec = records.frame(b"abc")
    assert struct.unpack("<Q", rec[:8])[0] == 3 and rec[12:15] == b"abc" and len(rec) == 19
    # the masking TensorFlow's record_writer applies: rotate right by 15, add 0xa282ead8
    c = records.crc32c(b"abc")
    assert struct.unpack("<I", rec[15:])[0] == (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def test_scan_returns_complete_records_and_reports_torn_and_corrupt(tmp_path):
    path = tmp_path / "f"
    whole = b"".join(records.frame(bytes([i]) * (i + 1)) for i in range(5))
    path.write_bytes(whole + records.frame(b"last")[:9])
    got, where = records.scan(path)
    assert got == [bytes([i]) * (i + 1) for i in range(5)]
    assert where.torn and where.end == len(whole) and "torn" in where.problem
    broken = bytearray(whole)
    broken[-2] ^= 1  # the last record's payload checksum
    path.write_bytes(bytes(broken))
    got, where = records.scan(path)
    assert len(got) == 4 and "corrupt" in where.problem


# -- a real recorder, read back ------------------------------------------------------------------------------------
def test_run_directory_replays_the_recorders_history_exactly(tmp_path):
    model = small_model()
    with hw.ActivationRecorder(model, ["0", "1"], logdir=tmp_path / "run", every=1, history_points=8) as rec:
        train(model, rec, 60)  # 60 steps in 8 points: decimated three times
        rec.log(val=0.5)
    reader = read_run(tmp_path / "run")
    assert reader.ended and reader.torn == "" and reader.history.step == 60
    assert reader.history.layer("0").stride == 8 and reader.history.layer("0").samples == 60
    assert_same_history(rec.history, reader.history)
    manifest = json.loads((tmp_path / "run" / "run.json").read_text())
    assert manifest["format"] == "hiddenwidgets-run" and manifest["layers"] == ["0", "1"]
    assert manifest["options"]["history_points"] == 8


def test_incremental_reads_follow_a_run_and_survive_segment_rotation(tmp_path, monkeypatch):
    monkeypatch.setattr(rundir, "SEGMENT_BYTES", 20_000)
    h = History(capacity=16, bins=16, layers=list(rundir_jobs.LAYERS))
    writer = RunWriter(tmp_path / "run", h)
    reader = RunReader(tmp_path / "run")
    for step in range(1, 121):
        rundir_jobs.synthetic_step(h, step)
        writer("frame", *h.build(full=False))
        if step % 7 == 0:
            reader.poll()
            assert reader.history.step == step
            assert_same_history(h, reader.history)
    writer.close()
    reader.poll()
    assert reader.ended and reader.torn == ""
    assert_same_history(h, reader.history)
    kept = rundir._segments(tmp_path / "run")
    assert len(kept) == rundir.KEEP_SEGMENTS and kept[0] > 0  # old segments were deleted: bounded size
    late = read_run(tmp_path / "run")  # a reader that starts now starts at the oldest kept snapshot
    assert_same_history(h, late.history)


def assert_same_information(rec, got) -> None:
    """An InformationRecorder's records and what a reader rebuilt from its run directory: point for point."""
    assert got.layers == rec.layers and got.schedule == rec.schedule and got.epoch == rec.epoch
    assert got.labels.dtype == rec.labels.dtype
    np.testing.assert_array_equal(got.labels, rec.labels)
    assert got.grad_epochs == rec.grad_epochs
    for name in rec.layers:  # floats compared exactly, NaN (a layer without gradients) included
        np.testing.assert_array_equal(got.grad_mean[name], rec.grad_mean[name], err_msg=name)
        np.testing.assert_array_equal(got.grad_std[name], rec.grad_std[name], err_msg=name)
    assert [r.epoch for r in got.records] == [r.epoch for r in rec.records]
    for a, b in zip(rec.records, got.records, strict=True):
        for name in rec.layers:
            assert b.activations[name].dtype == a.activations[name].dtype
            np.testing.assert_array_equal(b.activations[name], a.activations[name], err_msg=(a.epoch, name))


def assert_same_representations(a, b) -> None:
    assert b.layers == a.layers and b.epochs == a.epochs and len(b) == len(a)
    for name in a.layers:
        for epoch in a.epochs:
            assert torch.equal(a.get(name, epoch), b.get(name, epoch)), (name, epoch)


def train_epochs(model, epochs, *recorders, monitor=None, batches=3, seed=1, start=0):
    """Epochs ``start``, ``start + 1``... of training, each ending with the recorders' ``end_epoch``."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(seed)
    for epoch in range(start, start + epochs):
        for _ in range(batches):
            loss = model(torch.randn(8, 6, generator=g)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            for r in recorders:
                if hasattr(r, "step"):
                    r.step()
            opt.step()
            if monitor is not None:
                monitor.step(epoch=epoch, loss=loss)
        for r in recorders:
            r.end_epoch(epoch)


def test_information_and_representation_records_read_back_point_for_point(tmp_path):
    model = small_model()
    x = torch.randn(40, 6, generator=torch.Generator().manual_seed(2))
    y = (x[:, 0] > 0).long()
    run = tmp_path / "run"
    rec = hw.ActivationRecorder(model, ["0", "2"], logdir=run, every=1, history_points=8)
    info = hw.InformationRecorder(model, ["0", "2"], x, y, epochs=[0, 2, 3], logdir=run)
    reps = hw.RepresentationRecorder(model, ["1", "2"], x[:20], epochs=[1, 3], logdir=run)
    reader = RunReader(run)
    train_epochs(model, 2, info, reps, monitor=rec)
    for r in (rec, info, reps):  # the barriers: everything recorded so far is on disk
        r.flush()
    reader.poll()  # halfway: what is written so far reads back as it is in memory
    assert_same_information(info, reader.information)
    assert_same_representations(reps.representations, reader.representations)
    train_epochs(model, 2, info, reps, monitor=rec, seed=2, start=2)
    rec.close()
    assert not read_run(run).ended  # the run ends with the last recorder writing it
    info.close()
    reps.close()
    for got in (reader, read_run(run)):  # the reader that followed, and one that starts now
        got.poll()
        assert got.ended and got.torn == ""
        assert_same_information(info, got.information)
        assert_same_representations(reps.representations, got.representations)
        assert_same_history(rec.history, got.history)
    assert len(info.records) == 3 and len(info.grad_epochs) == 4 and reps.representations.epochs == [1, 3]
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["recorders"] == ["information", "representations"] and manifest["layers"] == ["0", "2"]
    # the information plane computed from the directory is the one computed in the process, number for number
    from hiddenwidgets.widgets.information_plane import InformationPlane

    plane = InformationPlane.from_run(run, value_range="observed")
    mine = InformationPlane.__new__(InformationPlane)
    mine._start(info, {}, *InformationPlane._view_options({"value_range": "observed"}))
    a, b = mine.estimates(), plane.estimates()
    assert a["epochs"] == b["epochs"] == [0, 2, 3]
    np.testing.assert_array_equal(a["I_XT"], b["I_XT"])
    np.testing.assert_array_equal(a["I_TY"], b["I_TY"])
    assert mine.phase_transition() == plane.phase_transition()
    with pytest.raises(RuntimeError, match="recorded by another process"):
        plane.end_epoch()


def test_a_monitor_joins_the_run_an_information_recorder_started(tmp_path):
    model = small_model()
    x = torch.randn(16, 6, generator=torch.Generator().manual_seed(3))
    info = hw.InformationRecorder(model, ["0"], x, torch.arange(16) % 2, epochs=[1], logdir=tmp_path / "run")
    info.flush()
    reader = RunReader(tmp_path / "run")
    reader.poll()
    assert reader.history.layers == [] and reader.information.layers == ["0"]
    rec = hw.ActivationRecorder(model, ["0", "1"], logdir=tmp_path / "run", every=1, history_points=8, bins=16)
    with pytest.raises(RunDirError, match="already records an activation monitor of this process"):
        hw.ActivationRecorder(model, ["2"], logdir=tmp_path / "run")
    train_epochs(model, 3, info, monitor=rec)
    info.close()
    rec.close()
    reader.poll()
    assert reader.ended and reader.history.capacity == 8 and reader.history.bins == 16
    assert_same_history(rec.history, reader.history)
    assert_same_information(info, reader.information)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["options"]["history_points"] == 8


# -- crash safety ------------------------------------------------------------------------------------------------
def test_sigkill_at_random_moments_loses_no_acknowledged_record(tmp_path, ctx):
    """30 writers killed with SIGKILL at random moments (also while rotating segments): every step acknowledged
    after a flush barrier is read back and the history read equals the writer's at that step. (A record is one
    write() call; a kill lands inside one rarely, as records are small: a torn tail is made below and read past.)"""
    rnd = random.Random(14)
    for i in range(30):
        path = tmp_path / f"run{i}"
        parent, child = ctx.Pipe(duplex=False)
        p = ctx.Process(target=rundir_jobs.write_synthetic, args=(str(path), child, 30_000))
        p.start()
        child.close()
        time.sleep(rnd.uniform(0.005, 0.12))
        os.kill(p.pid, signal.SIGKILL)
        p.join()
        assert p.exitcode == -signal.SIGKILL  # killed, not failed
        acked = last_ack(parent)
        reader = read_run(path) if (path / "run.json").exists() else None
        if reader is None:
            assert acked == 0
            continue
        assert not reader.ended and not reader.writer_alive
        assert reader.history.step >= acked, (i, reader.history.step, acked)
        assert reader.damaged == []
        if reader.history.step:
            assert_same_history(rundir_jobs.synthetic_history(reader.history.step), reader.history)
    # a torn last record (what power loss or a failed write leaves): reported, everything before it read
    segment = tmp_path / "run29" / rundir._segment_name(rundir._segments(tmp_path / "run29")[-1])
    step = read_run(tmp_path / "run29").history.step
    with open(segment, "ab") as f:
        f.write(records.frame(b"HWR1" + bytes(100))[:50])
    reader = read_run(tmp_path / "run29")
    assert reader.history.step == step and "torn record: 50 of its 120 bytes" in reader.torn


def test_sigkill_of_a_training_recorder_keeps_every_flushed_step(tmp_path, ctx):
    rnd = random.Random(3)
    for i in range(3):
        path = tmp_path / f"run{i}"
        parent, child = ctx.Pipe(duplex=False)
        p = ctx.Process(target=rundir_jobs.train_recorder, args=(str(path), child))
        p.start()
        child.close()
        acked = 0
        deadline = time.monotonic() + 30
        while acked < 20 + 10 * i and time.monotonic() < deadline:
            if parent.poll(0.05):
                acked = parent.recv()
        time.sleep(rnd.uniform(0.0, 0.1))
        os.kill(p.pid, signal.SIGKILL)
        p.join()
        assert p.exitcode == -signal.SIGKILL
        acked = last_ack(parent, acked)
        reader = read_run(path)
        assert acked >= 20
        assert reader.history.step >= acked and reader.history.scalar("loss").samples >= acked
        assert reader.history.layer("0").samples >= acked  # every=1: one sample per step
        assert not reader.ended and not reader.writer_alive
        # the information and representation records: every epoch acknowledged (after their flush) is there,
        # complete, with the numbers the recorder computed (the child recomputes nothing; it is deterministic)
        info, reps = reader.information, reader.representations
        epochs = acked // 10
        assert info.layers == ["0", "1"] and info.epoch >= epochs and len(info.grad_epochs) >= epochs
        assert info.grad_epochs == list(range(len(info.grad_epochs)))
        assert [r.epoch for r in info.records] == [e for e in range(info.epoch) if e % 2 == 0]
        assert all(r.activations["0"].shape == (32, 12) for r in info.records)
        np.testing.assert_array_equal(info.labels, rundir_jobs.probe_set()[1].numpy())
        # killed between the two end_epoch calls, the representations are one epoch behind
        assert reps.epochs in (list(range(info.epoch)), list(range(info.epoch - 1))) and len(reps.epochs) >= epochs
    # a torn last record of a recorder's file: reported, every record before it read
    path = tmp_path / "run2"
    before = read_run(path).information
    with open(path / "information.tfrecord", "ab") as f:
        f.write(records.frame(b"HWR1" + bytes(300))[:77])
    reader = read_run(path)
    assert "information.tfrecord: torn record: 77 of its 320 bytes" in reader.torn
    assert reader.information.epoch == before.epoch and len(reader.information.records) == len(before.records)


def test_a_write_error_stops_recording_not_training(tmp_path, ctx):
    parent, child = ctx.Pipe(duplex=False)
    p = ctx.Process(target=rundir_jobs.train_until_disk_full, args=(str(tmp_path / "run"), child, 60_000))
    p.start()
    child.close()
    assert parent.poll(60)
    got = parent.recv()
    p.join()
    assert got["steps"] == 300 and got["history_step"] == 300  # training and the live history went on
    assert "EFBIG" in got["stopped"] or "too large" in got["stopped"]
    assert len(got["events"]) == 1 and len(got["warnings"]) == 1
    reader = read_run(tmp_path / "run")  # what was written before the error reads back
    assert 0 < reader.history.step < 300 and not reader.ended


# -- one writer, bad directories ---------------------------------------------------------------------------------
def test_second_writer_is_refused_naming_the_holder(tmp_path, ctx):
    model = small_model()
    rec = hw.ActivationRecorder(model, ["0"], logdir=tmp_path / "run")
    with pytest.raises(RunDirError, match=rf"another writer \(process pid {os.getpid()} on"):
        RunWriter(tmp_path / "run", History(layers=["0"]))
    rec.close()
    parent, child = ctx.Pipe(duplex=False)
    p = ctx.Process(target=rundir_jobs.write_synthetic, args=(str(tmp_path / "other"), child, 1 << 30))
    p.start()
    child.close()
    assert parent.poll(30)
    with pytest.raises(RunDirError, match=rf"process pid {p.pid} on"):
        RunWriter(tmp_path / "other", History(layers=["a"]))
    os.kill(p.pid, signal.SIGKILL)
    p.join()


def test_an_existing_run_is_never_overwritten(tmp_path):
    model = small_model()
    with hw.ActivationRecorder(model, ["0"], logdir=tmp_path / "run", every=1) as rec:
        train(model, rec, 5)
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}
    with pytest.raises(RunDirError, match=r"not empty \(it holds a run written by process .*nothing was overwritten"):
        hw.ActivationRecorder(model, ["0"], logdir=tmp_path / "run")
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()} == before
    assert model._forward_hooks == {} and model[0]._forward_hooks == {}  # the failed recorder left nothing
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(RunDirError, match=r"not empty \(it holds todo.txt\)"):
        hw.ActivationRecorder(model, ["0"], logdir=tmp_path / "notes")
    assert [p.name for p in (tmp_path / "notes").iterdir()] == ["todo.txt"]  # not even a lock file added
    assert (tmp_path / "notes" / "todo.txt").read_text() == "mine"


def test_reading_missing_empty_foreign_and_newer_directories_says_why(tmp_path):
    with pytest.raises(RunDirError, match=r"no run directory at .*nothing has been recorded there"):
        read_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDirError, match="is empty: no run has been written there"):
        read_run(tmp_path / "empty")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    with pytest.raises(RunDirError, match="not a hiddenwidgets run directory"):
        read_run(tmp_path / "other")
    h = History(layers=["a"])
    RunWriter(tmp_path / "new", h).close()
    manifest = tmp_path / "new" / "run.json"
    m = json.loads(manifest.read_text())
    m["version"] = rundir.VERSION + 1
    manifest.write_text(json.dumps(m))
    before = manifest.read_bytes()
    with pytest.raises(RunDirError, match=f"format version {rundir.VERSION + 1}, newer than this hiddenwidgets reads"):
        read_run(tmp_path / "new")
    assert manifest.read_bytes() == before
