"""Following a run directory: the followed view's history and frames equal the live monitor's for the same run,
it updates while the run is written, replays a finished run, and says what it cannot do."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

import hiddenwidgets as hw
from hiddenwidgets.pipeline.transport import decode

from .test_rundir import assert_same_history, small_model, train
from .test_transport import Mirror

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def recorded_frames(monkeypatch):
    """Every frame a monitor or followed view sends, kept on the view (``view.sent``)."""
    def send(self, header, data):
        self.__dict__.setdefault("sent", []).append((header, bytes(data)))

    monkeypatch.setattr(hw.ActivationMonitor, "_send_frame", send)
    monkeypatch.setattr(hw.FollowedRun, "_send_frame", send)


def frames_of(view):
    return view.__dict__.setdefault("sent", [])


def mirror_of(frames):
    m = Mirror()
    for header, data in frames:
        m.apply(header, data)
    return m


def test_a_replayed_run_shows_what_the_live_monitor_showed(tmp_path):
    model = small_model()
    monitor = hw.ActivationMonitor(model, ["0", "1"], logdir=tmp_path / "run", every=1, history_points=8,
                                   validation=True)
    live = frames_of(monitor)
    train(model, monitor, 40)
    with torch.no_grad():
        model(torch.randn(4, 6))
    monitor.log(val=1.25)
    monitor.close()
    view = hw.ActivationMonitor.follow(tmp_path / "run")
    assert isinstance(view, hw.FollowedRun)
    assert view.wait(5) and not view.following  # a finished run is read at once; no thread keeps polling
    assert_same_history(monitor.history, view.history)
    assert view.layers == monitor.history.layers == ["0", "0 · validation", "1", "1 · validation"]
    # the stored snapshot (what a re-display and save_html show) holds the same numbers
    a, b = monitor._history, view._history
    da, db = decode(a["header"]["index"], a["data"]), decode(b["header"]["index"], b["data"])
    assert da.keys() == db.keys()
    for key in da:
        np.testing.assert_array_equal(da[key], db[key], err_msg=key)
    # and frames rebuild the same series in a browser's copy
    follow_frames = frames_of(view)
    assert follow_frames  # the replay was sent to the view
    view.streamer.resync()
    view.flush()
    live_mirror, follow_mirror = mirror_of(live), mirror_of(follow_frames)
    assert set(live_mirror.series) == set(follow_mirror.series) and len(live_mirror.series) == 6
    for key in live_mirror.series:
        for part, arr in live_mirror.series[key]["parts"].items():
            np.testing.assert_array_equal(follow_mirror.series[key]["parts"][part], arr, err_msg=key)
    kinds = [e["kind"] for e in view.history.events]
    assert kinds[-1] == "run_ended"
    with pytest.raises(RuntimeError, match="recorded by another process"):
        view.step(loss=1.0)


def test_a_run_being_written_appears_in_the_followed_view(tmp_path):
    model = small_model()
    rec = hw.ActivationRecorder(model, ["0"], logdir=tmp_path / "run", every=1, fps=30)
    view = hw.ActivationMonitor.follow(tmp_path / "run", poll=0.05)
    sent = frames_of(view)
    seen = []
    for chunk in range(3):
        train(model, rec, 10, seed=chunk)
        rec.flush()
        deadline = time.monotonic() + 10
        while view.history.step < rec.history.step and time.monotonic() < deadline:
            time.sleep(0.02)
        seen.append(view.history.step)
        assert view.following
    assert seen == [10, 20, 30]
    view.flush()
    assert sent and mirror_of(sent).series["scalar:loss"]["parts"]["steps"][-1, 1] == 30
    rec.close()
    assert view.wait(5)
    assert_same_history(rec.history, view.history)


def test_several_runs_side_by_side_and_bad_directories(tmp_path):
    for name, steps in (("a", 5), ("b", 9)):
        model = small_model()
        with hw.ActivationRecorder(model, ["0"], logdir=tmp_path / name, every=1) as rec:
            train(model, rec, steps)
    box = hw.ActivationMonitor.follow([tmp_path / "a", tmp_path / "b"])
    assert [v.history.step for v in box.children] == [5, 9]
    assert [v.title for v in box.children] == ["a · followed from disk", "b · followed from disk"]
    with pytest.raises(hw.RunDirError, match="no run directory"):
        hw.ActivationMonitor.follow(tmp_path / "c")
    with pytest.raises(TypeError, match="valid ones: path, poll, title, fps"):
        hw.FollowedRun(tmp_path / "a", interval=1)


def test_a_followed_run_shows_the_information_plane_and_the_projector_live_and_replayed(tmp_path):
    from hiddenwidgets.widgets.information_plane import InformationPlane

    from .test_rundir import assert_same_information, assert_same_representations, train_epochs

    model = small_model()
    x = torch.randn(30, 6, generator=torch.Generator().manual_seed(4))
    y = (x[:, 1] > 0).long()
    run = tmp_path / "run"
    rec = hw.ActivationRecorder(model, ["0"], logdir=run, every=1, fps=30)
    plane = hw.InformationPlane(model, ["0", "2"], x, y, epochs=[0, 1, 2, 3], logdir=run)
    reps = hw.RepresentationRecorder(model, ["2"], x, logdir=run)
    plane.recorder.flush()  # its first record (the labels) on disk
    view = hw.ActivationMonitor.follow(run, poll=0.05)
    assert view.information_plane is not None and view.projector is None  # nothing represented yet

    def caught_up(epochs):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            followed = view.information_plane.estimates()["epochs"]
            if followed == epochs and view.projector is not None and view.projector.epochs == epochs:
                return
            time.sleep(0.02)
        raise AssertionError(f"the followed views did not reach epochs {epochs}")

    for epoch in range(2):  # live: each epoch appears in the followed views while the job goes on
        train_epochs(model, 1, plane, reps, monitor=rec, seed=epoch, start=epoch)
        caught_up(list(range(epoch + 1)))
        assert view.following
        a, b = plane.estimates(), view.information_plane.estimates()
        np.testing.assert_array_equal(a["I_XT"], b["I_XT"])
        np.testing.assert_array_equal(a["I_TY"], b["I_TY"])
    # the views come with the monitor view: a column that the later ones join as their records arrive
    bundle = view._repr_mimebundle_()
    assert view._box.children == (view, view.information_plane, view.projector) == tuple(view.views)
    assert view._box.model_id in str(bundle)
    train_epochs(model, 2, plane, reps, monitor=rec, seed=5, start=2)
    rec.close()
    plane.close()
    reps.close()
    assert view.wait(10)
    assert_same_information(plane.recorder, view.information_plane.recorder)
    assert_same_representations(reps.representations, view.projector.reps)
    assert view.projector.epochs == [0, 1, 2, 3]
    # the replay shows the same views, with the same numbers, at once
    replay = hw.ActivationMonitor.follow(run)
    assert replay.wait(5) and len(replay.views) == 3
    for followed in (view, replay):
        a, b = plane.estimates(), followed.information_plane.estimates()
        assert a["epochs"] == b["epochs"] == [0, 1, 2, 3]
        np.testing.assert_array_equal(a["I_XT"], b["I_XT"])
        np.testing.assert_array_equal(a["I_TY"], b["I_TY"])
    assert isinstance(replay.information_plane, InformationPlane)


def test_a_rank_that_finishes_while_the_others_are_read_is_merged_at_the_next_look(tmp_path, monkeypatch):
    """Rank 0 writes its last frames and closes between the follower's read of rank 0 and its look at whether the
    writers are gone: the ranks differ at that moment, which must not be taken for a finished job whose ranks
    disagree. The next look reads rank 0 to its end and merges."""
    from hiddenwidgets.pipeline import rundir
    from hiddenwidgets.pipeline.transport import History

    from . import rundir_jobs

    histories = [History(capacity=16, bins=16, layers=list(rundir_jobs.LAYERS)) for _ in range(2)]
    writers = [rundir.RunWriter(tmp_path / "job" / f"rank{r}", h) for r, h in enumerate(histories)]

    def write(rank, steps):
        for step in range(histories[rank].step + 1, steps + 1):
            rundir_jobs.synthetic_step(histories[rank], step)
            writers[rank]("frame", *histories[rank].build(full=False))
        writers[rank]("flush", {}, b"")

    write(1, 8)
    writers[1].close()
    write(0, 5)
    view = hw.FollowedRun(tmp_path / "job", poll=60)  # no reader thread look during the test: read_once only
    assert view.history.layers == [] and view.following  # rank 0 behind: nothing merged yet, no error
    poll = rundir.RunReader.poll

    def then_finish(reader):
        n = poll(reader)
        if reader is view.readers[0] and not writers[0].closed:
            write(0, 8)  # the writer finishes right after this read of it
            writers[0].close()
        return n

    monkeypatch.setattr(rundir.RunReader, "poll", then_finish)
    view.read_once()
    assert view.following and view.history.layers == []  # not yet: rank 0 was still writing when it was read
    view.read_once()
    assert not view.following and view.history.step == 8
    assert [e["kind"] for e in view.history.events] == ["run_ended"]
    from .test_rundir import assert_same_history

    assert_same_history(rundir.read_ranks(tmp_path / "job"), view.history)
    view.close()
