"""Writes examples/10_scripts_and_frameworks.ipynb (kept as a script so the notebook's source is reviewable)."""

from notebooks import code, md, write_example

SCRIPT = '''"""DDP (gloo, CPU) on scikit-learn digits; each rank records <run>/rank<r>;
rank 0 also records the information plane (activations on all digits, 8 times) in its run directory."""
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

import hiddenwidgets as hw

run, steps = sys.argv[1], int(sys.argv[2])
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
torch.manual_seed(0)
digits = load_digits()
X = torch.tensor(digits.data, dtype=torch.float32) / 16
y = torch.tensor(digits.target)
model = nn.parallel.DistributedDataParallel(
    nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10)))
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
g = torch.Generator().manual_seed(rank)  # each rank its own batches
epoch = max(steps // 8, 1)  # steps per "epoch" of the information plane
# every=4: all ranks sample the same steps, so their histograms add exactly in the merged view
with hw.ActivationRecorder(model, ["0", "2", "4"], logdir=f"{run}/rank{rank}", every=4) as rec:
    # the same logdir: the information recorder writes through rank 0's run writer
    info = hw.InformationRecorder(model.module, ["0", "2"], X, y, epochs=range(8),
                                  logdir=f"{run}/rank0") if rank == 0 else None
    for step in range(steps):
        idx = torch.randint(0, len(X), (32,), generator=g)
        loss = F.cross_entropy(model(X[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        if info is not None:
            info.step()  # the gradients (all-reduced by DDP) of the recorded layers
        opt.step()
        rec.step(loss=loss)
        if info is not None and (step + 1) % epoch == 0:
            info.end_epoch()
    if info is not None:
        info.close()
dist.destroy_process_group()
'''

