"""A run directory exported as TensorBoard event files, read back with TensorBoard's own EventAccumulator."""

from __future__ import annotations

import numpy as np
import pytest

import hiddenwidgets as hw

from .test_rundir import small_model, train

pytest.importorskip("tensorboard")
pytestmark = pytest.mark.usefixtures("one_thread")


def test_tensorboard_reads_the_same_scalars_and_histograms(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = small_model()
    with hw.ActivationRecorder(model, ["0", "1"], logdir=tmp_path / "run", every=1, history_points=8) as rec:
        train(model, rec, 40)  # 40 steps in 8-point series: points cover 8 steps, histograms summed
    path = hw.export_tensorboard(tmp_path / "run", tmp_path / "tb")
    assert path.parent == tmp_path / "tb"
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    h = rec.history
    loss = h.scalar("loss")
    got = acc.Scalars("loss")
    assert [e.step for e in got] == loss.rows[: loss.count, 1].astype(int).tolist() == [8, 16, 24, 32, 40]
    np.testing.assert_allclose([e.value for e in got], loss.rows[: loss.count, 3], rtol=1e-6)
    assert [e.value for e in acc.Scalars("loss/max")] == pytest.approx(loss.rows[: loss.count, 5].tolist(), 1e-6)
    for layer in ("0", "1"):
        s = h.layer(layer)
        stats = s.stats()
        np.testing.assert_allclose([e.value for e in acc.Scalars(f"{layer}/std")], stats["std"], rtol=1e-6)
        outside = [e.value for e in acc.Scalars(f"{layer}/outside")]
        np.testing.assert_allclose(outside, stats["outside"], rtol=1e-6)
        hists = acc.Histograms(layer)
        assert len(hists) == s.count
        for i, e in enumerate(hists):
            v = e.histogram_value
            assert e.step == int(s.rows[i, 1])
            np.testing.assert_array_equal(v.bucket, s.hist[i])  # counts of values, exactly
            np.testing.assert_allclose(v.bucket_limit, s.grid.lo + s.grid.width * np.arange(1, s.grid.bins + 1))
            # every finite value is in a bucket or counted as outside the grid (before the grid widened)
            assert v.num == s.hist[i].sum() == s.rows[i, s.col("finite")] - s.rows[i, s.col("outside")]
            assert v.min == s.rows[i, s.col("min")] and v.max == s.rows[i, s.col("max")]
