"""Check, before anything else is imported, that Python and PyTorch are versions the package is tested on.

Without this, an old interpreter or torch fails far inside the package with a traceback that names neither.
The floors here are the ones CI runs (pyproject.toml declares the same); set HIDDENWIDGETS_ALLOW_UNTESTED=1 to
import anyway on an older PyTorch.
"""

from __future__ import annotations

import os
import sys

PYTHON_FLOOR = (3, 11)
TORCH_FLOOR = (2, 13)


def _release(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("+")[0].split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def check(python: tuple[int, ...] | None = None, torch_version: str | None = None) -> None:
    """Raise ImportError naming what is installed, what is needed and what to do."""
    python = tuple(sys.version_info[:2]) if python is None else python
    if python < PYTHON_FLOOR:
        raise ImportError(
            f"hiddenwidgets needs Python {'.'.join(map(str, PYTHON_FLOOR))} or newer; this is Python "
            f"{'.'.join(map(str, python))}. Create an environment with a newer Python."
        )
    if torch_version is None:
        try:
            import torch
        except ModuleNotFoundError as exc:
            raise ImportError(
                "hiddenwidgets needs PyTorch, which is not installed here. Install it first "
                "(https://pytorch.org/get-started/locally/ names the command for your machine, e.g. "
                "'pip install torch'), then import hiddenwidgets again."
            ) from exc
        torch_version = torch.__version__
    if _release(torch_version) < TORCH_FLOOR and not os.environ.get("HIDDENWIDGETS_ALLOW_UNTESTED"):
        raise ImportError(
            f"hiddenwidgets is tested on PyTorch {'.'.join(map(str, TORCH_FLOOR))} or newer; this environment has "
            f"{torch_version}. Upgrade with 'pip install -U torch', or set HIDDENWIDGETS_ALLOW_UNTESTED=1 to "
            "import anyway (hooks and torch.compile behave differently in older releases)."
        )


check()
