"""One file per view: a Python class whose ``_esm`` is one built module from js/."""

from .activation_monitor import ActivationMonitor, TrainingJob, TrainingStopped

__all__ = ["ActivationMonitor", "TrainingJob", "TrainingStopped"]
