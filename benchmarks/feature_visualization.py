"""Feature visualisation: optimisation speed beside a plain torch loop, data set examples' throughput and memory,
and what 100 visualisations leave behind.

    python benchmarks/feature_visualization.py [--steps 512] [--repeats 3] [--threads 1] [--skip-resnet]
        [--mnist ../shared/data/mnist]

Prints JSON lines:
- ``optimize_small_cnn_128`` and ``optimize_resnet18_224``: steps per second over ``--steps`` steps of one
  128×128 (small CNN) or 224×224 (ResNet-18 from transformers' ResNetConfig, random weights) image, objective
  ``channel(layer, 0)`` on a middle layer, default parameterisation (Fourier, ImageNet colour decorrelation) and
  default transforms; side by side, alternating, ``--repeats`` times (median): the package with and without
  ``stop_early``, the package with a ``progress`` callback (the images copied to the CPU every step, as a view
  would), and the same objective through a plain torch loop written here without the package (same
  parameterisation, transforms, Adam, full forward pass, ``torch.autograd.grad``). ``ratio`` = package seconds /
  plain seconds (goal <= 1.10).
- ``lucent``: Lucent (torch-lucent) on the same model, or why it was skipped.
- ``dataset_examples_mnist``: images per second of :func:`dataset_examples` over the 10,000 MNIST test images
  (top-9 and bottom-9 of all 32 channels of a conv layer), and each run's peak resident memory (VmHWM of a fresh
  process per size, the images streamed from the uint8 file contents) for 2,500, 10,000 and 40,000 images (MNIST
  repeated), beside collecting every example's per-channel maximum and calling ``torch.topk`` once (no
  positions, no images kept).
- ``forward_after_100_visualizations``: the model's forward time before and after 100 visualisations (median of
  200 calls each) and the hook dictionaries' sizes.
- ``shapes_10k_64``: seconds to generate ``hiddenwidgets.datasets.shapes(10_000, 64)``.
- ``atlas_frames_fps12`` / ``atlas_frames_fps30``: the UnitAtlas view's live frames per second of optimisation
  (see :func:`atlas_frames_row`).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from hiddenwidgets.analysis import featurevis as fv
from hiddenwidgets.analysis.featurevis import objectives as obj

ROOT = Path(__file__).resolve().parents[1]


def emit(row: dict) -> None:
    print(json.dumps(row), flush=True)


# ------------------------------------------------------------------------------------------------------------------
# models
def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(3, 32, 3, padding=1)), ("relu1", nn.ReLU()),
        ("conv2", nn.Conv2d(32, 64, 3, stride=2, padding=1)), ("relu2", nn.ReLU()),
        ("conv3", nn.Conv2d(64, 64, 3, stride=2, padding=1)), ("relu3", nn.ReLU()),
        ("conv4", nn.Conv2d(64, 128, 3, stride=2, padding=1)), ("relu4", nn.ReLU()),
        ("pool", nn.AdaptiveAvgPool2d(1)), ("flat", nn.Flatten()), ("fc", nn.Linear(128, 10)),
    ]))


def resnet18() -> nn.Module:
    from transformers import ResNetConfig, ResNetForImageClassification

    torch.manual_seed(0)
    config = ResNetConfig(num_channels=3, embedding_size=64, hidden_sizes=[64, 128, 256, 512], depths=[2, 2, 2, 2],
                          layer_type="basic", hidden_act="relu", num_labels=1000)
    return ResNetForImageClassification(config).eval()


def mnist_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 32, 3)), ("relu1", nn.ReLU()), ("conv2", nn.Conv2d(32, 32, 3)), ("relu2", nn.ReLU()),
        ("pool", nn.MaxPool2d(2)), ("flat", nn.Flatten()), ("fc", nn.Linear(32 * 12 * 12, 10)),
    ]))


# ------------------------------------------------------------------------------------------------------------------
# the plain loop: the same objective, parameterisation and transforms, written without the package
IMAGENET_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=torch.float64)


def plain_loop(model: nn.Module, layer: str, size: int, steps: int, seed: int = 0) -> float:
    g = torch.Generator().manual_seed(seed)
    fy = torch.fft.fftfreq(size, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(size, dtype=torch.float64)[None, :]
    scale = 1 / torch.sqrt(fx * fx + fy * fy).clamp(min=1 / size)
    scale = (scale / scale.pow(2).mean().sqrt()).float()
    colour = (IMAGENET_SQRT / IMAGENET_SQRT.norm(dim=0).max()).float()
    spectrum = (torch.randn((1, 3, size, size // 2 + 1, 2), generator=g, dtype=torch.float64) * 0.01).float()
    spectrum.requires_grad_(True)
    opt = torch.optim.Adam([spectrum], lr=0.05, maximize=True)
    pad, jit = max(1, round(size / 14)), max(1, round(size / 16))
    scales = [1 + (i - 5) / 50 for i in range(11)] if size >= 128 else [0.95, 0.975, 1.0, 1.025, 1.05]
    angles = list(range(-10, 11)) if size >= 128 else list(range(-5, 6))
    module = dict(model.named_modules())[layer]
    store = {}
    handle = module.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))

    def affine(x, theta):
        t = torch.tensor(theta, dtype=x.dtype).expand(1, 2, 3)
        grid = F.affine_grid(t, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    t0 = time.perf_counter()
    try:
        for _ in range(steps):
            z = torch.fft.irfft2(torch.view_as_complex(spectrum) * scale, s=(size, size), norm="ortho")
            img = torch.sigmoid(torch.einsum("cd,ndhw->nchw", colour, z))
            x = F.pad(img, (pad,) * 4, value=0.5)
            dy, dx = (int(v) for v in torch.randint(0, 2 * jit + 1, (2,), generator=g))
            h = x.shape[-1]
            x = F.pad(x, (jit,) * 4, mode="reflect")[..., dy:dy + h, dx:dx + h]
            s = scales[int(torch.randint(len(scales), (1,), generator=g))]
            if s != 1:
                x = affine(x, [[1 / s, 0, 0], [0, 1 / s, 0]])
            a = math.radians(angles[int(torch.randint(len(angles), (1,), generator=g))])
            if a != 0:
                x = affine(x, [[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0]])
            x = x[..., pad:pad + size, pad:pad + size]
            model(x)
            value = store["a"][:, 0].mean()
            (grad,) = torch.autograd.grad(value, [spectrum])
            spectrum.grad = grad
            opt.step()
    finally:
        handle.remove()
    return time.perf_counter() - t0


def package_loop(model: nn.Module, layer: str, size: int, steps: int, **kw) -> float:
    t0 = time.perf_counter()
    fv.visualize(model, obj.channel(layer, 0), shape=(3, size, size), steps=steps, seed=0, **kw)
    return time.perf_counter() - t0


def optimisation_row(name: str, model: nn.Module, layer: str, size: int, steps: int, repeats: int) -> dict:
    variants = {
        "plain": lambda: plain_loop(model, layer, size, steps),
        "package": lambda: package_loop(model, layer, size, steps),
        "package_no_stop_early": lambda: package_loop(model, layer, size, steps, stop_early=False),
        "package_with_progress": lambda: package_loop(model, layer, size, steps, progress=lambda *a: None),
    }
    for fn in variants.values():  # warm-up (lazy imports, allocator)
        plain_loop(model, layer, size, 3) if fn is variants["plain"] else package_loop(model, layer, size, 3)
    times: dict[str, list[float]] = {k: [] for k in variants}
    for r in range(repeats):
        order = list(variants) if r % 2 == 0 else list(reversed(variants))
        for k in order:
            times[k].append(variants[k]())
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"name": name, "steps": steps, "size": size, "layer": layer, "repeats": repeats,
            "threads": torch.get_num_threads(),
            "steps_per_s": {k: round(steps / v, 3) for k, v in med.items()},
            "ratio": round(med["package"] / med["plain"], 3),
            "ratio_no_stop_early": round(med["package_no_stop_early"] / med["plain"], 3),
            "ratio_with_progress": round(med["package_with_progress"] / med["plain"], 3),
            "seconds": {k: [round(t, 2) for t in v] for k, v in times.items()}}


def lucent_row(path: str | None) -> dict:
    if path:
        sys.path.insert(0, path)
    try:
        import lucent.optvis.render  # noqa: F401
    except ImportError as err:
        return {"name": "lucent", "skipped": f"lucent.optvis does not import: {err}. torch-lucent 0.1.8 imports "
                "torchvision.transforms.Normalize in lucent/optvis/transform.py (and needs kornia<=0.4.1); "
                "torchvision does not work here"}
    return {"name": "lucent", "skipped": "lucent imports, but this script has no Lucent runner yet"}


# ------------------------------------------------------------------------------------------------------------------
# data set examples: throughput and memory
def mnist_uint8(path: Path) -> torch.Tensor:
    with gzip.open(path / "t10k-images-idx3-ubyte.gz") as f:
        return torch.frombuffer(bytearray(f.read()[16:]), dtype=torch.uint8).reshape(-1, 1, 28, 28)


class Streamed(torch.utils.data.IterableDataset):
    """``n`` images from the uint8 MNIST array (repeated as needed), converted to float one batch at a time."""

    def __init__(self, raw: torch.Tensor, n: int, batch: int = 256):
        self.raw, self.n, self.batch = raw, n, batch

    def __iter__(self):
        for s in range(0, self.n, self.batch):
            idx = torch.arange(s, min(s + self.batch, self.n)) % len(self.raw)
            yield self.raw[idx].float().div(255)


def child(mode: str, n: int, mnist: Path) -> None:
    torch.set_num_threads(1)
    model = mnist_cnn()
    raw = mnist_uint8(mnist)
    loader = torch.utils.data.DataLoader(Streamed(raw, n), batch_size=None)
    t0 = time.perf_counter()
    if mode == "stream":
        fv.dataset_examples(model, loader, "conv2", k=9)
    else:  # collect every activation, then torch.topk
        acts = []
        h = model.conv2.register_forward_hook(lambda m, i, o: acts.append(o.detach().amax(dim=(2, 3))))
        with torch.no_grad():
            for x in loader:
                model(x)
        h.remove()
        torch.cat(acts).topk(9, dim=0)
    seconds = time.perf_counter() - t0
    print(json.dumps({"n": n, "seconds": seconds, "peak_rss_mb": peak_rss_mb()}))


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM). Not getrusage's ru_maxrss, which a child started by fork and
    exec inherits from its parent."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def dataset_examples_row(mnist: Path) -> dict:
    runs = {}
    for mode, sizes in (("stream", (2_500, 10_000, 40_000)), ("collect_then_topk", (10_000, 40_000))):
        for n in sizes:
            out = subprocess.run([sys.executable, __file__, "--child", mode, str(n), "--mnist", str(mnist)],
                                 capture_output=True, text=True, check=True)
            runs[f"{mode}_{n}"] = json.loads(out.stdout.strip().splitlines()[-1])
    stream10 = runs["stream_10000"]
    return {"name": "dataset_examples_mnist", "layer": "conv2 (32 channels, 24×24)", "k": 9, "threads": 1,
            "images_per_s_10k": round(10_000 / stream10["seconds"], 1),
            "peak_rss_mb": {k: round(v["peak_rss_mb"], 1) for k, v in runs.items()},
            "seconds": {k: round(v["seconds"], 2) for k, v in runs.items()}}


# ------------------------------------------------------------------------------------------------------------------
def forward_row() -> dict:
    """The forward time of a model after 100 visualisations beside an untouched copy, timed alternately."""
    import copy

    model = small_cnn()
    control = copy.deepcopy(model)
    x = torch.rand((8, 3, 64, 64), generator=torch.Generator().manual_seed(0))

    def hooks(m: nn.Module) -> int:
        return sum(len(v) for mod in m.modules() for k, v in vars(mod).items() if "hook" in k and isinstance(v, dict))

    t0 = time.perf_counter()
    for i in range(100):
        fv.visualize(model, obj.channel("conv3", i % 64), shape=(3, 64, 64), steps=2, seed=i)
    per_call = (time.perf_counter() - t0) / 100
    times: dict[str, list[float]] = {"visualised": [], "untouched": []}
    with torch.no_grad():
        for i in range(400):
            name = ("visualised", "untouched")[i % 2]
            m = model if name == "visualised" else control
            t = time.perf_counter()
            m(x)
            times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v[10:]) * 1e3 for k, v in times.items()}
    return {"name": "forward_after_100_visualizations", "forward_ms_visualised": round(med["visualised"], 3),
            "forward_ms_untouched_copy": round(med["untouched"], 3),
            "ratio": round(med["visualised"] / med["untouched"], 3),
            "hooks_visualised": hooks(model), "hooks_untouched": hooks(control),
            "seconds_per_2_step_visualization_64px": round(per_call, 4)}


def shapes_row() -> dict:
    from hiddenwidgets.datasets import shapes

    shapes(100, 64)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        shapes(10_000, 64, seed=0)
        times.append(time.perf_counter() - t0)
    return {"name": "shapes_10k_64", "seconds_median": round(statistics.median(times), 3),
            "seconds": [round(t, 3) for t in times], "threads": torch.get_num_threads()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--resnet-repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (1: the machine is shared)")
    p.add_argument("--skip-resnet", action="store_true")
    p.add_argument("--only", default="", help="comma-separated row names to run")
    p.add_argument("--mnist", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    p.add_argument("--lucent-path", default=None,
                   help="a folder holding torch-lucent, e.g. from pip install --target DIR torch-lucent --no-deps")
    p.add_argument("--child", nargs=2, metavar=("MODE", "N"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.mnist)
        return
    torch.set_num_threads(args.threads)
    only = set(filter(None, args.only.split(",")))

    def want(name: str) -> bool:
        return not only or name in only

    if want("shapes_10k_64"):
        emit(shapes_row())
    if want("forward_after_100_visualizations"):
        emit(forward_row())
    if want("dataset_examples_mnist"):
        emit(dataset_examples_row(args.mnist))
    if want("lucent"):
        emit(lucent_row(args.lucent_path))
    if want("optimize_small_cnn_128"):
        emit(optimisation_row("optimize_small_cnn_128", small_cnn(), "conv3", 128, args.steps, args.repeats))
    if want("optimize_resnet18_224") and not args.skip_resnet:
        emit(optimisation_row("optimize_resnet18_224", resnet18(), "resnet.encoder.stages.2", 224, args.steps,
                              args.resnet_repeats))
    if want("atlas_frames"):
        for fps in (12, 30):
            emit(atlas_frames_row(fps, args.steps // 2, args.repeats))


# ------------------------------------------------------------------------------------------------------------------
# the UnitAtlas view (appended with the view)
def atlas_frames_row(fps: int, steps: int, repeats: int) -> dict:
    """``atlas_frames_fps{fps}``: live frames the UnitAtlas produces per second of optimisation (small CNN, 64×64,
    a page of 12 units of ``relu3`` optimised together, ``steps`` steps), each page computed anew (``repeats``
    pages, median), beside ``featurevis.visualize`` of the same objective without a progress callback: ``ratio``
    = atlas seconds / plain seconds (the cost of copying, encoding and throttling frames). The atlas is not
    displayed, so this is what Python produces and would send; what Chromium receives is measured by
    tests/e2e/test_unit_atlas.py (``artifacts/e2e_unit_atlas.json``, included as ``browser`` when present)."""
    from hiddenwidgets.pipeline.transport import encode
    from hiddenwidgets.widgets import UnitAtlas
    from hiddenwidgets.widgets.unit_atlas import to_uint8

    model = small_cnn()
    images = hw_shapes_images(240, 64)
    atlas = UnitAtlas(model, images, "relu3", steps=steps, page_size=12, fps=fps)
    atlas.wait()  # page 0: warm-up (lazy imports, the examples' pass)
    rates, atlas_s, plain_s = [], [], []
    for page in range(1, 1 + repeats):
        sent, seconds = atlas.frames_sent, atlas.optimising_seconds
        atlas.show(page=page)
        rates.append((atlas.frames_sent - sent) / (atlas.optimising_seconds - seconds))
        atlas_s.append(atlas.optimising_seconds - seconds)
        units = list(range(12 * page, 12 * page + 12))
        t0 = time.perf_counter()
        fv.visualize(model, obj.channels("relu3", units), shape=(3, 64, 64), steps=steps, seed=0,
                     decorrelate=atlas._decorrelation)
        plain_s.append(time.perf_counter() - t0)
    _, frame = encode({"images": to_uint8(torch.rand(12, 3, 64, 64))})
    atlas.close()
    row = {"name": f"atlas_frames_fps{fps}", "fps_setting": fps, "steps": steps, "units_per_page": 12,
           "frames_per_s_median": round(statistics.median(rates), 2), "frames_per_s": [round(r, 2) for r in rates],
           "steps_per_s_atlas": round(steps / statistics.median(atlas_s), 2),
           "steps_per_s_plain": round(steps / statistics.median(plain_s), 2),
           "ratio": round(statistics.median(atlas_s) / statistics.median(plain_s), 3),
           "frame_bytes": len(frame), "frames_skipped_by_budget": atlas.frames_skipped,
           "threads": torch.get_num_threads()}
    browser = ROOT / "artifacts" / "e2e_unit_atlas.json"
    if browser.exists():
        row["browser"] = json.loads(browser.read_text())
    return row


def hw_shapes_images(n: int, size: int) -> torch.Tensor:
    from hiddenwidgets.datasets import shapes

    return shapes(n, size, seed=0).images


if __name__ == "__main__":
    main()
