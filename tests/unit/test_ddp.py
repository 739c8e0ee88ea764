"""DDP with gloo on CPU, two ranks for real: each rank records its own run directory, and the merged picture
equals one process recording the whole batches (histograms add exactly, moments pool exactly)."""

from __future__ import annotations

import numpy as np
import pytest

import hiddenwidgets as hw
from hiddenwidgets.pipeline import rundir
from hiddenwidgets.pipeline.transport import History

from . import rundir_jobs
from .test_rundir import ctx  # noqa: F401 - the forkserver fixture

pytestmark = pytest.mark.usefixtures("one_thread")
STEPS = 4


def test_two_ranks_merge_to_the_single_process_histograms(tmp_path, ctx):  # noqa: F811
    procs = [ctx.Process(target=rundir_jobs.ddp_rank, args=(r, 2, str(tmp_path / "init"), str(tmp_path / "ddp"),
                                                           STEPS)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    assert [d.name for d in rundir.rank_dirs(tmp_path / "ddp")] == ["rank0", "rank1"]
    merged = rundir.read_ranks(tmp_path / "ddp")
    ranks = [hw.read_run(tmp_path / "ddp" / f"rank{r}").history for r in range(2)]
    mean = ranks[0].layer("0").col("mean")
    assert ranks[0].layer("0").rows[0, mean] != ranks[1].layer("0").rows[0, mean]  # each rank saw its own half

    model = rundir_jobs.integer_model()
    with hw.ActivationRecorder(model, ["0", "1", "2"], every=1) as rec:
        for x in rundir_jobs.integer_batches(STEPS):
            model(x).pow(2).mean().backward()
            rec.step()
    single: History = rec.history
    for name in ("0", "1", "2"):
        a, b = merged.layer(name), single.layer(name)
        assert a.count == b.count == STEPS
        assert not a.rows[: a.count, a.col("outside")].any() and not b.rows[: b.count, b.col("outside")].any()
        grid = rundir.common_grid([a.grid, b.grid])
        np.testing.assert_array_equal(grid.rebin(a.hist[: a.count], a.grid), grid.rebin(b.hist[: b.count], b.grid))
        for field in ("total", "finite", "zeros", "min", "max"):
            np.testing.assert_array_equal(a.rows[: a.count, a.col(field)], b.rows[: b.count, b.col(field)], field)
        sa, sb = a.stats(), b.stats()
        np.testing.assert_allclose(sa["mean"], sb["mean"], rtol=1e-6)
        np.testing.assert_allclose(sa["std"], sb["std"], rtol=1e-6)
    view = hw.ActivationMonitor.follow(tmp_path / "ddp")  # the notebook view of the job: the merged picture
    assert view.wait(5) and view.history.step == STEPS
    for key, s in merged.series.items():
        np.testing.assert_array_equal(view.history.series[key].payload(0)["hist" if "layer" in key else "values"],
                                      s.payload(0)["hist" if "layer" in key else "values"])
    loss = merged.scalar("loss")
    want = [float(rundir_jobs.integer_model()(x).pow(2).mean()) for x in rundir_jobs.integer_batches(STEPS)]
    np.testing.assert_allclose(loss.rows[: loss.count, 3], want, rtol=1e-6)  # mean of equal halves' means


def test_ranks_that_sampled_different_steps_are_refused():
    a, b = History(capacity=8, bins=16, layers=[]), History(capacity=8, bins=16, layers=[])
    for step in (1, 2, 3):
        a.scalar("loss").add(step, 1.0)
    for step in (1, 3):
        b.scalar("loss").add(step, 1.0)
    with pytest.raises(hw.RunDirError, match=r"cover other steps.*every=k"):
        rundir.merge_histories([a, b])


def test_common_grid_nests_every_grid():
    grids = [hw.HistogramGrid.around(-1.0, 3.0, bins=16), hw.HistogramGrid.around(-7.5, 0.2, bins=16)]
    g = rundir.common_grid(grids)
    counts = np.arange(16.0)
    for finer in grids:
        assert g.rebin(counts, finer).sum() == counts.sum()  # rebinned exactly, nothing falls outside
    assert g.width == 1.0 and g.lo == -10.0  # the coarser input grid already holds both
