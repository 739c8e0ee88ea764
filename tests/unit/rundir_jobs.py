"""Writer jobs for the run-directory tests, run in child processes (a forkserver that has imported torch once,
so each of the many children that the crash test SIGKILLs starts in milliseconds)."""

from __future__ import annotations

import numpy as np

from hiddenwidgets.pipeline import rundir
from hiddenwidgets.pipeline.summaries import COUNT_FIELDS, MOMENT_FIELDS, HistogramGrid
from hiddenwidgets.pipeline.transport import History

LAYERS = ["a", "b"]


def synthetic_step(h: History, step: int) -> None:
    """Step ``step`` of a deterministic synthetic run: a loss and two layers whose value range drifts (so grids
    widen and histories decimate)."""
    rng = np.random.default_rng(step)
    h.step = step
    h.scalar("loss").add(step, float(rng.normal()))
    for j, name in enumerate(LAYERS):
        x = rng.normal(0, 1 + step / 50 + j, size=64)
        grid = HistogramGrid.around(float(x.min()), float(x.max()), bins=h.bins)
        hist = np.histogram(x, bins=grid.bins, range=(grid.lo, grid.hi))[0].astype(float)
        counts = np.zeros(len(COUNT_FIELDS))
        counts[[COUNT_FIELDS.index(k) for k in ("total", "sampled", "finite")]] = x.size
        moments = np.array([x.mean(), ((x - x.mean()) ** 2).sum(), x.min(), x.max(), 0.0])
        assert len(moments) == len(MOMENT_FIELDS)
        h.layer(name).add(step, counts, moments, hist, grid, float(np.abs(x).mean()))


def synthetic_history(steps: int) -> History:
    h = History(capacity=16, bins=16, layers=list(LAYERS))
    for step in range(1, steps + 1):
        synthetic_step(h, step)
    return h


def write_synthetic(path: str, conn, segment_bytes: int) -> None:
    """Append frames forever; after every 5th, a flush barrier, then tell the parent which step it covers."""
    rundir.SEGMENT_BYTES = segment_bytes
    h = History(capacity=16, bins=16, layers=list(LAYERS))
    writer = rundir.RunWriter(path, h)
    step = 0
    while True:
        step += 1
        synthetic_step(h, step)
        header, data = h.build(full=False)
        writer("frame", header, data)
        if step % 5 == 0:
            writer("flush", {}, b"")
            conn.send(step)


def probe_set():
    """The evaluation set of :func:`train_recorder`'s information and representation recorders."""
    import torch

    x = torch.randn(32, 6, generator=torch.Generator().manual_seed(8))
    return x, (x[:, 0] > 0).long()


def train_recorder(path: str, conn) -> None:
    """A real recorder on a real model, flushing every 10 steps and acknowledging the step after each flush; an
    information recorder (activations every other epoch) and a representation recorder (every epoch) write to
    the same run directory, an "epoch" being 10 steps, flushed before the acknowledgement."""
    import torch

    import hiddenwidgets as hw

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.ReLU(), torch.nn.Linear(12, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    rec = hw.ActivationRecorder(model, ["0", "1"], logdir=path, every=1, history_points=16, fps=60)
    x, y = probe_set()
    info = hw.InformationRecorder(model, ["0", "1"], x, y, epochs=range(0, 10_000, 2), logdir=path)
    reps = hw.RepresentationRecorder(model, ["1"], x, logdir=path)
    step = 0
    while True:
        step += 1
        loss = model(torch.randn(8, 6)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        info.step()
        opt.step()
        rec.step(loss=loss)
        if step % 10 == 0:
            rec.flush()
            info.end_epoch()
            reps.end_epoch()
            info.flush()
            reps.flush()
            conn.send(step)


def train_until_disk_full(path: str, conn, limit: int) -> None:
    """Train with a file-size limit on this process: the run directory's writes fail past it (EFBIG), like a
    full disk. Reports what the training loop saw."""
    import resource
    import signal
    import warnings

    import torch

    import hiddenwidgets as hw

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing us
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.ReLU(), torch.nn.Linear(12, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rec = hw.ActivationRecorder(model, ["0", "1"], logdir=path, every=1, history_points=64, fps=60)
        for _ in range(300):
            loss = model(torch.randn(8, 6)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            rec.step(loss=loss)
            if rec._step % 20 == 0:
                rec.flush()
        rec.close()
    conn.send({"steps": rec._step, "history_step": rec.history.step,
               "stopped": rec.run_writer.stopped,
               "events": [e for e in rec.history.events if e["kind"] == "recording_stopped"],
               "warnings": [str(w.message) for w in caught if "stopped recording" in str(w.message)]})


# -- DDP ---------------------------------------------------------------------------------------------------------
def integer_model():
    """Weights and inputs are small integers: every activation is exact in float32 whatever the batch size or the
    order of the sums, so one process on the whole batch and two ranks on its halves see the same numbers."""
    import torch

    g = torch.Generator().manual_seed(5)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randint(-2, 3, p.shape, generator=g).float())
    return model


def integer_batches(steps: int, rows: int = 16):
    import torch

    g = torch.Generator().manual_seed(6)
    return [torch.randint(-3, 4, (rows, 4), generator=g).float() for _ in range(steps)]


def ddp_rank(rank: int, world: int, init_file: str, logdir: str, steps: int) -> None:
    """One rank of a DDP job (gloo, CPU): its half of each batch, recorded to ``<logdir>/rank<r>``."""
    import torch
    import torch.distributed as dist

    import hiddenwidgets as hw

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        model = torch.nn.parallel.DistributedDataParallel(integer_model())
        with hw.ActivationRecorder(model, ["0", "1", "2"], logdir=f"{logdir}/rank{rank}", every=1) as rec:
            for x in integer_batches(steps):
                half = x.chunk(world)[rank]
                loss = model(half).pow(2).mean()
                loss.backward()  # DDP all-reduces the gradients here (no optimizer: the weights stay exact)
                rec.step(loss=loss)
    finally:
        dist.destroy_process_group()