cells = [
    md("# Scripts, Lightning, the Hugging Face Trainer and DDP, watched from a notebook\n\n"
       "Real training often runs outside the notebook: a script, a Lightning or Hugging Face `Trainer`, several "
       "processes under `torchrun`. Give the monitor a **run directory** (`logdir=`) and the job appends every "
       "frame the live view would get to it — checksummed TFRecord segments that survive `kill -9` and stay "
       "bounded in size. `hw.ActivationMonitor.follow(path)` shows it here, live while the job writes and as a "
       "replay after it ended, with the same view. This notebook runs on CPU."),
    code("import os\n"
         "import subprocess\n"
         "import sys\n"
         "import time\n"
         "from pathlib import Path\n\n"
         "import torch\n"
         "import torch.nn.functional as F\n"
         "from sklearn.datasets import load_digits\n"
         "from torch import nn\n\n"
         "import hiddenwidgets as hw\n\n"
         "RUNS = Path(\"runs\") / time.strftime(\"%Y%m%d-%H%M%S\")  # a run directory is never overwritten: new "
         "names each time\n"
         "digits = load_digits()\n"
         "X = torch.tensor(digits.data, dtype=torch.float32) / 16\n"
         "y = torch.tensor(digits.target)"),
    md("## A DDP job launched with `torchrun`, followed live\n\n"
       "Two processes (gloo backend, CPU) train one model; **each rank writes its own run directory** "
       "(`rank0`, `rank1`): no collective in `step()`, nothing shared to corrupt, and a rank that dies loses "
       "nothing of the other's. Following the job's directory shows the **merged** picture: per point, the "
       "ranks' histograms add on a common grid (exactly: grids only coarsen by powers of two) and means and "
       "variances pool exactly; following `rank1` alone shows one rank. Rank 0 also runs an "
       "`InformationRecorder` with the same run directory: its records (the layers' activations on the digits, "
       "8 times in the run) go through the same writer, and the followed view shows the **information plane** "
       "below the monitor, computed here from the recorded activations as it would be in the training process."),
    code("Path(\"train_ddp.py\").write_text(\'\'\'" + SCRIPT + "\'\'\')\n"
         "STEPS = os.environ.get(\"HW_EXAMPLE_STEPS\", \"400\")  # the tests run a shorter job\n"
         "job = subprocess.Popen([sys.executable, \"-m\", \"torch.distributed.run\", \"--standalone\",\n"
         "                        \"--nproc-per-node\", \"2\", \"train_ddp.py\", str(RUNS / \"ddp\"), STEPS],\n"
         "                       env={**os.environ, \"OMP_NUM_THREADS\": \"1\"})\n"
         "while len(hw.pipeline.rundir.rank_dirs(RUNS / \"ddp\")) < 2 and job.poll() is None:\n"
         "    time.sleep(0.2)  # until both ranks have started their runs\n"
         "ddp_view = hw.ActivationMonitor.follow(RUNS / \"ddp\", title=\"DDP job, 2 ranks merged\")\n"
         "ddp_view"),
    code("assert job.wait() == 0\n"
         "ddp_view.wait(30)\n"
         "merged = hw.pipeline.rundir.read_ranks(RUNS / \"ddp\")\n"
         "print(f\"merged: step {merged.step}, layer '0' holds {merged.layer('0').samples} rank-samples \"\n"
         "      f\"in {merged.layer('0').count} points\")\n"
         "plane = ddp_view.information_plane  # rank 0's information plane, shown under the monitor view above\n"
         "plane.value_range = \"observed\"  # linear layers: bins over the values seen, not tanh's (-1, 1)\n"
         "print(f\"information plane: epochs {plane.estimates()['epochs']}\")\n"
         "hw.ActivationMonitor.follow(RUNS / \"ddp\" / \"rank1\", title=\"rank 1 alone\")"),
    md("## PyTorch Lightning\n\n"
       "`MonitorCallback` steps the monitor after each optimizer step (after backward, so gradients are in), logs "
       "validation metrics when validation ends, and closes (or, for a monitor you gave it, flushes) at the end "
       "of the fit and on an exception. In the notebook, give it a displayed monitor; in a script, "
       "`MonitorCallback(layers, logdir=...)`."),
    code("import lightning as L\n\n"
         "from hiddenwidgets.integrations.lightning import MonitorCallback as LightningMonitor\n\n\n"
         "class Digits(L.LightningModule):\n"
         "    def __init__(self):\n"
         "        super().__init__()\n"
         "        self.net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))\n\n"
         "    def training_step(self, batch, i):\n"
         "        return F.cross_entropy(self.net(batch[0]), batch[1])\n\n"
         "    def validation_step(self, batch, i):\n"
         "        self.log(\"val_loss\", F.cross_entropy(self.net(batch[0]), batch[1]))\n\n"
         "    def configure_optimizers(self):\n"
         "        return torch.optim.Adam(self.parameters(), lr=1e-3)\n\n\n"
         "torch.manual_seed(0)\n"
         "module = Digits()\n"
         "loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=64, shuffle=True)\n"
         "val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X[:300], y[:300]), batch_size=100)\n"
         "lightning_monitor = hw.ActivationMonitor(module, [\"net.0\", \"net.2\"], title=\"Lightning\")\n"
         "lightning_monitor"),
    code("trainer = L.Trainer(max_epochs=3, accelerator=\"cpu\", logger=False, enable_checkpointing=False,\n"
         "                    enable_progress_bar=False, callbacks=[LightningMonitor(monitor=lightning_monitor)])\n"
         "trainer.fit(module, loader, val)\n"
         "print(f\"recorded {lightning_monitor.history.step} steps; val_loss points: \"\n"
         "      f\"{lightning_monitor.history.scalar('val_loss').samples}\")"),
    md("## The Hugging Face Trainer\n\n"
       "The `TrainerCallback` does the same at `on_step_end`, records what the Trainer logs and its evaluation "
       "metrics. The Trainer has no exception hook, so use the callback as a context manager: a failed run is "
       "closed too. Here it writes a run directory, as it would in a script, and the notebook follows it."),
    code("import transformers\n\n"
         "from hiddenwidgets.integrations.huggingface import MonitorCallback as HFMonitor\n\n\n"
         "class DigitsHF(nn.Module):\n"
         "    def __init__(self):\n"
         "        super().__init__()\n"
         "        self.net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))\n\n"
         "    def forward(self, x, labels=None):\n"
         "        logits = self.net(x)\n"
         "        return {\"loss\": F.cross_entropy(logits, labels), \"logits\": logits}\n\n\n"
         "rows = [{\"x\": X[i], \"labels\": y[i]} for i in range(len(X))]\n"
         "args = transformers.TrainingArguments(output_dir=\"hf-out\", max_steps=60, per_device_train_batch_size=32,\n"
         "                                      learning_rate=1e-2,\n"
         "                                      logging_steps=5, eval_strategy=\"steps\", eval_steps=30,\n"
         "                                      save_strategy=\"no\", report_to=[], use_cpu=True, disable_tqdm=True)\n"
         "torch.manual_seed(0)\n"
         "with HFMonitor([\"net.0\", \"net.2\"], logdir=RUNS / \"hf\") as callback:\n"
         "    transformers.Trainer(model=DigitsHF(), args=args, train_dataset=rows, eval_dataset=rows[:300],\n"
         "                         callbacks=[callback]).train()\n"
         "hw.ActivationMonitor.follow(RUNS / \"hf\", title=\"Hugging Face Trainer, replayed from disk\")"),
    md("## The same numbers in TensorBoard\n\n"
       "`hw.export_tensorboard` writes a run's scalars, layer moments and histograms (raw counts on the layer's "
       "grid) as a TensorBoard event file; `tensorboard --logdir` shows the same numbers."),
    code("event_file = hw.export_tensorboard(RUNS / \"hf\", RUNS / \"tensorboard\")\n"
         "print(f\"wrote {event_file.name} ({event_file.stat().st_size:,} bytes)\")"),
]

write_example(cells, "10_scripts_and_frameworks.ipynb")
