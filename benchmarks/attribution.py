"""Cost of hiddenwidgets.attribute over calling Captum directly, and of the CAMs against a direct implementation.

    python benchmarks/attribution.py [--repeats 5] [--batch 8] [--sizes 28 224] [--methods ...] [--threads 1]
                                     [--clock cpu]

Prints one JSON object per method and input size: ``method``, ``input_shape``, ``ms_per_input`` (through
``hw.attribute``), ``captum_ms_per_input`` (the same Captum class, arguments and defaults, called directly; for
CAMs a direct vectorised Grad-CAM-style implementation: one forward, one backward) and ``ratio``. Medians of
``--repeats`` alternating runs with explicit targets (no prediction pass).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from functools import partial

import torch
import torch.nn.functional as F
from _timing import timed
from torch import nn

import hiddenwidgets as hw
from hiddenwidgets.methods import METHODS
from hiddenwidgets.methods.captum_methods import CaptumMethod

warnings.filterwarnings("ignore")


def cnn(channels: int, size: int) -> nn.Module:
    stride = 1 if size <= 32 else 2
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(channels, 16, 3, stride=stride, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=stride, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=stride, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)).eval()


def direct_captum(method: type[CaptumMethod], model: nn.Module, x: torch.Tensor, target: torch.Tensor, layer):
    import captum.attr as ca

    cls = getattr(ca, method.captum_class)
    algo = cls(model, layer) if method.needs_layer else cls(model)
    kwargs = method().defaults((x,))
    if method.noise_tunnel:
        algo = ca.NoiseTunnel(algo)
        kwargs = {"nt_type": method.noise_tunnel, "nt_samples": 10, "stdevs": 0.15, **kwargs}
    if method.captum_class != "LayerActivation":
        kwargs["target"] = target
    out = algo.attribute(x, **kwargs)
    if method.layer_map:  # the same upsampling to the input that attribute() does
        out = ca.LayerAttribution.interpolate(out.sum(1, keepdim=True), x.shape[2:], "bilinear")
    return out


def direct_grad_cam(model: nn.Module, x: torch.Tensor, target: torch.Tensor, layer: nn.Module) -> torch.Tensor:
    store = {}
    h = layer.register_forward_hook(lambda m, a, o: store.__setitem__("a", o))
    try:
        score = model(x).gather(1, target[:, None]).sum()
    finally:
        h.remove()
    g = torch.autograd.grad(score, store["a"])[0]
    cam = F.relu((g.mean((2, 3), keepdim=True) * store["a"]).sum(1, keepdim=True))
    return F.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False).squeeze(1)


CLOCK = time.perf_counter


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--sizes", type=int, nargs="+", default=[28, 224])
    ap.add_argument("--methods", nargs="*", default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (both sides alike; 1 cuts the "
                    "noise on a shared machine)")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="cpu: this process's CPU time "
                    "(time.process_time), not the time spent waiting for a core of a busy machine; with --threads 1")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.clock == "cpu":
        global CLOCK
        CLOCK = time.process_time
    for size in a.sizes:
        channels = 1 if size <= 32 else 3
        model = cnn(channels, size)
        x = torch.randn(a.batch, channels, size, size, generator=torch.Generator().manual_seed(0))
        target = torch.arange(a.batch) % 10
        layer_name, layer = "4", model[4]
        for name, method in METHODS.items():
            if a.methods and name not in a.methods:
                continue
            if name == "lrp":
                continue  # no LRP rule for AdaptiveAvgPool2d/Flatten in this model
            ours = partial(hw.attribute, model, x, name, target, layer=layer_name if method.needs_layer else None)
            if issubclass(method, CaptumMethod):
                theirs, ref = partial(direct_captum, method, model, x, target, layer), "captum"
            elif name == "grad_cam":
                theirs, ref = partial(direct_grad_cam, model, x, target, layer), "direct Grad-CAM"
            else:
                theirs, ref = None, None
            ours()
            if theirs:
                theirs()
            t_ours, t_ref = [], []
            for r in range(a.repeats):
                pair = [("ours", ours), ("ref", theirs)] if r % 2 == 0 else [("ref", theirs), ("ours", ours)]
                for who, fn in pair:
                    if fn is None:
                        continue
                    (t_ours if who == "ours" else t_ref).append(timed(fn, 0.25, CLOCK))
            row = {"method": name, "input_shape": list(x.shape[1:]),
                   "ms_per_input": round(1000 * statistics.median(t_ours) / a.batch, 3)}
            if t_ref:
                row.update(captum_ms_per_input=round(1000 * statistics.median(t_ref) / a.batch, 3), reference=ref,
                           ratio=round(statistics.median(t_ours) / statistics.median(t_ref), 3))
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
