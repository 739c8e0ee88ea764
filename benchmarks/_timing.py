"""What the benchmark scripts share: timers, percentiles and the busy-kernel cell (one copy; the scripts import
it as ``from _timing import ...``, which works because a script's own folder comes first on ``sys.path``)."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable

# a cell that keeps the kernel busy for {busy_s} seconds (the browser benchmarks measure interaction meanwhile)
BUSY_CELL = """
import time as _time
_t0 = _time.time()
print("HWBUSY started", flush=True)
_spin = 0
while _time.time() - _t0 < {busy_s}:
    _spin += 1
"""


def clock(name: str) -> Callable[[], float]:
    """``"wall"``: time.perf_counter; ``"cpu"``: this process's CPU time (time.process_time), which leaves out the
    time spent waiting for a core of a busy machine (use it with one thread)."""
    return time.process_time if name == "cpu" else time.perf_counter


def median_time(fn: Callable[[], object], repeats: int) -> tuple[float, list[float]]:
    """Median wall seconds of ``repeats`` calls of ``fn`` after one warm-up call, and every time."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def timed(fn: Callable[[], object], at_least: float, timer: Callable[[], float] = time.perf_counter) -> float:
    """Seconds per call, calling ``fn`` repeatedly for at least ``at_least`` seconds of ``timer``: calls of a few
    milliseconds are mostly scheduler noise on their own."""
    calls, t0 = 0, timer()
    while True:
        fn()
        calls += 1
        elapsed = timer() - t0
        if elapsed >= at_least:
            return elapsed / calls


def p95(values: list[float]) -> float:
    """The 95th percentile, nearest rank."""
    s = sorted(values)
    return s[max(0, math.ceil(0.95 * len(s)) - 1)]


def latency_summary(values: list[float]) -> dict:
    """median, p95, min, max (one decimal) and n of a list of latencies."""
    return {"median": round(statistics.median(values), 1), "p95": round(p95(values), 1),
            "min": round(min(values), 1), "max": round(max(values), 1), "n": len(values)}
