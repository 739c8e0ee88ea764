"""Optional packages: imported where a feature needs them, with an error that names what to install."""

from __future__ import annotations

import importlib
from types import ModuleType

# import name -> (what pip installs, the extra of hiddenwidgets that brings it, if any)
PACKAGES = {
    "pandas": ("pandas", None),
    "umap": ("umap-learn", "umap"),
    "sklearn": ("scikit-learn", None),
    "transformers": ("transformers", "transformer"),
    "vl_convert": ("vl-convert-python", None),
    "tensorboard": ("tensorboard", "tensorboard"),
    "lightning": ("lightning", "frameworks"),
}


def require(module: str, feature: str) -> ModuleType:
    """Import ``module`` for ``feature`` or raise ModuleNotFoundError saying what to install."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.split(".")[0] != module.split(".")[0]:
            raise  # the package is there but something it imports is not: its own error says what
        package, extra = PACKAGES.get(module.split(".")[0], (module.split(".")[0], None))
        hint = f"pip install {package}" + (f" (or pip install 'hiddenwidgets[{extra}]')" if extra else "")
        raise ModuleNotFoundError(f"{feature} needs the optional package {package!r}, which is not installed: "
                                  f"{hint}", name=exc.name) from exc
