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

from typing import TYPE_CHECKING, Any

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
from .pipeline.model_state import ModelChangedError, ModelSnapshot, SnapshotError
from .pipeline.monitor import ActivationRecorder, MonitorWarning, TrainingJob, TrainingStopped
from .pipeline.recorder import InformationRecorder
from .pipeline.rundir import RunDirError, read_run
from .pipeline.summaries import HistogramGrid, LayerSummarizer
from .pipeline.tensorboard import export_tensorboard

# The views (and save_html) need ipywidgets, anywidget and IPython, which take longer to import than everything
# else here together: they are imported when first used, so a script or training job that only records pays
# nothing for them. ``hw.ActivationMonitor`` and the rest stay plain attributes (PEP 562 module __getattr__).
_LAZY = {
    "ActivationMonitor": "widgets.activation_monitor",
    "AttributionExplorer": "widgets.attribution_explorer",
    "ConceptAnnotator": "widgets.concept_annotator",
    "ConceptScores": "widgets.concept_scores",
    "InformationPlane": "widgets.information_plane",
    "InterventionView": "widgets.intervention_view",
    "ProbeChart": "widgets.probe_chart",
    "Projector": "widgets.projector",
    "SimilarityMatrix": "widgets.similarity_matrix",
    "UnitAtlas": "widgets.unit_atlas",
    "NetworkExplainer": "widgets.network_explainer",
    "LogitLens": "widgets.logit_lens",
    "AttentionView": "widgets.attention_view",
    "TokenFlow": "widgets.token_flow",
    "FollowedRun": "widgets.followed_run",
    "save_html": "pipeline.export",
    "embed_snippet": "pipeline.export",
}

if TYPE_CHECKING:  # for type checkers and IDEs; at run time these come from __getattr__
    from .pipeline.export import embed_snippet, save_html
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
        UnitAtlas,
    )
    from .widgets.followed_run import FollowedRun


def __getattr__(name: str) -> Any:
    import importlib

    if name == "widgets":  # the subpackage itself, as an attribute (it was imported eagerly before)
        return importlib.import_module(".widgets", __name__)
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module 'hiddenwidgets' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{where}", __name__), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | {"widgets"})


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
    "embed_snippet",
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
