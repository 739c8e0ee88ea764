"""Training-time overhead of ActivationMonitor with default settings, measured side by side.

    python benchmarks/overhead.py [--repeats 7] [--mnist ../shared/data/mnist] [--clock cpu] [--threads 1]
                                  [--every N]

For each model, runs the same seeded training loop without and with a monitor on 3 layers, alternating which goes
first, ``--repeats`` times; prints one JSON object per model with the medians and the median of the per-pair
ratios (monitored / plain), plus what the monitor sent. The monitor is not displayed (no browser), so the
numbers cover hooks, summaries, the step() call and the sender thread's work; the socket send is a no-op.

``--clock cpu`` times each run by this process's CPU time (``time.process_time``, every thread's, so the sender
thread's work counts) instead of the wall clock, which on a machine shared with other jobs mostly measures waiting
for a core. ``--threads`` sets torch's threads (both sides alike). ``--every N`` samples every N steps instead of
the adaptive default (``--every 1000000000``: the fixed per-step cost alone).
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import time
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import hiddenwidgets as hw

ROOT = Path(__file__).resolve().parents[1]
CLOCK = time.perf_counter
EVERY = None


def mnist(path: Path, n: int = 10_000):
    images, labels = path / "t10k-images-idx3-ubyte.gz", path / "t10k-labels-idx1-ubyte.gz"
    if not images.exists():
        g = torch.Generator().manual_seed(0)
        return torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g), "synthetic"
    with gzip.open(images) as f:
        x = torch.frombuffer(bytearray(f.read()[16:]), dtype=torch.uint8).reshape(-1, 1, 28, 28)
    with gzip.open(labels) as f:
        y = torch.frombuffer(bytearray(f.read()[8:]), dtype=torch.uint8).long()
    return x.float().div(255), y, "mnist t10k"


def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    return torch.tensor(d.data, dtype=torch.float32) / 16, torch.tensor(d.target), "sklearn digits"


def cnn() -> nn.Module:
    return nn.Sequential(OrderedDict(
        conv1=nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU()),
        conv2=nn.Sequential(nn.Conv2d(32, 64, 3), nn.ReLU()),
        pool=nn.MaxPool2d(2),
        flatten=nn.Flatten(),
        fc1=nn.Sequential(nn.Linear(9216, 128), nn.ReLU()),
        fc2=nn.Linear(128, 10),
    ))


def mlp() -> nn.Module:
    return nn.Sequential(OrderedDict(
        fc1=nn.Sequential(nn.Linear(64, 128), nn.ReLU()),
        fc2=nn.Sequential(nn.Linear(128, 128), nn.ReLU()),
        fc3=nn.Linear(128, 10),
    ))


def run(make, x, y, steps: int, batch: int, monitored: bool, compiled: bool = False) -> tuple[float, dict]:
    torch.manual_seed(0)
    model = make()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    monitor = hw.ActivationMonitor(model, ["conv1", "conv2", "fc1"] if "conv1" in dict(model.named_modules())
                                   else ["fc1", "fc2", "fc3"], every=EVERY) if monitored else None
    forward = model
    g = torch.Generator().manual_seed(1)
    order = torch.randint(0, len(x), (steps, batch), generator=g)
    if compiled:  # the monitor is created first, then the model compiled; compilation is not timed
        torch._dynamo.reset()
        forward = torch.compile(model)
        for i in range(3):
            F.cross_entropy(forward(x[order[i]]), y[order[i]]).backward()
        opt.zero_grad()
    t0 = CLOCK()
    for i in range(steps):
        idx = order[i]
        loss = F.cross_entropy(forward(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if monitor is not None:
            monitor.step(loss=loss)
    if monitor is not None:
        monitor.flush()  # the sender thread's work on these steps is part of their cost
    seconds = CLOCK() - t0
    info = {}
    if monitor is not None:
        monitor.close()
        s = monitor.streamer
        info = {"frames": s.frames_sent,
                "sender_cpu_us_per_step": round(1e6 * s.cpu_seconds / steps, 1), "max_frame_bytes": s.max_frame_bytes,
                "bytes_per_frame": round(s.bytes_sent / max(s.frames_sent, 1)),
                "samples_per_layer": monitor.history.layer(monitor.layers[0]).samples,
                "sample_interval": monitor.recorder._interval}
    return seconds, info


def measure(name: str, make, data, steps: int, batch: int, repeats: int, compiled: bool = False) -> dict:
    x, y, source = data
    run(make, x, y, min(steps, 20), batch, True, compiled)  # warm up both paths
    run(make, x, y, min(steps, 20), batch, False, compiled)
    plain, monitored, ratios, info = [], [], [], {}
    for r in range(repeats):
        first_monitored = r % 2 == 1
        if first_monitored:
            m, info = run(make, x, y, steps, batch, True, compiled)
            p, _ = run(make, x, y, steps, batch, False, compiled)
        else:
            p, _ = run(make, x, y, steps, batch, False, compiled)
            m, info = run(make, x, y, steps, batch, True, compiled)
        plain.append(p)
        monitored.append(m)
        ratios.append(m / p)
    return {"model": name, "data": source, "steps": steps, "batch": batch, "repeats": repeats,
            "plain_s": round(statistics.median(plain), 4), "monitored_s": round(statistics.median(monitored), 4),
            "ratio": round(statistics.median(ratios), 4), "ratios": [round(r, 3) for r in ratios],
            "ms_per_step_plain": round(1000 * statistics.median(plain) / steps, 3), **info}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--mnist", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    ap.add_argument("--only", choices=["cnn", "mlp", "compiled"],
                    help="one row; 'compiled' (torch.compile of the CNN, monitor created first) runs only when asked")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--every", type=int, default=None)
    a = ap.parse_args()
    global CLOCK, EVERY
    if a.clock == "cpu":
        CLOCK = time.process_time
    if a.threads:
        torch.set_num_threads(a.threads)
    EVERY = a.every
    env = {"torch": torch.__version__, "threads": torch.get_num_threads(), "python": sys.version.split()[0],
           "clock": a.clock, "every": a.every}
    if a.only in (None, "cnn"):
        print(json.dumps({**measure("cnn-mnist-28x28", cnn, mnist(a.mnist), 150, 64, a.repeats), **env}), flush=True)
    if a.only in (None, "mlp"):
        print(json.dumps({**measure("mlp-digits", mlp, digits(), 2000, 32, a.repeats), **env}), flush=True)
    if a.only == "compiled":
        print(json.dumps({**measure("cnn-mnist-28x28-compiled", cnn, mnist(a.mnist), 150, 64, a.repeats,
                                    compiled=True), **env}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
