"""Frames made by the real Python transport, saved for the JS tests (js/test/fixtures/frames.json).

The JS store must rebuild exactly the arrays Python holds, so its tests replay frames produced here.
`python tests/js_fixtures.py` rewrites the file; tests/unit/test_transport.py fails when it is stale.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np

from hiddenwidgets.pipeline.summaries import COUNT_FIELDS, MOMENT_FIELDS, HistogramGrid
from hiddenwidgets.pipeline.transport import History, encode

FIXTURE = Path(__file__).resolve().parents[1] / "js" / "test" / "fixtures" / "frames.json"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def build_fixture() -> dict:
    rng = np.random.default_rng(0)
    history = History(capacity=8, bins=8, layers=["conv1", "fc <b>"])
    frames = []
    grid = HistogramGrid.around(0.0, 1.0, 8)
    for step in range(1, 31):
        history.step = step
        history.epoch = step // 10
        history.scalar("loss").add(step, float(np.exp(-step / 10)))
        if step % 2 == 0:
            if step == 16:  # the layer's values grow: the grid coarsens and every point is rebinned
                grid = grid.cover(-1.0, 3.0)
            for name in history.layers:
                values = rng.normal(0.5, 0.3 + step / 30, size=64)
                counts = np.array([64, 64, 64, int((values == 0).sum()), 0,
                                   int(((values < grid.lo) | (values > grid.hi)).sum())])
                assert len(counts) == len(COUNT_FIELDS)
                hist, _ = np.histogram(values, bins=grid.bins, range=(grid.lo, grid.hi))
                moments = np.array([values.mean(), ((values - values.mean()) ** 2).sum(), values.min(),
                                    values.max(), 0.25])
                assert len(moments) == len(MOMENT_FIELDS)
                history.layer(name).add(step, counts, moments, hist.astype(float), grid,
                                        grad_norm=float(step) if name == "conv1" else None)
            history.add_detail("conv1", step, rng.normal(size=(4, 3, 3)).astype(np.float32), "4 maps")
        if step % 3 == 0:
            header, data = history.build(full=False, details=["conv1"], detail_versions={})
            header["seq"] = len(frames)
            header["resync"] = False
            frames.append({"header": header, "data": _b64(data)})
    header, data = history.build(full=True, details=list(history.details))
    header["seq"] = len(frames) - 1
    expected = {}
    for key, s in history.series.items():
        index, raw = encode(s.payload(0))
        expected[key] = {"index": index, "data": _b64(raw), "count": s.count, "rev": s.rev}
    return {"frames": frames, "snapshot": {"header": header, "data": _b64(data)}, "expected": expected}


def render() -> str:
    return json.dumps(build_fixture(), indent=1, sort_keys=True) + "\n"


if __name__ == "__main__":
    FIXTURE.write_text(render())
    print(f"wrote {FIXTURE}")
