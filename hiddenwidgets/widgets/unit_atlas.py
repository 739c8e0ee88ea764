"""UnitAtlas: a layer's units as a grid of optimised images and data set examples, as OpenAI Microscope shows them,
computed live in the notebook (issue 12).

Everything is computed on one background thread, on a private copy of the model (:class:`ModelSnapshot`), with
the feature-visualisation backends of :mod:`hiddenwidgets.analysis.featurevis`. The view asks for what it shows
(a page of units, a unit's detail, an inversion) by setting traits; the worker computes what is asked and still
wanted, in that order, and caches it per (layer, objective, unit, seed, weights).

Transport: live optimisation frames are uint8 images in one binary buffer per message (``transport.encode``),
at most ``fps`` per second per atlas and within the kernel-wide ``SHARED_BUDGET``, sent from the worker thread
(``HiddenWidget._send`` forgets the reply route after each, so clicks reach the kernel during a busy cell).
Results (tiles, details, inversions) travel the same way, once each, when computed or when a view asks; the
synced state stays small. A static page (``save_html``) carries every result computed so far (``static_state``).
"""

from __future__ import annotations

import math
import queue
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import traitlets
from torch import nn

from ..analysis import featurevis as fv
from ..analysis.featurevis import objectives as obj
from ..analysis.interventions import resolve_layer
from ..datasets import Shapes
from ..pipeline.model_state import ModelSnapshot
from ..pipeline.transport import SHARED_BUDGET, encode
from ._base import HiddenWidget, model_name, names

__all__ = ["UnitAtlas"]

FVError = fv.FeatureVisualizationError
OBJECTIVES = ("channel", "neuron")
MAX_SIDE = 128  # optimised images and examples cross at most this many pixels on their long side
CROP_SIDE = 48  # tile crops (and thumbnails of vector layers' examples)
HIST_BINS = 40
MAX_SCORES = 1 << 22  # per-example scores kept per layer for histograms (units x examples); beyond, per unit
COLOR_SAMPLE = 2000  # examples the colour covariance is estimated from (the first ones)


# ------------------------------------------------------------------------------------------------------------------
# images and data
def to_uint8(images: torch.Tensor, side: int = MAX_SIDE) -> np.ndarray:
    """(B, C, H, W) float images in [0, 1] -> (B, h, w, C') uint8, C' = 1 or 3, the long side at most ``side``
    (area averaging). Values are those the model saw before ``normalize``; nothing is rescaled."""
    x = images.detach().to("cpu", torch.float32)
    if x.shape[1] not in (1, 3):
        x = x[:, :1] if x.shape[1] < 3 else x[:, :3]
    h, w = x.shape[2:]
    if max(h, w) > side:
        s = side / max(h, w)
        x = torch.nn.functional.interpolate(x, size=(max(1, round(h * s)), max(1, round(w * s))), mode="area")
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


class _Data:
    """The examples: a tensor of images, ``(images, labels)``, a :class:`~hiddenwidgets.datasets.Shapes` set (its
    concept masks are used for dissection) or a re-iterable loader of batches."""

    def __init__(self, data: Any, labels: Any, inputs: Callable[[Any], torch.Tensor] | None):
        self.shapes = data if isinstance(data, Shapes) else None
        self.images: torch.Tensor | None = None
        self.loader: Any = None
        self.inputs = inputs
        self.labels = None if labels is None else _as_list(labels)
        if self.shapes is not None:
            self.images = self.shapes.images
        elif isinstance(data, torch.Tensor):
            self.images = data
        elif isinstance(data, (tuple, list)) and data and all(isinstance(t, torch.Tensor) for t in data):
            if len({len(t) for t in data}) != 1:
                raise FVError(f"data is a tuple of tensors of different lengths {[len(t) for t in data]}; pass "
                              "(images, labels) with one label per image")
            self.images = data[0]
            if self.labels is None and len(data) > 1 and data[1].ndim == 1:
                self.labels = data[1].tolist()
        elif isinstance(data, torch.utils.data.DataLoader):
            self.loader = _in_order(data)  # (iter() on the user's loader would draw from the global stream)
        else:
            try:
                if iter(data) is data:
                    raise FVError("data is an iterator, which can be read once; the atlas reads the data several "
                                  "times (examples, histograms, dissection): pass a DataLoader or a tensor")
            except TypeError:
                raise FVError(f"data must be images (N, C, H, W) in [0, 1], (images, labels), "
                              f"hiddenwidgets.datasets.shapes(...) or a DataLoader; got {type(data).__name__}"
                              ) from None
            self.loader = data
        if self.images is not None:
            if self.images.ndim != 4:
                raise FVError(f"data must be images (N, C, H, W) in [0, 1]; got shape {tuple(self.images.shape)}. "
                              "The atlas shows images; for models on vectors or tokens call featurevis.visualize")
            if len(self.images) == 0:
                raise FVError("data holds no examples")
            self.images = self.images.detach()
            self.n = len(self.images)
            self._check_range(self.images)
        else:
            first = self._batch_inputs(next(iter(self.loader)))
            if first.ndim != 4:
                raise FVError(f"the loader's batches must hold images (B, C, H, W); got {tuple(first.shape)}")
            self._check_range(first)
            try:
                self.n = len(self.loader.dataset)
            except (AttributeError, TypeError):
                self.n = sum(len(self._batch_inputs(b)) for b in self.loader)
        if self.labels is not None and len(self.labels) != self.n:
            raise FVError(f"labels has {len(self.labels)} entries for {self.n} examples; pass one per example")

    def _batch_inputs(self, batch: Any) -> torch.Tensor:
        if self.inputs is not None:
            return self.inputs(batch)
        if isinstance(batch, torch.Tensor):
            return batch
        if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
            return batch[0]
        raise FVError(f"cannot find the images in a batch of type {type(batch).__name__}; pass inputs=lambda b: ...")

    @staticmethod
    def _check_range(x: torch.Tensor) -> None:
        if not x.is_floating_point():
            raise FVError(f"images must be floating point in [0, 1]; got {x.dtype} (divide uint8 images by 255)")
        lo, hi = float(x.min()), float(x.max())
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise FVError("the images hold NaN or inf values")
        if lo < 0 or hi > 1:
            raise FVError(f"images must be in [0, 1] before normalisation; got values in [{lo:.3g}, {hi:.3g}]. "
                          "Pass the unnormalised images and normalize=(mean, std) (or a callable)")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.example(0).shape)

    @property
    def source(self) -> Any:
        """What ``dataset_examples`` reads."""
        return self.images if self.images is not None else self.loader

    def example(self, i: int) -> torch.Tensor:
        if not 0 <= i < self.n:
            raise FVError(f"example {i} is out of range: the data has {self.n} examples (0..{self.n - 1})")
        if self.images is not None:
            return self.images[i]
        seen = 0
        for batch in self.loader:
            x = self._batch_inputs(batch)
            if i < seen + len(x):
                return x[i - seen].detach()
            seen += len(x)
        raise FVError(f"the loader yielded {seen} examples, fewer than its length {self.n}")

    def head(self, count: int) -> torch.Tensor:
        if self.images is not None:
            return self.images[:count]
        out, seen = [], 0
        for batch in self.loader:
            x = self._batch_inputs(batch)
            out.append(x[:count - seen])
            seen += len(out[-1])
            if seen >= count:
                break
        return torch.cat(out)


