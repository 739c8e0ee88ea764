"""Export a run directory's scalars and histograms as TensorBoard event files.

Each point of the recorded history becomes one TensorBoard step (the last training step it covers): a point that
covers several steps (a long run's coarsened history) carries their mean for scalars and layer moments, and the
sum of their histograms, exactly as the monitor shows it. Needs the ``tensorboard`` package (for its event-file
writer, through ``torch.utils.tensorboard``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from .rundir import RunReader
from .transport import LayerSeries, ScalarSeries

__all__ = ["export_tensorboard"]

LAYER_SCALARS = ("mean", "std", "min", "max", "zero_frac", "dead_frac", "grad_norm", "nonfinite")


def export_tensorboard(run_dir: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Write the scalars and per-layer histograms of the run at ``run_dir`` as a TensorBoard event file in
    ``out_dir`` (created), and return the file's path.

    Tags: each logged scalar under its own name (``loss``; ``loss/min`` and ``loss/max`` where a point covers
    several steps); per layer ``<layer>/mean``, ``/std``, ``/min``, ``/max``, ``/zero_frac``, ``/dead_frac``,
    ``/grad_norm``, ``/nonfinite``, and the histogram ``<layer>`` on the layer's histogram grid (bucket limits
    ``lo + width * (i + 1)``, counts of values; values outside the grid, before it widened, are not in any
    bucket and are counted by ``<layer>/outside``). Steps without a number (no gradient recorded) are left out.
    """
    from .._optional import require

    require("tensorboard", "export_tensorboard")  # optional: torch.utils.tensorboard writes with it
    from torch.utils.tensorboard import SummaryWriter
    reader = RunReader(run_dir)
    reader.poll()
    h = reader.history
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    before = set(out.glob("events.out.tfevents.*"))
    writer = SummaryWriter(log_dir=str(out), filename_suffix=".hiddenwidgets")
    try:
        for s in h.series.values():
            if isinstance(s, ScalarSeries):
                _scalars(writer, s)
            elif isinstance(s, LayerSeries):
                _layer(writer, s)
    finally:
        writer.close()
    (path,) = set(out.glob("events.out.tfevents.*")) - before
    return path


def _scalars(writer, s: ScalarSeries) -> None:
    rows = s.rows[: s.count]
    for _lo, hi, n, mean, vmin, vmax in rows:
        step = int(hi)
        writer.add_scalar(s.name, float(mean), step)
        if n > 1:
            writer.add_scalar(f"{s.name}/min", float(vmin), step)
            writer.add_scalar(f"{s.name}/max", float(vmax), step)


def _layer(writer, s: LayerSeries) -> None:
    stats = s.stats()
    c = {name: i for i, name in enumerate(s.columns)}
    g = s.grid
    for i in range(s.count):
        step = int(s.rows[i, c["hi"]])
        for name in LAYER_SCALARS:
            v = float(stats[name][i])
            if math.isfinite(v):
                writer.add_scalar(f"{s.name}/{name}", v, step)
        finite = float(s.rows[i, c["finite"]])
        outside = float(s.rows[i, c["outside"]])
        writer.add_scalar(f"{s.name}/outside", outside / max(finite, 1.0), step)
        if g is None or finite == 0:
            continue
        counts = s.hist[i]
        mean, m2 = float(s.rows[i, c["mean"]]), float(s.rows[i, c["m2"]])
        limits = g.lo + g.width * np.arange(1, g.bins + 1)
        writer.add_histogram_raw(s.name, min=float(s.rows[i, c["min"]]), max=float(s.rows[i, c["max"]]),
                                 num=float(counts.sum()), sum=mean * finite, sum_squares=m2 + finite * mean * mean,
                                 bucket_limits=limits.tolist(), bucket_counts=counts.tolist(), global_step=step)
