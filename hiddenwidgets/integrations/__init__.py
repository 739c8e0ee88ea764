"""Thin framework integrations: a PyTorch Lightning ``Callback`` (:mod:`.lightning`) and a Hugging Face
``TrainerCallback`` (:mod:`.huggingface`). Each module imports its framework; import the one you use::

    from hiddenwidgets.integrations.lightning import MonitorCallback
    from hiddenwidgets.integrations.huggingface import MonitorCallback
"""

from __future__ import annotations

__all__: list[str] = []