def _in_order(loader: Any) -> Any:
    """A DataLoader of the same dataset, read in order by a loader of the atlas's own: example numbers are then
    positions in the dataset, the same in every pass (a shuffling loader would renumber them each time), and the
    worker thread never draws from the global random stream (a DataLoader without a generator takes its seed
    from it), which would change a training loop's shuffling or dropout depending on timing. Other iterables of
    batches are read as they are."""
    if not isinstance(loader, torch.utils.data.DataLoader):
        return loader
    return torch.utils.data.DataLoader(loader.dataset, batch_size=loader.batch_size or 64, shuffle=False,
                                       collate_fn=loader.collate_fn, num_workers=0,
                                       generator=torch.Generator().manual_seed(0))


@dataclass
class _Layer:
    name: str
    count: int  # units in the layer
    kind: str  # "conv" (N, C, H, W), "sequence" (N, T, D) or "vector" (N, D)
    units: list[int]


@dataclass
class _Job:
    kind: str  # "page", "detail", "invert", "call", "refresh"
    key: tuple = ()
    generation: int = 0
    call: Callable[[], Any] | None = None
    future: Future | None = None


@dataclass
class _Unit:
    """A unit's optimised image (full resolution) and what the optimisation reported."""

    image: torch.Tensor
    value: float
    steps: int
    cancelled: bool = False


@dataclass
class _Detail:
    scores: torch.Tensor | None = None  # every example's score (float64), for the histogram
    negative: _Unit | None = None
    facets: fv.Facets | None = None
    facet_examples: fv.DatasetExamples | None = None
    error: str = ""
    cancelled: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class _Stop(Exception):
    """The job in progress is no longer wanted (cancelled, or the view moved on)."""


