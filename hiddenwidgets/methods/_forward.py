"""Calling the user's model the way it wants to be called, and reading its class scores.

Every method calls the model through :class:`ModelCall`: ``model(*inputs, *additional_forward_args,
**forward_kwargs)``, with the logits read from the output (a tensor, ``output.logits`` of a Hugging Face
``ModelOutput``, or the first element of a tuple), and, for a callable ``target``, the score it returns. Captum
receives the extra arguments as its ``additional_forward_args`` (keyword values appended), so that it expands
tensors with a batch dimension whenever it expands the inputs (Integrated Gradients' steps, perturbation
batches).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .base import AttributionError, Targets

__all__ = ["ModelCall", "call_failure", "read_logits"]


def read_logits(out: Any) -> tuple[torch.Tensor, str]:
    """(logits, how they were read) from a model's output: the tensor itself, ``output.logits`` of a mapping or
    ``ModelOutput``, or the first element of a tuple/list when it is a tensor."""
    if isinstance(out, torch.Tensor):
        return out, "the output tensor"
    if isinstance(out, Mapping) or hasattr(out, "logits"):
        logits = out.get("logits") if isinstance(out, Mapping) else getattr(out, "logits", None)
        if isinstance(logits, torch.Tensor):
            return logits, f"output.logits ({type(out).__name__})"
        keys = [k for k, v in out.items() if v is not None] if isinstance(out, Mapping) else []
        raise AttributionError(f"the model returned {type(out).__name__}" + (f" with fields {keys}" if keys else "")
                               + " and no 'logits': attribution needs the class scores; wrap the model so that "
                               "it returns them (e.g. forward(x) -> model(x)['my_scores'])")
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor) \
            and not isinstance(out, nn.utils.rnn.PackedSequence):
        return out[0], f"output[0] of a {type(out).__name__} of {len(out)}"
    raise AttributionError(f"the model returned {type(out).__name__}, with no tensor of class scores to read; "
                           "wrap the model so that it returns (N, classes) logits")


class ModelCall(nn.Module):
    """The user's model as a function of its inputs alone: ``call(*inputs, *call.extra)`` runs
    ``model(*inputs, *args, **kwargs)`` and returns the (N, classes) logits, or with ``return_scores`` the (N,)
    scores of a callable target.

    The first call checks what later calls rely on: with class-index targets, the logits are (N, classes) and the
    targets within range; a callable target returns one float score per input. ``read`` says how the logits were
    found in the output.
    """

    def __init__(self, model: nn.Module, n_inputs: int, args: Sequence[Any] = (),
                 kwargs: Mapping[str, Any] | None = None, targets: Targets | None = None,
                 return_scores: bool = False):
        super().__init__()
        self.model = model  # a child, so that Captum's DeepLift, Guided Backprop and LRP find its modules
        kwargs = dict(kwargs or {})
        # plain attributes, never registered as submodules or buffers
        self.__dict__.update(n_inputs=n_inputs, n_args=len(args), kw_names=tuple(kwargs),
                             extra=(*args, *kwargs.values()), targets=targets, return_scores=return_scores, read="",
                             _checked=False)

    def forward(self, *flat: Any) -> torch.Tensor:
        logits, read = read_logits(self._run(flat[: self.n_inputs], flat[self.n_inputs :]))
        first = not self._checked
        self._checked = True
        if first:
            self.read = read
            self._check(logits)
        if not self.return_scores:
            return logits
        scores = self.targets.score(logits)
        if first:
            self._check_scores(scores, logits)
        return scores

    def _run(self, inputs: Sequence[Any], extra: Sequence[Any]) -> Any:
        return self.model(*inputs, *extra[: self.n_args], **dict(zip(self.kw_names, extra[self.n_args :],
                                                                      strict=True)))

    def _check(self, logits: torch.Tensor) -> None:
        if self.targets is None or self.targets.indices is None:
            return
        if logits.ndim != 2:
            raise AttributionError(f"target class indices need (N, classes) outputs; the model gives "
                                   f"{tuple(logits.shape)} ({self.read}); pass a callable target that maps the "
                                   "output to one score per input, e.g. target=lambda out: out[:, 3].sum((1, 2))")
        if self.targets.indices.numel():
            classes = logits.shape[1]
            t = self.targets.indices
            bad = t[(t < 0) | (t >= classes)]
            if bad.numel():
                raise AttributionError(f"target {bad[0].item()} is out of range: the model outputs {classes} "
                                       f"classes (valid targets 0..{classes - 1})")

    def _check_scores(self, scores: Any, logits: torch.Tensor) -> None:
        if not isinstance(scores, torch.Tensor) or scores.shape != logits.shape[:1]:
            got = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
            raise AttributionError(f"a callable target must map the model's (B, ...) output to one score per input, "
                                   f"shape ({logits.shape[0]},); it returned {got} for an output of "
                                   f"{tuple(logits.shape)}")
        if not scores.is_floating_point():
            raise AttributionError(f"a callable target must return float scores; it returned {scores.dtype}")

    def rows(self, index: torch.Tensor | int, n: int) -> tuple[Any, ...]:
        """The extra arguments for the rows ``index`` of a batch of ``n``: tensors whose first dimension is ``n``
        are indexed (a per-example mask, lengths), everything else passes unchanged."""
        if isinstance(index, int):
            index = torch.tensor([index])
        return tuple(a[index.to(a.device)] if isinstance(a, torch.Tensor) and a.ndim and a.shape[0] == n else a
                     for a in self.extra)

    def logits_of(self, inputs: Sequence[torch.Tensor], extra: Sequence[Any] | None = None) -> torch.Tensor:
        """The logits (never the score) for ``inputs``, with ``extra`` in place of :attr:`extra`."""
        return read_logits(self._run(inputs, self.extra if extra is None else tuple(extra)))[0]


def call_failure(model: nn.Module, inputs: Sequence[torch.Tensor], err: Exception) -> AttributionError:
    """An AttributionError for a model that failed on its first call with ``inputs``: a TypeError suggests its
    missing arguments, anything else the input its first layer expects."""
    shapes = ", ".join(str(tuple(x.shape)) for x in inputs)
    if isinstance(err, TypeError):
        return AttributionError(f"the model could not be called with the inputs ({shapes}): {err}. If it takes more "
                                "than its inputs, pass the rest as additional_forward_args=(...) (positional, after "
                                "the inputs) or forward_kwargs={...} (by name)")
    first = next((m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Conv1d, nn.Linear, nn.Embedding))),
                 None)
    if isinstance(first, (nn.Conv1d, nn.Conv2d)):
        want = f"(N, {first.in_channels}, ...) for its first layer {type(first).__name__}"
    elif isinstance(first, nn.Linear):
        want = f"(N, {first.in_features}) features for its first layer Linear"
    elif isinstance(first, nn.Embedding):
        want = f"integer ids below {first.num_embeddings} for its first layer Embedding"
    else:
        want = "what its first layer takes"
    return AttributionError(f"the model cannot take inputs of shape {shapes}: it expects {want} ({err})")
