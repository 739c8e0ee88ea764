"""How hiddenwidgets touches a user's model: where its inputs go, and evaluation mode for one block with every
module's own mode and every parameter's ``requires_grad`` given back afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["evaluation_mode", "model_device"]


def model_device(model: nn.Module) -> torch.device:
    """Where ``model``'s parameters live (CPU for a model without parameters): where its inputs go."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


@contextlib.contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode for the block and give each its own previous mode back afterwards."""
    training = [m for m in model.modules() if m.training]
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    try:
        if training:  # (a model already in eval mode costs nothing here: attribute() is called per batch)
            model.eval()
        yield
    finally:
        for m in model.modules():  # eval() turned every module off; give back the ones that were on
            if m.training:
                m.training = False
        for m in training:
            m.training = True
        for p, flag in zip(params, flags, strict=True):
            if p.requires_grad != flag:
                p.requires_grad_(flag)
