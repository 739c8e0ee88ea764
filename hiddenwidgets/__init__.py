"""hiddenwidgets: Jupyter widgets for looking inside PyTorch networks while they train and after.

The package is laid out as the trip every feature makes:

- ``pipeline/``: capture (hooks) -> summaries (torch reductions) -> transport (history, binary frames, rate limits)
  -> export (static pages); recorders and the concept store. No widget code.
- ``analysis/``: tensors in, numbers out: information, similarity (CKA), probes, representations, TCAV,
  interventions, feature visualization (``featurevis``).
- ``methods/``: attribution methods, one small class per method, in one registry.
- ``widgets/``: one file per view, each with one ES module built from ``js/``.

Everything users need is importable from here (``import hiddenwidgets as hw``).
"""

from . import (
    _requirements,  # noqa: F401  (first: a clear message on an unsupported Python or torch)
    charts,
    datasets,
)
from ._version import __version__ as __version__
from .analysis import featurevis, information, interventions, probes, representations, similarity, tcav, transformers
from .analysis.explainer import ExplainerError, NetworkTrace, explain_network
from .analysis.matrices import RepresentationError
from .analysis.representations import RepresentationRecorder, Representations, layer_features, probe, project
from .charts import save_chart
from .methods import AttributionError, attribute, available_methods
from .pipeline import concepts
from .pipeline.capture import Capture, CaptureError, LayerError, select_tensor
from .pipeline.export import save_html
from .pipeline.model_state import ModelChangedError, ModelSnapshot, SnapshotError
from .pipeline.monitor import ActivationRecorder, MonitorWarning
from .pipeline.recorder import InformationRecorder
from .pipeline.rundir import RunDirError, read_run
from .pipeline.summaries import HistogramGrid, LayerSummarizer
from .pipeline.tensorboard import export_tensorboard
from .widgets import (
    ActivationMonitor,
    AttentionView,
    AttributionExplorer,
    ConceptAnnotator,
    ConceptScores,
    InformationPlane,
    InterventionView,
    LogitLens,
    NetworkExplainer,
    ProbeChart,
    Projector,
    SimilarityMatrix,
    TokenFlow,
    TrainingJob,
    TrainingStopped,
    UnitAtlas,
)
from .widgets.followed_run import FollowedRun

__all__ = [
    "ActivationMonitor",
    "ActivationRecorder",
    "AttributionError",
    "AttributionExplorer",
    "Capture",
    "CaptureError",
    "ConceptAnnotator",
    "ConceptScores",
    "ExplainerError",
    "FollowedRun",
    "HistogramGrid",
    "InformationPlane",
    "InformationRecorder",
    "InterventionView",
    "LayerError",
    "LayerSummarizer",
    "ModelChangedError",
    "ModelSnapshot",
    "MonitorWarning",
    "NetworkExplainer",
    "NetworkTrace",
    "ProbeChart",
    "Projector",
    "RepresentationError",
    "RepresentationRecorder",
    "Representations",
    "RunDirError",
    "SimilarityMatrix",
    "SnapshotError",
    "TrainingJob",
    "TrainingStopped",
    "UnitAtlas",
    "attribute",
    "available_methods",
    "charts",
    "concepts",
    "datasets",
    "explain_network",
    "export_tensorboard",
    "featurevis",
    "information",
    "interventions",
    "layer_features",
    "probe",
    "probes",
    "project",
    "read_run",
    "representations",
    "save_chart",
    "save_html",
    "select_tensor",
    "similarity",
    "tcav",
]
__all__ += ["AttentionView", "LogitLens", "TokenFlow", "transformers"]
