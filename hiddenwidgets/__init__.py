"""hiddenwidgets: Jupyter widgets for looking inside PyTorch networks while they train and after.

The pipeline, one module a stage: capture (hooks) -> summaries (torch reductions) -> transport (history, binary
frames, rate limits) -> widgets (views) -> export (static pages).
"""

from . import concepts, datasets, information, probes, similarity
from .capture import Capture, CaptureError, LayerError, select_tensor
from .export import save_html
from .features import RepresentationError
from .methods import AttributionError, attribute, available_methods
from .recorder import InformationRecorder
from .representations import RepresentationRecorder, Representations, layer_features, probe, project
from .summaries import HistogramGrid, LayerSummarizer
from .widgets import (
    ActivationMonitor,
    AttributionExplorer,
    ConceptAnnotator,
    ConceptScores,
    InformationPlane,
    InterventionView,
    ProbeChart,
    Projector,
    SimilarityMatrix,
    TrainingJob,
    TrainingStopped,
)

__version__ = "0.1.0"

__all__ = [
    "ActivationMonitor",
    "AttributionError",
    "AttributionExplorer",
    "Capture",
    "CaptureError",
    "ConceptAnnotator",
    "ConceptScores",
    "HistogramGrid",
    "InformationPlane",
    "InformationRecorder",
    "InterventionView",
    "LayerError",
    "LayerSummarizer",
    "ProbeChart",
    "Projector",
    "RepresentationError",
    "RepresentationRecorder",
    "Representations",
    "SimilarityMatrix",
    "TrainingJob",
    "TrainingStopped",
    "attribute",
    "available_methods",
    "concepts",
    "datasets",
    "information",
    "layer_features",
    "probe",
    "probes",
    "project",
    "save_html",
    "select_tensor",
    "similarity",
]
