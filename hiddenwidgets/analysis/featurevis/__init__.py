"""Feature visualisation: what a network's units respond to (issue 12). Tensors in, numbers and images out; no
widget code (the ``UnitAtlas`` view builds on these functions).

- :func:`visualize`: images optimised to maximise an objective (Olah et al. 2017, *Feature Visualization*,
  Distill), built from :mod:`.objectives` (channel, neuron, layer, direction, class_logit, diversity and the
  regularisers, composable with ``+ - *``), :mod:`.parameterizations` (pixels, Fourier 1/f, colour
  decorrelation) and :mod:`.transforms` (pad, jitter, scale, rotate). Step by step, with
  ``progress(step, total, images, value)``, which may cancel; seeded; the model left as found.
- :func:`dataset_examples`: each unit's top-k and bottom-k examples over a DataLoader, in one streaming pass of
  bounded memory, with the position of the maximum and a crop around the receptive field.
- :func:`facets`: multifaceted feature visualisation (Nguyen et al. 2016).
- :func:`invert`: reconstruct an input from a layer's code (Mahendran & Vedaldi 2015).
- :func:`dissect`: network dissection, IoU of thresholded activation maps with concept masks (Bau et al. 2017).
"""

from . import objectives, parameterizations, transforms
from ._common import INPUT, Cancelled, FeatureVisualizationError
from .dataset_examples import DatasetExamples, ReceptiveField, dataset_examples, receptive_field
from .dissection import Dissection, dissect
from .facets import Facets, facets
from .inversion import Inversion, invert
from .objectives import Objective
from .optimize import Visualization, evaluate, visualize
from .parameterizations import ColorDecorrelation
from .transforms import default_transforms

__all__ = [
    "INPUT",
    "Cancelled",
    "ColorDecorrelation",
    "DatasetExamples",
    "Dissection",
    "Facets",
    "FeatureVisualizationError",
    "Inversion",
    "Objective",
    "ReceptiveField",
    "Visualization",
    "dataset_examples",
    "default_transforms",
    "dissect",
    "evaluate",
    "facets",
    "invert",
    "objectives",
    "parameterizations",
    "receptive_field",
    "transforms",
    "visualize",
]
