"""hiddenwidgets: Jupyter widgets for looking inside PyTorch networks while they train and after.

The pipeline, one module a stage: capture (hooks) -> summaries (torch reductions) -> transport (history, binary
frames, rate limits) -> widgets (views) -> export (static pages).
"""

from . import datasets, information
from .capture import Capture, CaptureError, LayerError, select_tensor
from .export import save_html
from .methods import AttributionError, attribute, available_methods
from .recorder import InformationRecorder
from .summaries import HistogramGrid, LayerSummarizer
from .widgets import ActivationMonitor, AttributionExplorer, InformationPlane, TrainingJob, TrainingStopped

__version__ = "0.1.0"

__all__ = [
    "ActivationMonitor",
    "AttributionError",
    "AttributionExplorer",
    "Capture",
    "CaptureError",
    "HistogramGrid",
    "InformationPlane",
    "InformationRecorder",
    "LayerError",
    "LayerSummarizer",
    "TrainingJob",
    "TrainingStopped",
    "attribute",
    "available_methods",
    "datasets",
    "information",
    "save_html",
    "select_tensor",
]
