"""Run directories: what recording to disk costs, measured side by side, and which wrappers fire hooks.

    python benchmarks/rundir.py [--repeats 3] [--only overhead|bytes|ddp|hooks|recorders|latency]

- ``overhead``: the models and loops of ``benchmarks/overhead.py``, each run plain, with a monitor (live
  streaming, no browser) and with a monitor that also writes a run directory (``logdir=``), in rotating order,
  ``--repeats`` times; medians and the medians of the per-round ratios.
- ``bytes``: bytes on disk per 1,000 steps (and per second: frames go to disk at the monitor's frame rate, so
  size follows wall time, not steps) for the MLP loop, and the bound kept for long runs.
- ``ddp``: two gloo ranks on CPU training the MLP (DDP), plain and recording each rank's run directory, in
  alternating order; seconds per step on rank 0 and the ratio.
- ``hooks``: which wrappers deliver the monitor's hooks (samples recorded of 4 steps): DDP, FSDP (FSDP2's
  ``fully_shard`` on one gloo rank; FSDP1 needs an accelerator), ``torch.compile`` before and after the monitor.
- ``recorders``: what writing the information-plane and representation recorders' records costs: their
  ``end_epoch`` on the digits MLP (activations of all 1,797 digits, three layers) with and without ``logdir=``,
  alternating, ``--repeats`` rounds of 10 epochs each; medians, the ratio, bytes per recorded epoch, and the
  writer thread's time per epoch (checksums, write, fsync), which ``end_epoch`` does not wait for.
- ``latency``: from a frame record written by a script (its timestamp in the record) to that step drawn by a view
  following the run in JupyterLab + Chromium (a MutationObserver on the view's ``data-step``, timed at the next
  animation frame); p50/p95 over the steps drawn, at the follower's default ``poll`` (0.3 s) and at 0.1 s. Needs
  JupyterLab, Playwright and Chromium (as the browser tests).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

import hiddenwidgets as hw

sys.path.insert(0, str(Path(__file__).resolve().parent))
import overhead

MODES = ("plain", "live", "disk")


def run(make, x, y, steps: int, batch: int, mode: str, logdir: Path | None) -> float:
    torch.manual_seed(0)
    model = make()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    layers = ["conv1", "conv2", "fc1"] if "conv1" in dict(model.named_modules()) else ["fc1", "fc2", "fc3"]
    monitor = None
    if mode != "plain":
        monitor = hw.ActivationMonitor(model, layers, logdir=logdir if mode == "disk" else None)
    g = torch.Generator().manual_seed(1)
    order = torch.randint(0, len(x), (steps, batch), generator=g)
    t0 = time.perf_counter()
    for i in range(steps):
        idx = order[i]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if monitor is not None:
            monitor.step(loss=loss)
    seconds = time.perf_counter() - t0
    if monitor is not None:
        monitor.close()
    return seconds


def measure_overhead(name, make, data, steps, batch, repeats) -> dict:
    x, y, source = data
    tmp = Path(tempfile.mkdtemp())
    for mode in MODES:  # warm up every path
        run(make, x, y, min(steps, 20), batch, mode, tmp / f"warm-{mode}")
    times: dict[str, list[float]] = {m: [] for m in MODES}
    for r in range(repeats):
        order = MODES[r % 3:] + MODES[: r % 3]  # rotate which goes first
        for mode in order:
            times[mode].append(run(make, x, y, steps, batch, mode, tmp / f"run{r}"))
    ratio = {f"{a}/{b}": round(statistics.median(ta / tb for ta, tb in zip(times[a], times[b], strict=True)), 4)
             for a, b in (("live", "plain"), ("disk", "plain"), ("disk", "live"))}
    return {"figure": "overhead", "model": name, "data": source, "steps": steps, "batch": batch,
            "repeats": repeats, **{f"{m}_s": round(statistics.median(t), 4) for m, t in times.items()},
            "ratios": ratio, "all": {m: [round(v, 3) for v in t] for m, t in times.items()}}


def measure_bytes(steps: int) -> dict:
    from hiddenwidgets.pipeline import rundir

    x, y, _ = overhead.digits()
    path = Path(tempfile.mkdtemp()) / "run"
    seconds = run(overhead.mlp, x, y, steps, 32, "disk", path)
    size = sum(p.stat().st_size for p in path.iterdir())
    return {"figure": "bytes", "model": "mlp-digits", "layers": 3, "steps": steps, "seconds": round(seconds, 2),
            "bytes": size, "bytes_per_1000_steps": round(size * 1000 / steps),
            "bytes_per_second": round(size / seconds), "fps": 15,
            "bound_bytes": rundir.KEEP_SEGMENTS * rundir.SEGMENT_BYTES,
            "note": "frames reach the disk at the monitor's frame rate, so size grows with wall time; past "
                    "SEGMENT_BYTES a segment starts with a snapshot and all but KEEP_SEGMENTS are deleted"}


def _ddp_rank(rank: int, world: int, init: str, steps: int, repeats: int, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
    x, y, _ = overhead.digits()
    tmp = Path(out).parent
    times: dict[str, list[float]] = {"plain": [], "disk": []}
    for r in range(repeats + 1):
        for mode in (("plain", "disk") if r % 2 else ("disk", "plain")):
            torch.manual_seed(0)
            model = torch.nn.parallel.DistributedDataParallel(overhead.mlp())
            opt = torch.optim.SGD(model.parameters(), lr=0.05)
            rec = hw.ActivationRecorder(model, ["fc1", "fc2", "fc3"], logdir=tmp / f"r{r}{mode}" / f"rank{rank}") \
                if mode == "disk" else None
            g = torch.Generator().manual_seed(1 + rank)
            order = torch.randint(0, len(x), (steps, 32), generator=g)
            dist.barrier()
            t0 = time.perf_counter()
            for i in range(steps):
                loss = F.cross_entropy(model(x[order[i]]), y[order[i]])
                opt.zero_grad()
                loss.backward()
                opt.step()
                if rec is not None:
                    rec.step(loss=loss)
            dist.barrier()
            seconds = time.perf_counter() - t0
            if rec is not None:
                rec.close()
            if r:  # round 0 warms up
                times[mode].append(seconds)
    if rank == 0:
        Path(out).write_text(json.dumps(times))
    dist.destroy_process_group()


def measure_ddp(steps: int, repeats: int) -> dict:
    import torch.multiprocessing as mp

    tmp = Path(tempfile.mkdtemp())
    out = tmp / "times.json"
    mp.spawn(_ddp_rank, args=(2, str(tmp / "init"), steps, repeats, str(out)), nprocs=2, join=True)
    times = json.loads(out.read_text())
    ratios = [d / p for d, p in zip(times["disk"], times["plain"], strict=True)]
    return {"figure": "ddp", "ranks": 2, "backend": "gloo", "model": "mlp-digits", "steps": steps,
            "repeats": repeats, "ms_per_step_plain": round(1000 * statistics.median(times["plain"]) / steps, 3),
            "ms_per_step_disk": round(1000 * statistics.median(times["disk"]) / steps, 3),
            "ratio_disk/plain": round(statistics.median(ratios), 4), "ratios": [round(r, 3) for r in ratios]}


def _tiny():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.ReLU(), torch.nn.Linear(12, 3))


def _samples(model, forward, layers=("0", "2"), steps=4) -> dict:
    rec = hw.ActivationRecorder(model, list(layers), every=1)
    for _ in range(steps):
        forward(torch.randn(8, 6)).pow(2).mean().backward()
        rec.step()
    rec.close()
    return {n: f"{rec.history.layer(n).samples}/{steps} ({rec.status()[n]['state']})" for n in layers}


def measure_hooks() -> dict:
    import torch.distributed as dist

    warnings.simplefilter("ignore")
    out: dict[str, object] = {"figure": "hooks"}
    m = _tiny()
    rec_first = {}
    rec = hw.ActivationRecorder(m, ["0", "2"], every=1)
    compiled = torch.compile(m)
    for _ in range(4):
        compiled(torch.randn(8, 6)).pow(2).mean().backward()
        rec.step()
    rec.close()
    rec_first = {n: f"{rec.history.layer(n).samples}/4 ({rec.status()[n]['state']})" for n in ("0", "2")}
    out["torch.compile, monitor created first"] = rec_first
    torch.compiler.reset()
    m = _tiny()
    compiled = torch.compile(m)
    compiled(torch.randn(8, 6))
    out["torch.compile, compiled and run before the monitor"] = _samples(m, compiled)
    torch.compiler.reset()
    dist.init_process_group("gloo", init_method=f"file://{tempfile.mktemp()}", rank=0, world_size=1)
    try:
        m = torch.nn.parallel.DistributedDataParallel(_tiny())
        out["DDP (gloo)"] = _samples(m, m)
        from torch.distributed.fsdp import fully_shard

        m = _tiny()
        fully_shard(m[0])
        fully_shard(m)
        out["FSDP2 fully_shard (gloo, CPU, 1 rank)"] = _samples(m, m)
        try:
            from torch.distributed.fsdp import FullyShardedDataParallel

            m = FullyShardedDataParallel(_tiny())
            out["FSDP1 FullyShardedDataParallel"] = _samples(m, m)
        except Exception as err:
            out["FSDP1 FullyShardedDataParallel"] = f"not measured: {type(err).__name__}: {err}"
    finally:
        dist.destroy_process_group()
    return out


def _end_epochs(recorder, epochs: int) -> list[float]:
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        recorder.end_epoch()
        times.append(time.perf_counter() - t0)
    return times


def measure_recorders(repeats: int, epochs: int = 10) -> list[dict]:
    x, y, _ = overhead.digits()
    tmp = Path(tempfile.mkdtemp())
    torch.manual_seed(0)
    model = overhead.mlp()
    layers = ["fc1", "fc2", "fc3"]
    out = []
    for kind in ("information", "representations"):
        times: dict[str, list[float]] = {"memory": [], "disk": []}
        drained: dict[str, list[float]] = {"memory": [], "disk": []}
        size = 0
        for r in range(repeats + 1):
            for mode in (("memory", "disk") if r % 2 else ("disk", "memory")):
                logdir = tmp / f"{kind}-{r}" if mode == "disk" else None
                if kind == "information":
                    rec = hw.InformationRecorder(model, layers, x, y, epochs=range(epochs), logdir=logdir)
                else:
                    rec = hw.RepresentationRecorder(model, layers, x, logdir=logdir)
                t = _end_epochs(rec, epochs)
                t0 = time.perf_counter()
                rec.close()  # waits for the writer's thread: what end_epoch did not wait for
                if r:
                    drained[mode].append((time.perf_counter() - t0) / epochs)
                if r:  # round 0 warms up
                    times[mode].append(statistics.median(t))
                if logdir is not None:
                    size = (logdir / f"{kind}.tfrecord").stat().st_size
        out.append({"figure": "recorders", "recorder": kind, "model": "mlp-digits", "examples": len(x),
                    "layers": layers, "epochs_per_round": epochs, "repeats": repeats,
                    "ms_per_end_epoch_memory": round(1000 * statistics.median(times["memory"]), 3),
                    "ms_per_end_epoch_disk": round(1000 * statistics.median(times["disk"]), 3),
                    "ratio_disk/memory": round(statistics.median(times["disk"]) / statistics.median(times["memory"]),
                                               4),
                    "ms_per_epoch_left_to_the_writer_thread_at_close": round(
                        1000 * statistics.median(drained["disk"]), 3),
                    "bytes_per_epoch": round(size / epochs),
                    "note": "end_epoch hands the record to the run writer's thread (checksums, write, fsync); the "
                            "last column is close()'s wait divided by the epochs: the writer's backlog when epochs "
                            "come back to back, as here"})
    return out


LATENCY_WRITER = """
import pathlib, sys, time, torch, hiddenwidgets as hw
run, seconds = sys.argv[1], float(sys.argv[2])
torch.set_num_threads(1)
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.ReLU(), torch.nn.Linear(12, 3))
opt = torch.optim.SGD(model.parameters(), lr=0.05)
with hw.ActivationRecorder(model, ["0", "2"], logdir=run, every=1) as rec:
    while not pathlib.Path(run + ".go").exists():  # the view is up and watched: go
        time.sleep(0.02)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        loss = model(torch.randn(16, 6)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        rec.step(loss=loss)
        time.sleep(0.05)  # about 20 steps a second: most frames carry one new step
"""

DRAWN = """() => { window.__drawn = []; const el = document.querySelector('.hw-am');
  new MutationObserver(() => { const s = Number(el.dataset.step);
    requestAnimationFrame(() => window.__drawn.push([s, Date.now() / 1000])); })
  .observe(el, {attributes: true, attributeFilter: ['data-step']}); }"""


def measure_latency(seconds: float) -> list[dict]:
    import subprocess

    from playwright.sync_api import sync_playwright

    from hiddenwidgets.pipeline import records, rundir

    root_dir = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root_dir))
    from tests.e2e.lab import CHROMIUM, FLAGS, KERNELSPEC, Lab, NotebookPage

    lab = Lab(Path(tempfile.mkdtemp(prefix="hw-latency-")))
    out = []
    try:
        (lab.root / "writer.py").write_text(LATENCY_WRITER)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            for poll in (0.3, 0.1):
                name = f"run{int(poll * 1000)}"
                nb = {"cells": [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                                 "source": "import time, pathlib\nwhile not pathlib.Path('" + name + "/run.json')"
                                 ".exists(): time.sleep(0.05)\nimport hiddenwidgets as hw\n"
                                 f"view = hw.ActivationMonitor.follow('{name}', poll={poll})\nview"}],
                      "metadata": {"kernelspec": KERNELSPEC}, "nbformat": 4, "nbformat_minor": 5}
                (lab.root / f"{name}.ipynb").write_text(json.dumps(nb))
                page = browser.new_page()
                notebook = NotebookPage(page, lab, f"{name}.ipynb", name)
                writer = subprocess.Popen([sys.executable, "writer.py", name, str(seconds)], cwd=lab.root)
                notebook.run_and_wait(0, 120)
                page.wait_for_selector(".hw-am", timeout=60_000)
                page.evaluate(DRAWN)
                (lab.root / f"{name}.go").write_text("")
                writer.wait(seconds + 120)
                time.sleep(1.0)
                drawn = page.evaluate("() => window.__drawn")
                page.close()
                written: dict[int, float] = {}  # step -> when the first frame record carrying it was written
                for seg in rundir._segments(lab.root / name):
                    for payload in records.scan(lab.root / name / rundir._segment_name(seg))[0]:
                        meta, _ = rundir.decode_record(payload)
                        if meta.get("type") == "frame":
                            written.setdefault(meta["header"]["step"], meta["t"])
                lat = sorted(t - written[s] for s, t in drawn if s in written)
                if not lat:
                    out.append({"figure": "latency", "poll_s": poll, "error": "no step drawn"})
                    continue
                out.append({"figure": "latency", "poll_s": poll, "steps_drawn": len(lat),
                            "p50_ms": round(1000 * lat[len(lat) // 2], 1),
                            "p95_ms": round(1000 * lat[min(len(lat) - 1, int(0.95 * len(lat)))], 1),
                            "max_ms": round(1000 * lat[-1], 1), "writer_seconds": seconds,
                            "from": "the frame record's write time (its 't')", "to": "the next animation frame "
                            "after the view's data-step changed (JupyterLab + Chromium, same machine clock)"})
            browser.close()
    finally:
        lab.stop()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", choices=["overhead", "bytes", "ddp", "hooks", "recorders", "latency"])
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every step count (0.1 on a busy machine)")
    a = ap.parse_args()
    n = lambda steps: max(20, int(steps * a.scale))  # noqa: E731
    env = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count()}
    if a.only in (None, "overhead"):
        print(json.dumps({**measure_overhead("mlp-digits", overhead.mlp, overhead.digits(), n(2000), 32, a.repeats),
                          **env}), flush=True)
        print(json.dumps({**measure_overhead("cnn-mnist-28x28", overhead.cnn, overhead.mnist(
            overhead.ROOT.parent / "shared" / "data" / "mnist"), n(150), 64, a.repeats), **env}), flush=True)
    if a.only in (None, "bytes"):
        print(json.dumps({**measure_bytes(n(3000)), **env}), flush=True)
    if a.only in (None, "ddp"):
        print(json.dumps({**measure_ddp(n(500), a.repeats), **env}), flush=True)
    if a.only in (None, "hooks"):
        print(json.dumps({**measure_hooks(), **env}), flush=True)
    if a.only in (None, "recorders"):
        for row in measure_recorders(a.repeats):
            print(json.dumps({**row, **env}), flush=True)
    if a.only in (None, "latency"):
        for row in measure_latency(max(5.0, 30 * a.scale)):
            print(json.dumps({**row, **env}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
