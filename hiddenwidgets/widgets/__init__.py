"""One file per view: a Python class whose ``_esm`` is one built module from js/."""

from .activation_monitor import ActivationMonitor, TrainingJob, TrainingStopped
from .attention_view import AttentionView
from .attribution_explorer import AttributionExplorer
from .concept_annotator import ConceptAnnotator
from .concept_scores import ConceptScores
from .information_plane import ESTIMATORS, InformationPlane
from .intervention_view import InterventionView
from .logit_lens import LogitLens
from .network_explainer import NetworkExplainer
from .probe_chart import ProbeChart
from .projector import Projector
from .similarity_matrix import SimilarityMatrix
from .token_flow import TokenFlow
from .unit_atlas import UnitAtlas

__all__ = ["ESTIMATORS", "ActivationMonitor", "AttributionExplorer", "ConceptAnnotator", "ConceptScores",
           "InformationPlane", "InterventionView", "NetworkExplainer", "ProbeChart", "Projector", "SimilarityMatrix",
           "TrainingJob", "TrainingStopped", "UnitAtlas"]
__all__ += ["AttentionView", "LogitLens", "TokenFlow"]