# ------------------------------------------------------------------------------------------------------------------
class UnitAtlas(HiddenWidget):
    """A grid of a layer's units, each with its optimised image, its top data set examples (cropped to the unit's
    receptive field) and its network-dissection label; click a unit for its facets, bottom examples, activation
    histogram and negative optimisation. An inversion panel reconstructs one example from each layer.

    Methods: feature visualisation by optimisation (Olah, Mordvintsev & Schubert 2017, *Feature Visualization*,
    Distill), data set examples (ibid.; OpenAI Microscope), multifaceted visualisation (Nguyen, Yosinski & Clune
    2016), network dissection (Bau et al. 2017), inversion (Mahendran & Vedaldi 2015); see
    :mod:`hiddenwidgets.analysis.featurevis`.

    All computation happens on a background thread, on a private copy of the model's weights
    (:class:`~hiddenwidgets.ModelSnapshot`): a training loop running meanwhile keeps its mode, hooks and
    gradients. The view says which weights; :meth:`refresh` (the view's "use current weights") copies the current
    ones. Only what the view shows is computed (a page of units; the clicked unit), with live images, progress and
    Cancel; results are cached per (layer, objective, unit, seed, weights).

    Parameters
    ----------
    model : an image model; never changed (mode, hooks, ``requires_grad``, ``.grad`` as found).
    data : images (N, C, H, W) in [0, 1] (before ``normalize``), ``(images, labels)``,
        ``hw.datasets.shapes(...)`` (its concept masks label units by dissection), or a DataLoader (its dataset is
        read in order, unshuffled, by a loader of the atlas's own: example numbers are dataset positions).
    layers : layer names (``model.named_modules()``), one or several.
    objective : what a unit's image maximises: "channel" (mean over positions; the default), "neuron" (the centre
        position), or a name from ``objectives``. Vector layers (N, D) use the unit's value either way.
    objectives : more objectives offered in the view, ``{name: f(layer, unit) -> Objective}``, e.g.
        ``{"channel - TV": lambda l, u: fv.objectives.channel(l, u) - 1e-2 * fv.objectives.total_variation()}``.
    units : units shown, all by default; a list (every layer) or ``{layer: [units]}``.
    page_size : units per page, computed together (one batch). steps, lr, seed, param, transforms : as in
        ``featurevis.visualize`` (``seed`` can be changed in the view). decorrelate : "data" (the colour
        covariance of the first 2,000 examples; the default, also for None), "imagenet", False, or a
        ``ColorDecorrelation``.
    normalize, forward, inputs : how the model is called (see ``featurevis.visualize``); ``inputs(batch)`` finds
        the images in a loader's batches.
    k : top and bottom examples per unit. pool : a unit's score on an example, "mean" (the channel objective's
        own measure; default) or "max" over positions; the histogram shows the same score.
    concepts : for dissection labels: pixel masks come from a ``shapes`` data set; a ``ConceptStore`` or
        ``{name: example indices}`` adds image-level concepts; False: no dissection. quantile : dissection's.
    facets : facets per unit in the detail (from its top ``facet_examples`` examples).
    labels, class_names : shown with examples (text only).
    inversion_steps : steps of each inversion (default ``steps``).
    fps : most live frames per second (default 12).
    """

    _view_file = "unit_atlas"

    title = traitlets.Unicode("Unit atlas", help="Heading of the view. Default 'Unit atlas'.").tag(sync=True)
    layers = traitlets.List(traitlets.Unicode(), help="Layers offered (read-only).").tag(sync=True)
    layer = traitlets.Unicode("", help="Layer shown.").tag(sync=True)
    objectives = traitlets.List(traitlets.Unicode(), help="Objective names offered (read-only).").tag(sync=True)
    objective = traitlets.Unicode("channel", help="Objective shown. Default 'channel'.").tag(sync=True)
    seed = traitlets.Int(0, help="Seed of the optimisations shown. Default 0.").tag(sync=True)
    page = traitlets.Int(0, help="Page of units shown (0-based).").tag(sync=True)
    page_size = traitlets.Int(12, help="Units per page (read-only).").tag(sync=True)
    unit = traitlets.Int(-1, help="Unit whose detail is shown; -1 none.").tag(sync=True)
    inversion_example = traitlets.Int(-1, help="Example reconstructed per layer; -1 none.").tag(sync=True)
    layer_info = traitlets.Dict(help="layer -> {units: [...], kind, count} (read-only).").tag(sync=True)
    n_examples = traitlets.Int(0, help="Examples in the data (read-only).").tag(sync=True)
    settings = traitlets.Dict(help="Steps, k, pool, facets, fps and the like (read-only).").tag(sync=True)
    status = traitlets.Unicode("", help="What is being computed, or the last error (read-only).").tag(sync=True)
    busy = traitlets.Bool(False, help="Whether the worker is computing (read-only).").tag(sync=True)
    weights = traitlets.Unicode("", help="Which weights the results were computed with (read-only).").tag(sync=True)
    version = traitlets.Int(0, help="Weights version, bumped by refresh() (read-only).").tag(sync=True)

    _OPTIONS = ("objective", "objectives", "units", "page_size", "steps", "lr", "seed", "param", "decorrelate",
                "transforms", "normalize", "forward", "inputs", "k", "pool", "concepts", "quantile", "facets",
                "facet_examples", "labels", "class_names", "inversion_steps", "fps", "title")

    def _describe(self) -> str:
        return (f"what each unit of {model_name(self.model)} responds to (optimised images, top data set examples, "
                f"dissection labels), layers {names(self.layers)}; layer {self.layer!r} shown")

    def __init__(self, model: nn.Module, data: Any, layers: str | Sequence[str], *, objective: str = "channel",
                 objectives: Mapping[str, Callable[[str, int], fv.Objective]] | None = None,
                 units: Sequence[int] | Mapping[str, Sequence[int]] | None = None, page_size: int = 12,
                 steps: int = 128, lr: float = 0.05, seed: int = 0, param: str | None = None,
                 decorrelate: Any = "data", transforms: Any = "default",
                 normalize: Any = None, forward: Callable[[nn.Module, torch.Tensor], Any] | None = None,
                 inputs: Callable[[Any], torch.Tensor] | None = None, k: int = 9, pool: str = "mean",
                 concepts: Any = None, quantile: float = 0.995, facets: int = 3, facet_examples: int = 32,
                 labels: Any = None, class_names: Sequence[str] | None = None, inversion_steps: int | None = None,
                 fps: float = 12.0, title: str = "Unit atlas", **unknown: Any):
        if unknown:
            raise TypeError(f"UnitAtlas got unexpected keyword argument(s) {sorted(unknown)}; valid ones: "
                            f"{', '.join(self._OPTIONS)}")
        if not isinstance(model, nn.Module):
            raise FVError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        names = [layers] if isinstance(layers, str) else list(layers) if layers is not None else []
        if not names:
            raise FVError("layers is empty; name at least one layer from model.named_modules()")
        if len(set(names)) != len(names):
            raise FVError("layers lists a layer more than once")
        for name in names:
            resolve_layer(model, name, FVError)  # closest names in the error
        self._custom = dict(objectives or {})
        for name, fn in self._custom.items():
            if not isinstance(name, str) or name in OBJECTIVES or not callable(fn):
                raise FVError(f"objectives must map new names to callables f(layer, unit) -> Objective; got "
                              f"{name!r}: {type(fn).__name__} (the names {OBJECTIVES} are built in)")
        offered = [*OBJECTIVES, *self._custom]
        if objective not in offered:
            raise FVError(f"objective must be one of {offered}; got {objective!r}")
        self._steps = _positive_int(steps, "steps")
        self._inv_steps = self._steps if inversion_steps is None else _positive_int(inversion_steps,
                                                                                      "inversion_steps")
        page_size = _positive_int(page_size, "page_size")
        self._k = _positive_int(k, "k")
        self._n_facets = _positive_int(facets, "facets")
        self._facet_examples = _positive_int(facet_examples, "facet_examples")
        if self._facet_examples < self._n_facets:
            raise FVError(f"facet_examples ({facet_examples}) must be at least facets ({facets})")
        if pool not in ("mean", "max"):
            raise FVError(f"pool must be 'mean' or 'max'; got {pool!r}")
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps <= 30:
            raise FVError(f"fps must be a number in (0, 30]; got {fps!r}")
        if not isinstance(title, str):
            raise TypeError(f"title must be a string; got {type(title).__name__}")
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < math.inf:
            raise FVError(f"lr must be a positive number; got {lr!r}")
        if isinstance(quantile, bool) or not isinstance(quantile, (int, float)) or not 0 < quantile < 1:
            raise FVError(f"quantile must be in (0, 1), e.g. 0.995 (Bau et al.'s); got {quantile!r}")
        self._lr, self._param, self._transforms = lr, param, transforms
        self._normalize, self._forward, self._pool, self._quantile = normalize, forward, pool, quantile
        self._fps = float(fps)
        self.class_names = None if class_names is None else [str(c) for c in class_names]
        self.data = _Data(data, labels, inputs)
        shape = self.data.shape
        if len(shape) != 3 or shape[0] not in (1, 3):
            raise FVError(f"the atlas shows images of 1 or 3 channels, (C, H, W); the data's examples are {shape}")
        self._shape = shape

        self._state_lock = threading.RLock()
        self._snapshot = ModelSnapshot(model).refresh()  # the worker's own copy: training is never disturbed
        self.model = model
        self._decorrelation = self._colour(decorrelate)
        self._concept_source = self._concepts(concepts)
        self._layers = {name: self._probe(name, units) for name in names}
        self._units: dict[tuple, _Unit] = {}  # (layer, objective, unit, seed, version)
        self._partial: dict[tuple, dict[int, _Unit]] = {}  # page key + version -> cancelled results
        self._examples: dict[tuple, fv.DatasetExamples] = {}  # (layer, version)
        self._scores: dict[tuple, dict[int, torch.Tensor]] = {}  # (layer, version) -> unit -> scores
        self._dissections: dict[tuple, fv.Dissection | str] = {}  # (layer, version) -> result or why none
        self._details: dict[tuple, _Detail] = {}  # (layer, objective, unit, seed, version)
        self._inversions: dict[tuple, fv.Inversion] = {}  # (example, version)
        self._errors: dict[tuple, str] = {}
        self._jobs: queue.Queue = queue.Queue()
        self._generation = 0
        self._pending = 0
        self._idle = threading.Condition()
        self._closed = False
        self._last_frame = 0.0
        self.frames_sent = 0
        self.frames_skipped = 0  # frames due but refused by the kernel-wide budget
        self.optimising_seconds = 0.0
        self._current: _Job | None = None
        info = {n: {"units": lay.units, "kind": lay.kind, "count": lay.count} for n, lay in self._layers.items()}
        super().__init__(
            title=title, layers=names, layer=names[0], objectives=offered, objective=objective,
            seed=_nonnegative_int(seed, "seed"), page_size=page_size, layer_info=info, n_examples=self.data.n,
            weights=self._snapshot.describe(),
            settings={"steps": self._steps, "k": self._k, "pool": self._pool, "facets": self._n_facets,
                      "fps": self._fps, "inversion_steps": self._inv_steps,
                      "dissection": self._concept_source is not None,
                      "concepts": self._concept_names(),
                      "decorrelation": self._decorrelation.source if self._decorrelation is not None else "none",
                      "shape": list(self._shape)})
        self._worker = threading.Thread(target=self._work, name="hiddenwidgets-unit-atlas", daemon=True)
        self._worker.start()
        self.on_msg(self._on_custom)
        self._request_page()

    # -- set-up --------------------------------------------------------------------------------------------------
    def _colour(self, decorrelate: Any) -> fv.ColorDecorrelation | None:
        if isinstance(decorrelate, fv.ColorDecorrelation):
            return decorrelate
        if decorrelate is None:
            decorrelate = "data"
        if decorrelate is False:
            return None
        if decorrelate == "imagenet":
            return fv.ColorDecorrelation.imagenet() if self._shape[0] == 3 else None
        if decorrelate == "data":
            if self._shape[0] != 3:
                return None
            return fv.ColorDecorrelation.from_data(self.data.head(COLOR_SAMPLE).float())
        raise FVError(f"decorrelate must be 'data', 'imagenet', False or a ColorDecorrelation; got {decorrelate!r}")

    def _concepts(self, concepts: Any) -> dict[str, Any] | None:
        if concepts is False:
            return None
        out: dict[str, Any] = {}
        if self.data.shapes is not None:
            out["pixels"] = self.data.shapes
        if concepts is not None:
            if not isinstance(concepts, Mapping) and not hasattr(concepts, "concepts"):
                raise FVError("concepts must be a ConceptStore, a mapping {name: example indices} or False; got "
                              f"{type(concepts).__name__}")
            out["images"] = concepts
        return out or None

    def _concept_names(self) -> list[str]:
        if self._concept_source is None:
            return []
        names = list(self._concept_source["pixels"].concepts) if "pixels" in self._concept_source else []
        image = self._concept_source.get("images")
        if image is not None:
            mapping = image.concepts() if hasattr(image, "concepts") and callable(image.concepts) else image
            names += [str(n) for n in mapping]
        return names

    def _probe(self, layer: str, units: Any) -> _Layer:
        """The layer's layout and unit count, as the backends read it (one forward pass on two examples)."""
        try:
            ex = fv.dataset_examples(self._snapshot.model, self.data.head(2), layer, k=1, keep_images=False,
                                     normalize=self._normalize, forward=self._forward)
        except FVError:
            raise
        except Exception as err:
            raise FVError(f"the model could not run on the data's examples (shape {self._shape}) up to layer "
                          f"{layer!r}: {type(err).__name__}: {err}") from err
        count = len(ex.units)
        kind = {2: "conv", 1: "sequence", 0: "vector"}[ex.top_positions.shape[2]]
        chosen = units.get(layer) if isinstance(units, Mapping) else units
        if chosen is None:
            chosen = list(range(count))
        else:
            chosen = [int(u) for u in (chosen.tolist() if isinstance(chosen, torch.Tensor) else chosen)]
            bad = [u for u in chosen if not 0 <= u < count]
            if bad:
                raise FVError(f"unit {bad[0]} is out of range: layer {layer!r} has {count} units (0..{count - 1})")
            if not chosen or len(set(chosen)) != len(chosen):
                raise FVError(f"units for {layer!r} must list each unit once, at least one")
        return _Layer(layer, count, kind, chosen)

    # -- requests (any thread) -------------------------------------------------------------------------------------
    def _page_units(self, layer: str, page: int) -> list[int]:
        units = self._layers[layer].units
        return units[page * self.page_size:(page + 1) * self.page_size]

    def n_pages(self, layer: str | None = None) -> int:
        """Pages of units of ``layer`` (default: the one shown)."""
        return math.ceil(len(self._layers[layer or self.layer].units) / self.page_size)

    def _page_key(self) -> tuple:
        return (self.layer, self.objective, self.seed, self.page)

    def _detail_key(self) -> tuple:
        return (self.layer, self.objective, self.seed, self.unit)

    def _enqueue(self, job: _Job) -> None:
        with self._idle:
            self._pending += 1
            job.generation = self._generation
        self._jobs.put(job)

    def _request_page(self) -> None:
        self._enqueue(_Job("page", self._page_key()))

    def _wanted(self, job: _Job) -> bool:
        if self._closed or job.generation != self._generation:
            return False
        if job.kind == "page":
            return job.key == self._page_key()
        if job.kind == "detail":
            return job.key == self._detail_key()
        if job.kind == "invert":
            return job.key[0] == self.inversion_example
        return True

    @traitlets.validate("layer")
    def _valid_layer(self, proposal: dict) -> str:
        value = proposal["value"]
        if hasattr(self, "_layers") and value not in self._layers:
            raise traitlets.TraitError(f"no layer {value!r} in this atlas; layers: {list(self._layers)}")
        return value

    @traitlets.validate("objective")
    def _valid_objective(self, proposal: dict) -> str:
        value = proposal["value"]
        if hasattr(self, "_custom") and value not in (*OBJECTIVES, *self._custom):
            raise traitlets.TraitError(f"objective must be one of {[*OBJECTIVES, *self._custom]}; got {value!r}")
        return value

    @traitlets.validate("page")
    def _valid_page(self, proposal: dict) -> int:
        value = proposal["value"]
        if hasattr(self, "_layers") and not 0 <= value < self.n_pages():
            raise traitlets.TraitError(f"page must be in 0..{self.n_pages() - 1} for layer {self.layer!r}; got "
                                       f"{value}")
        return value

    @traitlets.validate("unit")
    def _valid_unit(self, proposal: dict) -> int:
        value = proposal["value"]
        if hasattr(self, "_layers") and value != -1 and value not in self._layers[self.layer].units:
            raise traitlets.TraitError(f"unit {value} is not shown for layer {self.layer!r} (units "
                                       f"{_span(self._layers[self.layer].units)}); -1 closes the detail")
        return value

    @traitlets.validate("inversion_example")
    def _valid_example(self, proposal: dict) -> int:
        value = proposal["value"]
        if hasattr(self, "data") and value != -1 and not 0 <= value < self.data.n:
            raise traitlets.TraitError(f"inversion_example must be -1 or an example 0..{self.data.n - 1}; got {value}")
        return value

    @traitlets.validate("seed")
    def _valid_seed(self, proposal: dict) -> int:
        if proposal["value"] < 0:
            raise traitlets.TraitError(f"seed must be >= 0; got {proposal['value']}")
        return proposal["value"]

    @traitlets.observe("layer")
    def _layer_changed(self, change: dict) -> None:
        if not hasattr(self, "_worker"):
            return
        with self.hold_trait_notifications():
            self.unit = -1
            if self.page >= self.n_pages():
                self.page = 0
        self._request_page()

    @traitlets.observe("objective", "seed", "page")
    def _page_changed(self, change: dict) -> None:
        if hasattr(self, "_worker"):
            self._request_page()
            if self.unit >= 0 and change["name"] != "page":
                self._enqueue(_Job("detail", self._detail_key()))
            elif self.unit >= 0 and self.unit not in self._page_units(self.layer, self.page):
                self.unit = -1  # the view pages away from the unit: its detail closes

    @traitlets.observe("unit")
    def _unit_changed(self, change: dict) -> None:
        if hasattr(self, "_worker") and self.unit >= 0:
            page = self._layers[self.layer].units.index(self.unit) // self.page_size
            if page != self.page:
                self.page = page  # its tile is shown (and its page optimised first)
            else:
                self._request_page()  # (a page cancelled part-way is completed first)
            self._enqueue(_Job("detail", self._detail_key()))

    @traitlets.observe("inversion_example")
    def _example_changed(self, change: dict) -> None:
        if hasattr(self, "_worker") and self.inversion_example >= 0:
            self._enqueue(_Job("invert", (self.inversion_example,)))

    def _on_custom(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        kind = content.get("type")
        if kind == "cancel":
            self.cancel()
        elif kind == "refresh":
            self.refresh(wait=False)
        elif kind == "fetch":  # a view shows something it has no data for: send it, or compute it
            self._fetch(str(content.get("what", "")))

    def _fetch(self, what: str) -> None:
        version = self.version
        if what == "page":
            key = self._page_key()
            units = self._page_units(key[0], key[3])
            if all((key[0], key[1], u, key[2], version) in self._units for u in units) \
                    and (key[0], version) in self._examples:
                self._send_result("tiles", self._tiles_state(*key))
            else:
                self._request_page()
        elif what == "detail" and self.unit >= 0:
            key = self._detail_key()
            if (*key, version) in self._details:
                self._send_result("detail", self._detail_state(*key))
            self._enqueue(_Job("detail", key))  # computes only what is missing
        elif what == "inversion" and self.inversion_example >= 0:
            if (self.inversion_example, version) in self._inversions:
                self._send_result("inversion", self._inversion_state(self.inversion_example))
            else:
                self._enqueue(_Job("invert", (self.inversion_example,)))

    # -- the worker ------------------------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            self._current = job
            try:
                if job.kind == "refresh":
                    self._refresh_now()
                elif job.kind == "call":
                    self._run_call(job)
                elif self._wanted(job):
                    if self.status.startswith(("error", "cancelled")):
                        self._set(busy=True, status="")
                    else:
                        self._set(busy=True)
                    {"page": self._compute_page, "detail": self._compute_detail,
                     "invert": self._compute_inversion}[job.kind](job)
            except _Stop:
                pass
            except Exception as err:  # shown in the view; the atlas stays usable
                message = f"{type(err).__name__}: {err}"
                self._errors[(job.kind, *job.key)] = message
                self._set(status=f"error: {message}")
                if not isinstance(err, FVError):
                    traceback.print_exc()
                self._send_error(job, message)
            finally:
                self._current = None
                with self._idle:
                    self._pending -= 1
                    idle = self._pending == 0
                    self._idle.notify_all()
                if idle:
                    self._set(busy=False)
                    if self.status.startswith(("computing", "optimising", "reading", "dissecting",
                                                   "reconstructing")):
                        self._set(status="")

    def _run_call(self, job: _Job) -> None:
        assert job.call is not None and job.future is not None
        if not job.future.set_running_or_notify_cancel():
            return
        try:
            job.future.set_result(job.call())
        except BaseException as err:
            job.future.set_exception(err)

    def _call(self, fn: Callable[[], Any], timeout: float = 600.0) -> Any:
        """Run ``fn`` on the worker thread (after what is queued) and return its result here."""
        future: Future = Future()
        self._enqueue(_Job("call", future=future, call=fn))
        return future.result(timeout)

    def _set(self, **traits: Any) -> None:
        with self._state_lock, self.hold_sync():
            for name, value in traits.items():
                setattr(self, name, value)

    def _check(self, job: _Job | None) -> None:
        if job is not None and not self._wanted(job):
            raise _Stop

    # stages ---------------------------------------------------------------------------------------------------------
    def _layer_examples(self, layer: str, job: _Job | None) -> fv.DatasetExamples:
        key = (layer, self.version)
        if key in self._examples:
            return self._examples[key]
        self._set(status=f"reading {layer}: top and bottom {self._k} examples of each unit over "
                         f"{self.data.n:,} examples")

        progress = self._pass_progress(job, f"{layer}: examples")
        ex = fv.dataset_examples(self._snapshot.model, self.data.source, layer, k=self._k, pool=self._pool,
                                 units=self._layers[layer].units, normalize=self._normalize,
                                 forward=self._forward, inputs=self.data.inputs, progress=progress)
        if ex.cancelled:
            raise _Stop
        self._examples[key] = ex
        return ex

    def _objective_for(self, layer: str, name: str, units: list[int]) -> tuple[fv.Objective, bool]:
        """The objective of ``units`` (image i for units[i]) and whether it was built for the whole batch."""
        kind = self._layers[layer].kind
        if name == "channel" and kind != "vector":
            return obj.channels(layer, units), True
        if name in OBJECTIVES:
            return sum((obj.neuron(layer, u, batch=i) for i, u in enumerate(units)), start=0), True  # type: ignore
        if len(units) != 1:
            raise AssertionError("custom objectives are computed one unit at a time")
        made = self._custom[name](layer, units[0])
        if not isinstance(made, fv.Objective):
            raise FVError(f"objectives[{name!r}]({layer!r}, {units[0]}) returned {type(made).__name__}; it must "
                          "return an Objective, e.g. fv.objectives.channel(layer, unit)")
        return made, False

    def _unit_objective(self, layer: str, name: str, unit: int) -> fv.Objective:
        kind = self._layers[layer].kind
        if name == "channel" and kind != "vector":
            return obj.channel(layer, unit)
        if name in OBJECTIVES:
            return obj.neuron(layer, unit)
        return self._objective_for(layer, name, [unit])[0]

    def _visualize(self, objective: fv.Objective, batch: int, job: _Job | None, target: str, key: str,
                   units: list[int], init: torch.Tensor | None = None, seed: int | None = None) -> fv.Visualization:
        t0 = time.perf_counter()
        try:
            return fv.visualize(self._snapshot.model, objective, shape=self._shape, batch=batch, steps=self._steps,
                                lr=self._lr, param=self._param, decorrelate=self._decorrelation or False,
                                transforms=self._transforms, normalize=self._normalize, forward=self._forward,
                                init=init, seed=self.seed if seed is None else seed,
                                progress=self._progress(job, target, key, units))
        finally:
            self.optimising_seconds += time.perf_counter() - t0

    def _progress(self, job: _Job | None, target: str, key: str, units: list[int]
                  ) -> Callable[[int, int, torch.Tensor, float], bool | None]:
        """Live frames from an optimisation, at most ``fps`` a second and within the kernel-wide budget; returns
        False (stop) once the job is cancelled or no longer shown."""

        def progress(step: int, total: int, images: torch.Tensor, value: float) -> bool | None:
            if job is not None and not self._wanted(job):
                return False
            now = time.monotonic()
            if now - self._last_frame >= 1.0 / self._fps or step == total:
                if SHARED_BUDGET.try_take():
                    self._last_frame = now
                    self._send_frame(target, key, units, step, total, value, images)
                else:
                    self.frames_skipped += 1
            return None

        return progress

    def _pass_progress(self, job: _Job | None, what: str) -> Callable[[int, int | None], bool]:
        """Progress of a pass over the data, sent as throttled frames do (no images); False once unwanted."""

        def progress(done: int, total: int | None) -> bool:
            if job is not None and not self._wanted(job):
                return False
            now = time.monotonic()
            if total and now - self._last_frame >= 1.0 / self._fps and SHARED_BUDGET.try_take():
                self._last_frame = now
                self.send({"type": "progress", "what": what, "done": done, "total": total})
            return True

        return progress

    def _send_frame(self, target: str, key: str, units: list[int], step: int, total: int, value: float,
                    images: torch.Tensor) -> None:
        index, data = encode({"images": to_uint8(images)})
        self.frames_sent += 1
        self.send({"type": "frame", "target": target, "key": key, "units": units, "step": step, "total": total,
                   "value": value if math.isfinite(value) else None, "version": self.version, "index": index},
                  [data])

    def _send_result(self, kind: str, state: dict[str, Any]) -> None:
        """A result message: never dropped, so it waits (briefly) for the kernel-wide budget."""
        deadline = time.monotonic() + 2.0
        while not SHARED_BUDGET.try_take() and time.monotonic() < deadline:
            time.sleep(0.01)
        self.send({"type": kind, "header": state["header"]}, [state["data"]])

    def _send_error(self, job: _Job, message: str) -> None:
        if job.kind in ("page", "detail", "invert"):
            self.send({"type": "error", "what": {"page": "tiles", "detail": "detail", "invert": "inversion"}[job.kind],
                       "key": _key(*job.key), "message": message})

    def _compute_page(self, job: _Job) -> None:
        layer, name, seed, page = job.key
        version = self.version
        units = self._page_units(layer, page)
        self._layer_examples(layer, job)
        self._check(job)
        self._send_result("tiles", self._tiles_state(layer, name, seed, page))
        missing = [u for u in units if (layer, name, u, seed, version) not in self._units]
        if missing:
            span = f"units {_span(missing)}"
            self._set(status=f"optimising {layer} {span} ({name}, {self._steps} steps)")
            results: dict[int, _Unit] = {}
            page_key = _key(layer, name, seed, page)
            cancelled = False
            if name in OBJECTIVES:
                objective, _ = self._objective_for(layer, name, missing)
                vis = self._visualize(objective, len(missing), job, "page", page_key, missing)
                cancelled = vis.cancelled
                for i, u in enumerate(missing):
                    results[u] = _Unit(vis.images[i], float(vis.values[i]), vis.steps, vis.cancelled)
            else:  # a custom objective: one unit at a time
                for u in missing:
                    objective, _ = self._objective_for(layer, name, [u])
                    vis = self._visualize(objective, 1, job, "page", page_key, [u])
                    results[u] = _Unit(vis.images[0], float(vis.values[0]), vis.steps, vis.cancelled)
                    if vis.cancelled:
                        cancelled = True
                        break
            if cancelled:
                self._partial[(layer, name, seed, page, version)] = results
                self._send_result("tiles", self._tiles_state(layer, name, seed, page))
                self._check(job)  # moved on: nothing to say
                self._set(status=f"cancelled: {layer} {span} stopped at step {vis.steps} of {self._steps}")
                return
            for u, r in results.items():
                self._units[(layer, name, u, seed, version)] = r
            self._partial.pop((layer, name, seed, page, version), None)
            self._send_result("tiles", self._tiles_state(layer, name, seed, page))
        if (layer, version) not in self._dissections and self._dissection(layer, job) is not None:
            self._send_result("tiles", self._tiles_state(layer, name, seed, page))

    def _dissection(self, layer: str, job: _Job | None) -> fv.Dissection | None:
        if self._concept_source is None:
            return None
        key = (layer, self.version)
        if key not in self._dissections:
            if self._layers[layer].kind != "conv":
                self._dissections[key] = "dissection needs a conv layer (N, C, H, W)"
                return None
            self._set(status=f"dissecting {layer}: IoU of thresholded activation maps with "
                             f"{len(self._concept_names())} concepts")

            progress = self._pass_progress(job, f"{layer}: dissection")
            source = self._concept_source
            data = source.get("pixels") or self.data.source
            try:
                self._dissections[key] = fv.dissect(
                    self._snapshot.model, data, layer, image_concepts=source.get("images"),
                    quantile=self._quantile, units=self._layers[layer].units, normalize=self._normalize,
                    forward=self._forward, inputs=None if "pixels" in source else self.data.inputs,
                    progress=progress)
            except fv.Cancelled:
                raise _Stop from None
        found = self._dissections[key]
        return found if isinstance(found, fv.Dissection) else None

    def _layer_scores(self, layer: str, unit: int, job: _Job | None) -> torch.Tensor:
        """Every example's score for ``unit`` (as ``dataset_examples`` ranks them): its pass with k = the number
        of examples and no images kept, for every unit of the layer at once when that fits in MAX_SCORES."""
        key = (layer, self.version)
        table = self._scores.setdefault(key, {})
        if unit not in table:
            lay = self._layers[layer]
            units = lay.units if len(lay.units) * self.data.n <= MAX_SCORES else [unit]
            self._set(status=f"reading {layer}: every example's score for the histogram")

            progress = self._pass_progress(job, f"{layer}: scores")
            ex = fv.dataset_examples(self._snapshot.model, self.data.source, layer, k=self.data.n, pool=self._pool,
                                     units=units, normalize=self._normalize, forward=self._forward,
                                     inputs=self.data.inputs, keep_images=False, progress=progress)
            if ex.cancelled:
                raise _Stop
            if ex.n_examples != self.data.n:
                raise FVError(f"the data yielded {ex.n_examples} examples, but has {self.data.n} by its length")
            for row, u in enumerate(ex.units):
                table[u] = ex.top_values[row].clone()
        return table[unit]

    def _compute_detail(self, job: _Job) -> None:
        layer, name, seed, unit = job.key
        version = self.version
        dkey = (layer, name, seed, unit, version)
        detail = self._details.setdefault(dkey, _Detail())
        self._layer_examples(layer, job)
        if detail.scores is None:
            detail.scores = self._layer_scores(layer, unit, job)
            self._send_result("detail", self._detail_state(layer, name, seed, unit))
        self._check(job)
        key = _key(layer, name, seed, unit)
        if detail.negative is None or detail.negative.cancelled:
            self._set(status=f"optimising {layer} unit {unit}: negative ({name}, {self._steps} steps)")
            vis = self._visualize(-self._unit_objective(layer, name, unit), 1, job, "negative", key, [unit])
            detail.negative = _Unit(vis.images[0], float(vis.values[0]), vis.steps, vis.cancelled)
            self._send_result("detail", self._detail_state(layer, name, seed, unit))
            if vis.cancelled:
                self._check(job)
                self._set(status=f"cancelled: {layer} unit {unit}, negative optimisation at step {vis.steps}")
                return
        if detail.facets is None or detail.facets.cancelled:
            self._set(status=f"computing {layer} unit {unit}: {self._n_facets} facets of its top "
                             f"{self._facet_examples} examples")

            progress = self._pass_progress(job, f"{layer} unit {unit}: top examples")
            fe = fv.dataset_examples(self._snapshot.model, self.data.source, layer, k=self._facet_examples,
                                     pool=self._pool, units=[unit], normalize=self._normalize, forward=self._forward,
                                     inputs=self.data.inputs, progress=progress)
            if fe.cancelled:
                raise _Stop
            top = fe.images(unit, "top")
            if len(top) < self._n_facets:
                detail.error = f"{len(top)} examples cannot make {self._n_facets} facets"
            else:
                t0 = time.perf_counter()
                try:
                    detail.facets = fv.facets(
                        self._snapshot.model, layer, unit, top.float(), n_facets=self._n_facets,
                        objective=self._unit_objective(layer, name, unit), steps=self._steps, lr=self._lr,
                        param=self._param, decorrelate=self._decorrelation or False, transforms=self._transforms,
                        normalize=self._normalize, forward=self._forward, seed=seed,
                        progress=self._progress(job, "facets", key, list(range(self._n_facets))))
                finally:
                    self.optimising_seconds += time.perf_counter() - t0
                detail.facet_examples = fe
            self._send_result("detail", self._detail_state(layer, name, seed, unit))
            if detail.facets is not None and detail.facets.cancelled:
                self._check(job)
                self._set(status=f"cancelled: {layer} unit {unit}, facets at step {detail.facets.steps}")
                return
        self._dissection(layer, job)
        self._send_result("detail", self._detail_state(layer, name, seed, unit))

    def _compute_inversion(self, job: _Job) -> None:
        (example,) = job.key
        key = (example, self.version)
        if key in self._inversions and not self._inversions[key].cancelled:
            self._send_result("inversion", self._inversion_state(example))
            return
        layers = list(self._layers)
        self._set(status=f"reconstructing example {example} from {len(layers)} layer(s) ({self._inv_steps} steps)")
        t0 = time.perf_counter()
        try:
            inv = fv.invert(self._snapshot.model, self.data.example(example).float(), layers, steps=self._inv_steps,
                            normalize=self._normalize, forward=self._forward, seed=self.seed,
                            progress=self._progress(job, "inversion", str(example), list(range(len(layers)))))
        finally:
            self.optimising_seconds += time.perf_counter() - t0
        self._inversions[key] = inv
        self._send_result("inversion", self._inversion_state(example))
        if inv.cancelled:
            self._check(job)
            self._set(status=f"cancelled: inversion of example {example} at step {inv.steps}")

    # -- what the view receives ----------------------------------------------------------------------------------------
    def _tiles_state(self, layer: str, name: str, seed: int, page: int) -> dict[str, Any]:
        version = self.version
        units = self._page_units(layer, page)
        partial = self._partial.get((layer, name, seed, page, version), {})
        found = [self._units.get((layer, name, u, seed, version)) or partial.get(u) for u in units]
        h, w = to_uint8(torch.zeros(1, *self._shape)).shape[1:3]
        images = np.zeros((len(units), h, w, 1 if self._shape[0] == 1 else 3), dtype=np.uint8)
        values = np.full(len(units), np.nan, dtype=np.float32)
        steps = np.zeros(len(units), dtype=np.int32)
        state = np.zeros(len(units), dtype=np.int32)  # 0 waiting, 1 done, 2 cancelled
        for i, r in enumerate(found):
            if r is not None:
                images[i] = to_uint8(r.image[None])[0]
                values[i], steps[i], state[i] = r.value, r.steps, 2 if r.cancelled else 1
        arrays: dict[str, np.ndarray] = {"images": images, "values": values, "steps": steps, "state": state}
        header: dict[str, Any] = {"key": _key(layer, name, seed, page), "layer": layer, "objective": name,
                                  "seed": seed, "page": page, "units": units, "version": version,
                                  "objective_text": self._objective_text(layer, name, units),
                                  "comparable": self._comparable(layer, name)}
        ex = self._examples.get((layer, version))
        if ex is not None:
            rows = [ex.units.index(u) for u in units]
            arrays["top_values"] = ex.top_values[rows].numpy().astype(np.float32)
            arrays["top_indices"] = ex.top_indices[rows].numpy().astype(np.int32)
            arrays["crops"] = np.stack([self._crops(ex, u, "top") for u in units])
            header["n_examples"] = ex.n_examples
        dis = self._dissections.get((layer, version))
        if isinstance(dis, fv.Dissection):
            labels = [dis.label(u) for u in units]
            header["concepts"] = [c for c, _ in labels]
            arrays["iou"] = np.array([v for _, v in labels], dtype=np.float32)
        elif isinstance(dis, str):
            header["dissection_note"] = dis
        error = self._errors.get(("page", layer, name, seed, page))
        if error:
            header["error"] = error
        index, data = encode(arrays)
        header["index"] = index
        return {"header": header, "data": data}

    def _crops(self, ex: fv.DatasetExamples, unit: int, which: str) -> np.ndarray:
        """(k, h, w, C) uint8: receptive-field crops for conv layers, whole examples otherwise."""
        images = ex.crops(unit, which) if ex.top_boxes is not None else ex.images(unit, which)
        out = to_uint8(images.float(), CROP_SIDE)
        if len(out) < self._k:  # fewer examples than k in the data: pad (the view reads the indices, -1 = none)
            out = np.concatenate([out, np.zeros((self._k - len(out), *out.shape[1:]), dtype=np.uint8)])
        return out

    def _objective_text(self, layer: str, name: str, units: list[int]) -> str:
        if name in OBJECTIVES:
            kind = self._layers[layer].kind
            if name == "channel" and kind != "vector":
                return f"channel({layer!r}, unit): the unit's mean over positions"
            if kind == "vector":
                return f"neuron({layer!r}, unit): the unit's value"
            return f"neuron({layer!r}, unit): the unit at the centre position"
        try:
            return repr(self._objective_for(layer, name, units[:1])[0]) if units else name
        except Exception as err:  # shown where the text goes; computing it reports the error too
            return f"{name}: {err}"

    def _comparable(self, layer: str, name: str) -> bool:
        """Whether the objective's value and the examples' score measure the same thing (then both go on one
        axis): the channel objective with mean pooling, or any built-in objective on a vector layer."""
        kind = self._layers[layer].kind
        return (kind == "vector" and name in OBJECTIVES) or (name == "channel" and self._pool == "mean")

    def _detail_state(self, layer: str, name: str, seed: int, unit: int) -> dict[str, Any]:
        version = self.version
        d = self._details.get((layer, name, seed, unit, version), _Detail())
        header: dict[str, Any] = {"key": _key(layer, name, seed, unit), "layer": layer, "objective": name,
                                  "seed": seed, "unit": unit, "version": version, "pool": self._pool,
                                  "comparable": self._comparable(layer, name)}
        arrays: dict[str, np.ndarray] = {}
        ex = self._examples.get((layer, version))
        if ex is not None:
            row = ex.units.index(unit)
            for which in ("top", "bottom"):
                idx = getattr(ex, f"{which}_indices")[row]
                valid = idx >= 0
                arrays[f"{which}_indices"] = idx[valid].numpy().astype(np.int32)
                arrays[f"{which}_values"] = getattr(ex, f"{which}_values")[row][valid].numpy().astype(np.float32)
                arrays[f"{which}_images"] = to_uint8(ex.images(unit, which).float())
                boxes = getattr(ex, f"{which}_boxes")
                if boxes is not None:
                    arrays[f"{which}_boxes"] = boxes[row][valid].numpy().astype(np.int32)
                    arrays[f"{which}_crops"] = to_uint8(ex.crops(unit, which).float(), CROP_SIDE * 2)
            header["image_size"] = list(self._shape[1:])
            if self.data.labels is not None:
                header["top_labels"] = [self._label_text(int(i)) for i in arrays["top_indices"]]
                header["bottom_labels"] = [self._label_text(int(i)) for i in arrays["bottom_indices"]]
        own = self._units.get((layer, name, unit, seed, version))
        if own is not None:
            arrays["image"] = to_uint8(own.image[None])
            header["value"] = own.value
        if d.scores is not None:
            s = d.scores.double()
            lo, hi = float(s.min()), float(s.max())
            if hi <= lo:
                hi = lo + 1.0
            counts = torch.histc(s, bins=HIST_BINS, min=lo, max=hi)
            arrays["hist_counts"] = counts.numpy().astype(np.int32)
            arrays["hist_edges"] = np.linspace(lo, hi, HIST_BINS + 1).astype(np.float32)
            header["hist_n"] = len(s)
        if d.negative is not None:
            arrays["negative"] = to_uint8(d.negative.image[None])
            header["negative"] = {"value": -d.negative.value, "steps": d.negative.steps,
                                  "cancelled": d.negative.cancelled}
        if d.facets is not None and d.facet_examples is not None:
            f = d.facets
            arrays["facets"] = to_uint8(f.images)
            arrays["facet_values"] = f.values.numpy().astype(np.float32)
            arrays["facet_sizes"] = np.array([len(m) for m in f.members], dtype=np.int32)
            top = d.facet_examples.images(unit, "top").float()
            shown = 4
            members = np.zeros((len(f.members), shown, *to_uint8(top[:1], CROP_SIDE).shape[1:]), dtype=np.uint8)
            for j, m in enumerate(f.members):
                if len(m):
                    members[j, :min(shown, len(m))] = to_uint8(top[m[:shown]], CROP_SIDE)
            arrays["facet_members"] = members
            header["facets"] = {"steps": f.steps, "cancelled": f.cancelled, "examples": len(top),
                                "objective": f.objective}
        if d.error:
            header["facets_note"] = d.error
        dis = self._dissections.get((layer, version))
        if isinstance(dis, fv.Dissection):
            row = dis.units.index(unit)
            order = torch.argsort(dis.iou[row], descending=True)[:5]
            header["concepts"] = [[dis.concepts[int(j)], float(dis.iou[row, j])] for j in order]
        error = self._errors.get(("detail", layer, name, seed, unit))
        if error:
            header["error"] = error
        index, data = encode(arrays)
        header["index"] = index
        return {"header": header, "data": data}

    def _label_text(self, i: int) -> str:
        if self.data.labels is None:
            return ""
        label = self.data.labels[i]
        if self.class_names is not None and isinstance(label, int) and 0 <= label < len(self.class_names):
            return self.class_names[label]
        return str(label)

    def _inversion_state(self, example: int) -> dict[str, Any]:
        inv = self._inversions[(example, self.version)]
        arrays = {"example": to_uint8(inv.example[None]), "images": to_uint8(inv.images),
                  "pixel_error": inv.pixel_error.numpy().astype(np.float32),
                  "code_error": inv.code_error.numpy().astype(np.float32)}
        index, data = encode(arrays)
        return {"header": {"key": str(example), "example": example, "layers": inv.layers, "steps": inv.steps,
                           "cancelled": inv.cancelled, "version": self.version, "index": index,
                           "label": self._label_text(example)}, "data": data}

    # -- Python API ----------------------------------------------------------------------------------------------------
    def wait(self, timeout: float = 600.0) -> None:
        """Block until everything asked for is computed (or cancelled). Raises the error of a failed request."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"the atlas is still computing after {timeout} s: {self.status}")
                self._idle.wait(min(left, 0.1))
        if self.status.startswith("error"):
            raise FVError(self.status[len("error: "):])

    def flush(self) -> None:
        """Wait for what is being computed (``save_html`` calls this before reading the results)."""
        self.wait()

    def cancel(self) -> None:
        """Stop the computation in progress (at its next step) and drop what is queued; finished units stay
        cached, a cancelled page shows how far it got."""
        with self._idle:
            self._generation += 1
            working = self._pending > 0
        if working:
            self._set(status="cancelled")

    def refresh(self, wait: bool = True) -> None:
        """Copy the model's current weights (between two training steps, if a monitor steps it) and compute what
        is shown again; earlier results are dropped."""
        self.cancel()
        self._enqueue(_Job("refresh"))
        if wait:
            self.wait()

    def _refresh_now(self) -> None:
        self._snapshot.refresh()
        with self._state_lock:
            for cache in (self._units, self._partial, self._examples, self._scores, self._dissections,
                          self._details, self._inversions, self._errors):
                cache.clear()
        self._set(weights=self._snapshot.describe(), version=self.version + 1, status="")
        self.send({"type": "reset", "version": self.version})
        self._request_page()
        if self.unit >= 0:
            self._enqueue(_Job("detail", self._detail_key()))
        if self.inversion_example >= 0:
            self._enqueue(_Job("invert", (self.inversion_example,)))

    def show(self, layer: str | None = None, *, page: int | None = None, objective: str | None = None,
             seed: int | None = None, wait: bool = True) -> UnitAtlas:
        """Show (and compute) a page of a layer, as the view's controls do. Returns the atlas."""
        if layer is not None:
            self.layer = layer  # (resets the page when the new layer has fewer)
        if objective is not None:
            self.objective = objective
        if seed is not None:
            self.seed = seed
        if page is not None:
            self.page = page
        self._request_page()  # (also when nothing changed: a page cancelled part-way is computed in full)
        if wait:
            self.wait()
        return self

    def images(self, layer: str | None = None, objective: str | None = None, seed: int | None = None
               ) -> dict[int, torch.Tensor]:
        """The optimised images computed so far, ``{unit: (C, H, W) float32 in [0, 1]}`` (cancelled ones left
        out)."""
        layer, objective = layer or self.layer, objective or self.objective
        seed = self.seed if seed is None else seed
        return {k[2]: r.image for k, r in list(self._units.items())
                if k[0] == layer and k[1] == objective and k[3] == seed and k[4] == self.version}

    def results(self, layer: str | None = None) -> list[dict[str, Any]]:
        """One row per computed unit: layer, objective, seed, unit, value, steps, top example score, and the
        dissection label (concept, IoU) when there is one."""
        rows = []
        for (lay, name, unit, seed, version), r in sorted(self._units.items(), key=lambda kv: kv[0][:4]):
            if version != self.version or (layer is not None and lay != layer):
                continue
            row: dict[str, Any] = {"layer": lay, "objective": name, "seed": seed, "unit": unit, "value": r.value,
                                   "steps": r.steps}
            ex = self._examples.get((lay, version))
            if ex is not None:
                row["top_score"] = float(ex.top_values[ex.units.index(unit), 0])
            dis = self._dissections.get((lay, version))
            if isinstance(dis, fv.Dissection):
                row["concept"], row["iou"] = dis.label(unit)
            rows.append(row)
        return rows

    def examples(self, layer: str | None = None) -> fv.DatasetExamples:
        """The layer's data set examples (computed on the worker if needed)."""
        layer = layer or self.layer
        self._valid_layer({"value": layer})
        return self._call(lambda: self._layer_examples(layer, None))

    def dissection(self, layer: str | None = None) -> fv.Dissection | None:
        """The layer's network dissection (None without concepts or for a layer that is not conv)."""
        layer = layer or self.layer
        self._valid_layer({"value": layer})
        return self._call(lambda: self._dissection(layer, None))

    def detail(self, unit: int, layer: str | None = None, timeout: float = 600.0) -> dict[str, Any]:
        """Open a unit's detail (as a click does), wait for it, and return it: ``facets`` (:class:`Facets`; its
        ``members`` index ``facet_examples``, the data set positions of the top examples it clustered),
        ``negative`` (image and value), ``scores`` (every example's score, highest first), ``examples``
        (the layer's :class:`DatasetExamples`) and ``label`` ((concept, IoU) or None)."""
        if layer is not None:
            self.layer = layer  # (closes the detail of the previous layer)
        self.unit = unit
        self.wait(timeout)
        d = self._details.get((*self._detail_key(), self.version))
        if d is None or d.negative is None or (d.facets is None and not d.error):
            raise FVError(f"the detail of {self.layer} unit {unit} was not completed ({self.status or 'cancelled'})")
        dis = self._dissections.get((self.layer, self.version))
        clustered = None
        if d.facet_examples is not None:
            clustered = d.facet_examples.top_indices[0]
            clustered = clustered[clustered >= 0]
        return {"facets": d.facets, "facet_examples": clustered,
                "negative": {"image": d.negative.image, "value": -d.negative.value},
                "scores": d.scores, "examples": self._examples.get((self.layer, self.version)),
                "label": dis.label(unit) if isinstance(dis, fv.Dissection) else None}

    def invert(self, example: int, timeout: float = 600.0) -> fv.Inversion:
        """Reconstruct ``example`` from each layer (the view's inversion panel shows it) and return it."""
        self.inversion_example = example
        self.wait(timeout)
        inv = self._inversions.get((example, self.version))
        if inv is None:
            raise FVError(f"the inversion of example {example} was not completed ({self.status or 'cancelled'})")
        return inv

    @property
    def frame_rate(self) -> float:
        """Live frames sent per second of optimisation so far."""
        return self.frames_sent / self.optimising_seconds if self.optimising_seconds > 0 else 0.0

    # -- static pages ------------------------------------------------------------------------------------------------
    def static_state(self) -> dict[str, Any]:
        """What a static page adds to the state, as ``_static``: every page, detail and inversion computed so far
        with the current weights (pages cancelled part-way show how far they got)."""
        version = self.version
        pages, details, inversions = {}, {}, {}
        keys = {(k[0], k[1], k[3], self._layers[k[0]].units.index(k[2]) // self.page_size)
                for k in list(self._units) if k[4] == version}
        keys |= {k[:4] for k in list(self._partial) if k[4] == version}
        for layer, name, seed, page in sorted(keys):
            state = self._tiles_state(layer, name, seed, page)
            pages[state["header"]["key"]] = state
        for k in list(self._details):
            if k[4] == version:
                state = self._detail_state(*k[:4])
                details[state["header"]["key"]] = state
        for example, v in list(self._inversions):
            if v == version:
                inversions[str(example)] = self._inversion_state(example)
        return {"_static": {"pages": pages, "details": details, "inversions": inversions}}

    def close(self) -> None:
        """Stop the worker. Idempotent; safe on a half-constructed atlas."""
        if hasattr(self, "_jobs"):
            self._closed = True
            with self._idle:
                self._generation += 1
            self._jobs.put(None)


# ------------------------------------------------------------------------------------------------------------------
def _key(*parts: Any) -> str:
    return "|".join(str(p) for p in parts)


def _span(units: Iterable[int]) -> str:
    units = list(units)
    if not units:
        return "none"
    if units == list(range(units[0], units[0] + len(units))):
        return f"{units[0]}–{units[-1]}" if len(units) > 1 else str(units[0])
    return ", ".join(map(str, units[:6])) + ("…" if len(units) > 6 else "")


def _as_list(labels: Any) -> list[Any]:
    if isinstance(labels, torch.Tensor):
        return labels.reshape(-1).tolist()
    return np.asarray(labels).reshape(-1).tolist()


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise FVError(f"{name} must be a positive int; got {value!r}")
    return int(value)


def _nonnegative_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise FVError(f"{name} must be an int >= 0; got {value!r}")
    return int(value)
