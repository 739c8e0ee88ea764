"""A training script that records to a run directory, for the follow test: trains until ``<run>.stop`` exists (at
most 120 s), then closes the run and writes its last step to ``<run>.done``."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

import hiddenwidgets as hw

run = Path(sys.argv[1])
torch.set_num_threads(1)
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.ReLU(), torch.nn.Linear(12, 3))
opt = torch.optim.SGD(model.parameters(), lr=0.05)
stop = run.with_suffix(".stop")
deadline = time.monotonic() + 120
with hw.ActivationRecorder(model, ["0", "2"], logdir=run, every=1, fps=10) as rec:
    while not stop.exists() and time.monotonic() < deadline:
        loss = model(torch.randn(16, 6)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        rec.step(loss=loss)
        time.sleep(0.01)
run.with_suffix(".done").write_text(str(rec.history.step))
