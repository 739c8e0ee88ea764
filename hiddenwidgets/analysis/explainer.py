"""One forward pass of a network on one input, every layer recorded, and the arithmetic of any unit.

The course view of CNN Explainer (Wang et al., *CNN Explainer: Learning Convolutional Neural Networks with
Interactive Visualization*, IEEE VIS 2020) for any PyTorch model:

- :func:`explain_network` runs the model once on one input with hooks on every module and records, in execution
  order, each leaf module's input and output (a :class:`Step`). The graph comes from that forward pass: where a
  module's input is not the previous step's output, the pass is searched for what it is: an earlier output (a
  branch, e.g. a shortcut's projection reading the block's input) or the sum of two earlier values (a skip
  connection: an ``add`` step is inserted, and the module that holds it becomes a residual :class:`Group`). What
  cannot be explained that way is said in ``notes``. ``torch.fx`` is tried too: where it traces, the layout holds
  for every input; where it does not (control flow on values), ``notes`` says the overview shows this input's
  path only.
- :meth:`NetworkTrace.unit` gives the arithmetic of one output unit from the recorded tensors and the module's
  weights: convolution (receptive field per input channel, kernel slice, products, sums, bias; stride, padding,
  dilation and groups handled), pooling (window and max or mean), linear (every product w·x, largest first, sum,
  bias), batch norm, element-wise activations, softmax (exponentials and normaliser), flatten, the skip ``add``.
  Every unit's ``output`` is the value the model computed (hooked); ``value`` is what the shown numbers add up
  to. A layer type without known arithmetic gives its input and output and says so.

Nothing of the model changes: hooks are removed in ``finally``, the pass runs in eval mode
(:func:`~hiddenwidgets.pipeline.model_state.evaluation_mode`) without gradients, on a private copy of the weights
while another thread trains the model (:func:`~hiddenwidgets.pipeline.model_state.model_for_work`).
"""

from __future__ import annotations

import contextlib
import math
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..pipeline.checks import keywords_checked, what
from ..pipeline.model_state import evaluation_mode, model_for_work

__all__ = ["ExplainerError", "Group", "NetworkTrace", "Step", "explain_network"]

_ACTIVATIONS: dict[type, tuple[str, str]] = {
    nn.ReLU: ("relu", "max(0, x)"), nn.ReLU6: ("relu6", "min(max(0, x), 6)"),
    nn.LeakyReLU: ("leaky_relu", "x if x ≥ 0 else slope·x"), nn.Sigmoid: ("sigmoid", "1 / (1 + exp(−x))"),
    nn.Tanh: ("tanh", "tanh(x)"), nn.GELU: ("gelu", "x·Φ(x)"), nn.ELU: ("elu", "x if x > 0 else α(exp(x) − 1)"),
    nn.SiLU: ("silu", "x·sigmoid(x)"), nn.Softplus: ("softplus", "log(1 + exp(x))"),
    nn.Hardtanh: ("hardtanh", "min(max(x, lo), hi)"), nn.Mish: ("mish", "x·tanh(softplus(x))"),
    nn.Identity: ("identity", "x"), nn.Dropout: ("identity", "x (dropout does nothing in eval mode)"),
    nn.Dropout2d: ("identity", "x (dropout does nothing in eval mode)"),
}
_CLOSE = {"rtol": 1e-5, "atol": 1e-6}


class ExplainerError(ValueError):
    """The network explainer cannot do what was asked (the message says what was wrong and what to try)."""


@dataclass(repr=False)
class Step:
    """One computation of the forward pass: a leaf module's call, or an ``add`` the explainer found (a skip).

    ``input``/``output`` are this input's tensors without the batch dimension (copies taken when the module ran,
    so an in-place activation cannot overwrite them). ``sources``: the steps whose outputs form the input (-1: the
    model's input). ``kind``: conv2d, linear, maxpool2d, avgpool2d, adaptive_maxpool2d, adaptive_avgpool2d,
    batchnorm, activation, softmax, log_softmax, flatten, add or unknown.
    """

    index: int
    name: str
    kind: str
    type: str
    input: torch.Tensor
    output: torch.Tensor
    module: nn.Module | None = None
    sources: list[int] = field(default_factory=list)
    path: tuple[str, ...] = ()
    call: int = 1
    added: bool = False
    notes: list[str] = field(default_factory=list)
    operands: tuple[torch.Tensor, torch.Tensor] | None = None  # for "add"
    versions: tuple[int, ...] = ()  # the module's parameters' and buffers' versions when it ran

    @property
    def label(self) -> str:
        return self.name if self.call == 1 else f"{self.name} (call {self.call})"

    def __repr__(self) -> str:
        return (f"Step({self.index}, {self.label!r}, {self.kind}, {self.type}, output {tuple(self.output.shape)}, "
                f"from {self.sources})")


@dataclass
class Group:
    """A module whose steps run as a residual block: ``first``..``last`` (step indices), ``add`` the skip step."""

    name: str
    first: int
    last: int
    add: int
    skip_from: int


@dataclass(repr=False)
class NetworkTrace:
    """What :func:`explain_network` recorded; see the module docstring."""

    steps: list[Step]
    groups: list[Group]
    input: torch.Tensor
    output: torch.Tensor
    graph: str
    notes: list[str]

    def __repr__(self) -> str:
        return (f"NetworkTrace({len(self.steps)} steps, {len(self.groups)} residual groups, layout from "
                f"{self.graph}, output {tuple(self.output.shape)}" + (f", {len(self.notes)} notes" if self.notes
                                                                      else "") + ")")

    def step(self, key: int | str) -> Step:
        """The step at that position, or of that module name (its first call)."""
        if isinstance(key, str):
            for s in self.steps:
                if s.name == key:
                    return s
            names = [s.name for s in self.steps]
            from ..pipeline.checks import closest_name
            hint = closest_name(key, names)
            raise ExplainerError(f"no step named {key!r}" + (f"; did you mean {hint!r}?" if hint else "")
                                 + f" The steps: {', '.join(names)}")
        if isinstance(key, bool) or not isinstance(key, (int, np.integer)) or not 0 <= int(key) < len(self.steps):
            raise ExplainerError(f"step must be an int in [0, {len(self.steps)}) or a module name; got {what(key)}")
        return self.steps[int(key)]

    def unit(self, step: int | str, index: int | Sequence[int]) -> dict[str, Any]:
        """The arithmetic of one output unit of ``step`` (``index`` into its output, without the batch
        dimension: ``(channel, row, column)`` for a feature map, ``j`` for a vector).

        Returns a dict: ``kind``, ``output`` (the value the model computed), ``value`` (what the shown numbers
        make), the numbers as numpy arrays (see the module docstring for each kind), ``formula`` and ``note``.
        """
        s = self.step(step)
        idx = _check_index(index, tuple(s.output.shape), s.label)
        if s.module is not None and _versions(s.module) != s.versions:
            raise ExplainerError(
                f"the weights of {s.label} changed after this trace was recorded (the model was trained "
                "meanwhile): its arithmetic would mix two sets of weights. Explain the input again "
                "(explain_network, or view.show) for the current weights")
        out = float(s.output[idx])
        base = {"step": s.index, "name": s.label, "kind": s.kind, "index": list(idx), "output": out, "note": ""}
        maker = _UNITS.get(s.kind)
        if maker is None:
            base.update(value=None, x=s.input.flatten().numpy().astype(np.float32),
                        note=f"the explainer does not know the arithmetic of {s.type}: its input and output are "
                        "shown without it")
            return base
        base.update(maker(s, idx))
        if s.kind in ("conv2d", "linear"):
            base["then"] = self._then(s, idx)
        return base

    def _then(self, s: Step, idx: tuple[int, ...]) -> list[dict[str, Any]]:
        """The element-wise steps that follow (batch norm, activation), applied to this unit."""
        chain, k = [], s.index + 1
        while k < len(self.steps):
            nxt = self.steps[k]
            if nxt.kind not in ("batchnorm", "activation") or nxt.sources != [k - 1] \
                    or tuple(nxt.output.shape) != tuple(s.output.shape):
                break
            u = self.unit(k, idx)
            chain.append({"step": k, "name": nxt.label, "kind": nxt.kind, "input": float(nxt.input[idx]),
                          "output": u["output"], "value": u["value"], "formula": u.get("formula", "")})
            k += 1
        return chain

    def summary(self) -> list[dict[str, Any]]:
        """One row per step: index, name, kind, type, output shape, sources, group, notes."""
        group_of = {}
        for g in self.groups:
            for i in range(g.first, g.last + 1):
                group_of.setdefault(i, g.name)
        return [{"index": s.index, "name": s.label, "kind": s.kind, "type": s.type, "shape": list(s.output.shape),
                 "sources": list(s.sources), "group": group_of.get(s.index, ""), "path": list(s.path),
                 "added": s.added, "notes": list(s.notes)} for s in self.steps]


# ----------------------------------------------------------------------------------------------------------------
# recording
def _first_tensor(value: Any) -> tuple[torch.Tensor | None, int]:
    """The first tensor in a module's arguments or output, and how many tensors there were."""
    if isinstance(value, torch.Tensor):
        return value, 1
    if isinstance(value, (tuple, list)):
        found = [v for v in value if isinstance(v, torch.Tensor)]
        return (found[0] if found else None), len(found)
    if isinstance(value, Mapping):
        found = [v for v in value.values() if isinstance(v, torch.Tensor)]
        return (found[0] if found else None), len(found)
    return None, 0


def _kind(module: nn.Module) -> str:
    if isinstance(module, nn.Conv2d):
        return "conv2d"
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, nn.MaxPool2d):
        return "maxpool2d"
    if isinstance(module, nn.AvgPool2d):
        return "avgpool2d"
    if isinstance(module, nn.AdaptiveMaxPool2d):
        return "adaptive_maxpool2d"
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return "adaptive_avgpool2d"
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)) and module.track_running_stats:
        return "batchnorm"
    if isinstance(module, nn.Softmax):
        return "softmax"
    if isinstance(module, nn.LogSoftmax):
        return "log_softmax"
    if isinstance(module, nn.Flatten):
        return "flatten"
    if type(module) in _ACTIVATIONS:
        return "activation"
    return "unknown"


@keywords_checked
def explain_network(model: nn.Module, x: torch.Tensor, *, softmax: bool | None = None) -> NetworkTrace:
    """Run ``model`` on one input ``x`` (without a batch dimension, or a batch of one) and record every step.

    ``softmax``: add a softmax step over the model's output (labelled as added, not the model's) so that the
    overview ends in class probabilities; by default when the model outputs one vector that is not already a
    softmax. Implements the overview of CNN Explainer (Wang et al., IEEE VIS 2020) for any model.

    Raises :class:`ExplainerError` for a model that is not a module, an input that is not a floating tensor, or a
    model that does not return a tensor.
    """
    if not isinstance(model, nn.Module):
        raise ExplainerError(f"model must be a torch.nn.Module; got {what(model)}")
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ExplainerError(f"x must be a floating-point tensor (one input, e.g. an image (C, H, W)); got "
                             f"{what(x)}")
    if softmax is not None and not isinstance(softmax, bool):
        raise ExplainerError(f"softmax must be True, False or None; got {what(softmax)}")
    work = model_for_work(model)
    params = next(work.parameters(), None)
    batch = x.unsqueeze(0) if not (x.dim() >= 1 and x.shape[0] == 1 and _expects_batch_of(work, x)) else x
    if params is not None:
        batch = batch.to(params.device, params.dtype if params.is_floating_point() else batch.dtype)
    names = {m: n for n, m in work.named_modules()}
    events: list[tuple[str, Any]] = []
    stack: list[dict[str, Any]] = []
    calls: dict[str, int] = {}
    handles = []

    def pre(module: nn.Module, args: Any) -> None:
        t, count = _first_tensor(args)
        stack.append({"module": module, "input": None if t is None else _take(t), "count": count,
                      "first": len(events)})

    def post(module: nn.Module, _args: Any, output: Any) -> None:
        frame = stack.pop()
        t, count = _first_tensor(output)
        name = names.get(module, type(module).__name__)
        leaf = next(module.children(), None) is None
        calls[name] = calls.get(name, 0) + 1
        events.append(("leaf" if leaf else "end", {
            "module": module, "name": name, "input": frame["input"], "n_inputs": frame["count"],
            "output": None if t is None else _take(t), "n_outputs": count, "call": calls[name],
            "path": tuple(names.get(f["module"], "") for f in stack), "first": frame["first"],
            "versions": _versions(module) if leaf else ()}))

    try:
        for module in work.modules():
            handles.append(module.register_forward_pre_hook(pre))
            handles.append(module.register_forward_hook(post))
        with evaluation_mode(work), torch.no_grad():
            out = work(batch)
    finally:
        for handle in handles:
            handle.remove()
    out_t, _ = _first_tensor(out)
    if out_t is None:
        raise ExplainerError(f"the model returned {what(out)}; the explainer needs a tensor (the model's output)")
    graph, notes = _fx_note(work)
    x0, y0 = _cpu(_take(batch)), _cpu(_take(out_t))
    steps, groups, more = _build(events, x0, y0)
    notes += more
    if softmax is None:
        softmax = out_t.dim() == 2 and (not steps or steps[-1].kind not in ("softmax", "log_softmax"))
    if softmax:
        logits = y0.float()
        if logits.dim() != 1:
            raise ExplainerError(f"softmax=True needs a model that outputs one vector per input; its output has "
                                 f"shape {tuple(out_t.shape)}")
        steps.append(Step(len(steps), "softmax", "softmax", "softmax (added)", logits, torch.softmax(logits, 0),
                          sources=[len(steps) - 1], added=True,
                          notes=["added by the explainer: the model outputs scores (logits); the softmax turns "
                                 "them into class probabilities"]))
    return NetworkTrace(steps, groups, x0, y0, graph, notes)


def _expects_batch_of(model: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``x`` already carries a batch dimension of one: the first conv's / linear's input rank says."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return x.dim() == 4
        if isinstance(m, nn.Conv1d):
            return x.dim() == 3
        if isinstance(m, nn.Linear):
            return x.dim() == 2
    return False


_FX: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, tuple[str, list[str]]]] = weakref.WeakKeyDictionary()


def _fx_note(model: nn.Module) -> tuple[str, list[str]]:
    """Whether torch.fx traces the model (cached per model and module structure: tracing costs more than the
    forward pass of a small model, and a drawing reruns the explainer many times a second)."""
    signature = tuple((name, type(m)) for name, m in model.named_modules())
    cached = _FX.get(model)
    if cached is not None and cached[0] == signature:
        return cached[1][0], list(cached[1][1])
    result = _fx_trace(model)
    with contextlib.suppress(TypeError):  # a module that cannot be weakly referenced is traced every time
        _FX[model] = (signature, result)
    return result[0], list(result[1])


def _fx_trace(model: nn.Module) -> tuple[str, list[str]]:
    try:
        import torch.fx

        torch.fx.symbolic_trace(model)
    except Exception as err:  # control flow on values, unsupported calls: the hooks still saw what ran
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return "execution order", [
            f"torch.fx cannot trace this model ({type(err).__name__}: {first[:160]}); the overview shows the "
            "modules in the order they ran for this input, which another input may change"]
    return "torch.fx", []


def _take(t: torch.Tensor) -> torch.Tensor:
    """A copy of the first item of a batch, taken when a module runs (an in-place activation later cannot
    overwrite it). Few torch calls: each releases the GIL, and while a busy cell's loop holds it, getting it back
    costs up to the switch interval (5 ms), so calls, not arithmetic, set the time of a drawing in a busy kernel."""
    return (t.detach() if t.requires_grad else t)[0].clone()


def _cpu(t: torch.Tensor) -> torch.Tensor:
    return t if t.device.type == "cpu" else t.cpu()


def _versions(module: nn.Module) -> tuple[int, ...]:
    """The in-place version counters of a module's own parameters and buffers: they change with every optimizer
    step or running-statistics update, so a unit's arithmetic can tell whether the weights it reads are still
    those the recorded pass ran with."""
    return tuple(t._version for t in (*module.parameters(recurse=False), *module.buffers(recurse=False)))


def _same(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    return a is not None and b is not None and a.shape == b.shape and torch.equal(a, b)


def _build(events: list[tuple[str, Any]], x: torch.Tensor, y: torch.Tensor
           ) -> tuple[list[Step], list[Group], list[str]]:
    steps: list[Step] = []
    groups: list[Group] = []
    notes: list[str] = []
    values: list[tuple[int, torch.Tensor]] = [(-1, _cpu(x))]  # (producer, value), newest last
    steps_at: dict[int, int] = {}  # event position -> how many steps there were when it was processed

    def find(t: torch.Tensor) -> tuple[list[int], tuple[torch.Tensor, torch.Tensor] | None, str]:
        """Where a value comes from: an earlier value, or the sum of two (a skip connection)."""
        for producer, v in reversed(values):
            if _same(v, t):
                return [producer], None, ""
        for producer, v in reversed(values):
            if v.numel() == t.numel() and v.shape != t.shape and torch.equal(v.reshape(-1), t.reshape(-1)):
                return [producer], None, "reshaped"
        same = [(p, v) for p, v in reversed(values) if v.shape == t.shape][:16]
        for i, (pa, va) in enumerate(same):
            for pb, vb in same[i + 1:]:
                if torch.allclose(va + vb, t, **_CLOSE):
                    return [pb, pa] if pb < pa else [pa, pb], (vb, va) if pb < pa else (va, vb), "add"
        return [], None, ""

    def add_step(sources: list[int], operands: tuple[torch.Tensor, torch.Tensor], result: torch.Tensor,
                 where: str) -> int:
        k = len(steps)
        steps.append(Step(k, f"{where} + skip" if where else "add", "add", "add (in forward)", operands[0],
                          result.clone(), sources=sources, path=(where,) if where else (), added=True,
                          operands=operands,
                          notes=["an addition in the module's forward (a skip connection), found by matching the "
                                 "values: not a module of its own"]))
        values.append((k, result.clone()))
        return k

    def container_of(info: dict[str, Any]) -> str:
        return info["path"][-1] if info["path"] else ""

    last_add_in: dict[str, int] = {}
    for position, (event, info) in enumerate(events):
        steps_at[position] = len(steps)
        if event == "leaf":
            module, t_in, t_out = info["module"], info["input"], info["output"]
            kind = _kind(module) if t_out is not None else "unknown"
            step_notes = []
            sources: list[int] = []
            if t_in is None:
                step_notes.append("its input is not a tensor; shown without input")
                t_in = torch.zeros(0)
            else:
                t_in = _cpu(t_in)
                sources, operands, how = find(t_in)
                if how == "add" and operands is not None:
                    where = container_of(info)
                    k = add_step(sources, operands, t_in, where)
                    last_add_in[where] = k
                    sources = [k]
                elif how == "reshaped":
                    step_notes.append("its input is an earlier output reshaped in forward (not by a module)")
                elif not sources:
                    step_notes.append("its input is not an output of an earlier step: the model computes something "
                                      "before it outside modules that the overview does not show")
            if info["n_inputs"] > 1:
                step_notes.append(f"the module took {info['n_inputs']} tensors; the first is shown")
            if t_out is None:
                step_notes.append("its output is not a tensor; shown without output")
                t_out = torch.zeros(0)
                kind = "unknown"
            elif info["n_outputs"] > 1:
                step_notes.append(f"the module returned {info['n_outputs']} tensors; the first is shown")
                kind = "unknown"
            t_out = _cpu(t_out)
            steps.append(Step(len(steps), info["name"], kind, type(module).__name__, t_in, t_out, module=module,
                              sources=sources, path=info["path"], call=info["call"], notes=step_notes,
                              versions=info["versions"]))
            values.append((len(steps) - 1, t_out))
        else:  # a container ended: its output should be its last value, or a sum (a skip at its end)
            t_out = info["output"]
            name = info["name"]
            first = steps_at.get(info["first"], len(steps))
            if t_out is not None:
                t_out = _cpu(t_out)
                if not (steps and first < len(steps) and _same(values[-1][1], t_out)):
                    sources, operands, how = find(t_out)
                    if how == "add" and operands is not None:
                        last_add_in[name] = add_step(sources, operands, t_out, name)
                    elif not sources:
                        notes.append(f"{name or 'the model'} computes something after its last module that the "
                                     "overview does not show (its output is not an output of any step)")
            k = last_add_in.pop(name, None)
            if k is not None and first <= k:
                skip = min(s for s in steps[k].sources)
                groups.append(Group(name or "model", first, len(steps) - 1, k, skip))
    if steps and not _same(steps[-1].output, y):
        notes.append("the model's output is not the last step's output: the overview ends before the model does")
    return steps, groups, notes


# ----------------------------------------------------------------------------------------------------------------
# arithmetic of one unit
def _check_index(index: Any, shape: tuple[int, ...], label: str) -> tuple[int, ...]:
    idx = (index,) if isinstance(index, (int, np.integer)) and not isinstance(index, bool) else index
    if not isinstance(idx, (tuple, list)) or not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool)
                                                     for i in idx):
        raise ExplainerError(f"index must be an int or a tuple of ints into {label}'s output of shape {shape}; "
                             f"got {what(index)}")
    idx = tuple(int(i) for i in idx)
    if len(idx) != len(shape) or any(not 0 <= i < n for i, n in zip(idx, shape, strict=False)):
        raise ExplainerError(f"index {idx} is outside {label}'s output of shape {shape} (no batch dimension)")
    return idx


def _f32(a: Any) -> np.ndarray:
    return np.asarray(a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else a, dtype=np.float32)


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _window(i: int, j: int, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int],
            dilation: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The input rows and columns that a sliding window (convolution or pooling) reads for output ``(i, j)``:
    PyTorch's geometry, ``row = i·stride − padding + dilation·r`` for ``r`` in ``0..kernel−1`` (padded positions
    fall outside ``0..height−1``)."""
    rows = i * stride[0] - padding[0] + dilation[0] * np.arange(kernel[0])
    cols = j * stride[1] - padding[1] + dilation[1] * np.arange(kernel[1])
    return rows, cols


def _gather(x: torch.Tensor, rows: np.ndarray, cols: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """``x[:, rows, cols]`` as a (C, len(rows), len(cols)) block, zero where the window lies outside ``x``, and
    the mask of the positions inside."""
    height, width = x.shape[-2], x.shape[-1]
    inside = ((rows >= 0) & (rows < height))[:, None] & ((cols >= 0) & (cols < width))[None, :]
    block = torch.zeros(x.shape[0], len(rows), len(cols), dtype=x.dtype)
    rr, cc = np.nonzero(inside)
    block[:, rr, cc] = x[:, rows[rr], cols[cc]]
    return block, inside


def _conv(s: Step, idx: tuple[int, ...]) -> dict[str, Any]:
    m: nn.Conv2d = s.module  # type: ignore[assignment]
    c, i, j = idx
    kh, kw = m.kernel_size
    sh, sw = m.stride
    dh, dw = m.dilation
    if isinstance(m.padding, str):
        if m.padding == "valid":
            ph = pw = 0
        else:  # 'same': PyTorch pads the extra row/column at the end
            ph, pw = (dh * (kh - 1)) // 2, (dw * (kw - 1)) // 2
    else:
        ph, pw = m.padding
    per_group_in = m.in_channels // m.groups
    per_group_out = m.out_channels // m.groups
    g = c // per_group_out
    channels = np.arange(g * per_group_in, (g + 1) * per_group_in)
    rows, cols = _window(i, j, (kh, kw), (sh, sw), (ph, pw), (dh, dw))
    x = s.input[channels]
    patch, inside = _gather(x, rows, cols)
    fill = "zeros outside the input (padding)"
    if m.padding_mode != "zeros" and not inside.all():
        padded = F.pad(x.unsqueeze(0), (pw, pw, ph, ph), mode=m.padding_mode)[0]
        patch = padded[:, rows[:, None] + ph, cols[None, :] + pw]
        fill = f"padding values from {m.padding_mode} padding"
    kernel = m.weight.detach().cpu()[c]
    patch64, kernel64 = patch.double(), kernel.double()
    products = patch64 * kernel64
    sums = products.sum(dim=(1, 2))
    bias = float(m.bias.detach()[c]) if m.bias is not None else 0.0
    total = float(sums.sum())
    return {"channels": channels.astype(np.int32), "rows": rows.astype(np.int32), "cols": cols.astype(np.int32),
            "inside": inside.astype(np.uint8), "patch": _f32(patch), "kernel": _f32(kernel),
            "products": _f32(products), "channel_sums": _f32(sums), "sum": total, "bias": bias,
            "value": total + bias, "group": int(g), "stride": [sh, sw], "padding": [ph, pw], "dilation": [dh, dw],
            "formula": "Σ over input channels and kernel positions (input × weight) + bias", "fill": fill}


def _pool_window(s: Step, idx: tuple[int, ...], adaptive: bool) -> tuple[np.ndarray, np.ndarray, torch.Tensor,
                                                                          np.ndarray]:
    m = s.module
    c, i, j = idx
    if adaptive:  # PyTorch's adaptive windows: [floor(i·H/oh), ceil((i+1)·H/oh))
        height, width = s.input.shape[-2], s.input.shape[-1]
        oh, ow = s.output.shape[-2], s.output.shape[-1]
        rows = np.arange((i * height) // oh, -(-((i + 1) * height) // oh))
        cols = np.arange((j * width) // ow, -(-((j + 1) * width) // ow))
    else:
        rows, cols = _window(i, j, _pair(m.kernel_size), _pair(m.stride if m.stride is not None else m.kernel_size),
                             _pair(m.padding), _pair(getattr(m, "dilation", 1)))
    window, inside = _gather(s.input[c:c + 1], rows, cols)
    return rows, cols, window[0], inside


def _maxpool(s: Step, idx: tuple[int, ...], adaptive: bool = False) -> dict[str, Any]:
    rows, cols, window, inside = _pool_window(s, idx, adaptive)
    masked = window.double().masked_fill(torch.from_numpy(~inside), -math.inf)
    at = int(torch.argmax(masked))
    return {"rows": rows.astype(np.int32), "cols": cols.astype(np.int32), "inside": inside.astype(np.uint8),
            "window": _f32(window), "argmax": at, "value": float(masked.reshape(-1)[at]), "channel": idx[0],
            "formula": "max over the window (padding never wins)"}


def _avgpool(s: Step, idx: tuple[int, ...], adaptive: bool = False) -> dict[str, Any]:
    rows, cols, window, inside = _pool_window(s, idx, adaptive)
    m = s.module
    total = float(window.double().sum())
    if adaptive:
        divisor = float(inside.sum())
    elif getattr(m, "divisor_override", None):
        divisor = float(m.divisor_override)
    elif getattr(m, "count_include_pad", True):
        ph, pw = _pair(m.padding)  # padding counts; the part past the padded input (ceil_mode) does not
        height, width = s.input.shape[-2], s.input.shape[-1]
        divisor = float(((rows >= -ph) & (rows < height + ph)).sum() * ((cols >= -pw) & (cols < width + pw)).sum())
    else:
        divisor = float(inside.sum())
    return {"rows": rows.astype(np.int32), "cols": cols.astype(np.int32), "inside": inside.astype(np.uint8),
            "window": _f32(window), "sum": total, "divisor": divisor, "value": total / divisor, "channel": idx[0],
            "formula": "sum of the window / divisor"}


def _linear(s: Step, idx: tuple[int, ...]) -> dict[str, Any]:
    m: nn.Linear = s.module  # type: ignore[assignment]
    j = idx[-1]
    x = s.input[idx[:-1]] if s.input.dim() > 1 else s.input
    w = m.weight.detach().cpu()[j]
    products = x.double() * w.double()
    order = torch.argsort(products.abs(), descending=True, stable=True)
    bias = float(m.bias.detach()[j]) if m.bias is not None else 0.0
    total = float(products.sum())
    return {"x": _f32(x), "weights": _f32(w), "products": _f32(products), "order": order.numpy().astype(np.int32),
            "sum": total, "bias": bias, "value": total + bias, "formula": "Σ (weight × input) + bias"}


def _batchnorm(s: Step, idx: tuple[int, ...]) -> dict[str, Any]:
    m = s.module
    c = idx[0]
    x = float(s.input[idx])
    mean, var = float(m.running_mean[c]), float(m.running_var[c])
    gamma = float(m.weight.detach()[c]) if m.weight is not None else 1.0
    beta = float(m.bias.detach()[c]) if m.bias is not None else 0.0
    value = (x - mean) / math.sqrt(var + m.eps) * gamma + beta
    return {"input": x, "mean": mean, "var": var, "eps": float(m.eps), "gamma": gamma, "beta": beta,
            "value": value, "formula": "(x − mean) / √(var + eps) × γ + β (running statistics)"}


def _activation(s: Step, idx: tuple[int, ...]) -> dict[str, Any]:
    name, formula = _ACTIVATIONS[type(s.module)]
    x = float(s.input[idx])
    value = float(s.module(torch.tensor([x], dtype=torch.float64))[0]) if name != "identity" else x
    params = {}
    if isinstance(s.module, nn.LeakyReLU):
        params["slope"] = float(s.module.negative_slope)
    return {"input": x, "function": name, "formula": formula, "value": value, "params": params}


def _softmax(s: Step, idx: tuple[int, ...], log: bool = False) -> dict[str, Any]:
    dim = s.module.dim if s.module is not None else 0
    dim = (dim if dim is not None else 0) % max(1, s.input.dim())
    sl = list(idx)
    sl[dim] = slice(None)
    logits = s.input[tuple(sl)].double()
    top = float(logits.max())
    exps = torch.exp(logits - top)
    normaliser = float(exps.sum())
    k = idx[dim]
    value = float(exps[k]) / normaliser
    return {"logits": _f32(logits), "max": top, "exps": _f32(exps), "normaliser": normaliser, "position": k,
            "value": math.log(value) if log else value,
            "formula": ("log(" if log else "") + "exp(xᵢ − max) / Σⱼ exp(xⱼ − max)" + (")" if log else "")}


def _flatten(s: Step, idx: tuple[int, ...]) -> dict[str, Any]:
    m: nn.Flatten = s.module  # type: ignore[assignment]
    # the unit's position in the input: flatten keeps the row-major order of the flattened dimensions
    start = m.start_dim - 1 if m.start_dim > 0 else m.start_dim
    end = m.end_dim - 1 if m.end_dim > 0 else m.end_dim
    shape = list(s.input.shape)
    end = end % len(shape)
    start = start % len(shape)
    flat = idx[start]
    inner = np.unravel_index(flat, shape[start:end + 1])
    source = [*idx[:start], *(int(v) for v in inner), *idx[start + 1:]]
    return {"source": source, "value": float(s.input[tuple(source)]), "formula": "the same number, reshaped"}


def _add(s: Step, idx: tuple[int, ...]) -> dict[str, Any]:
    a, b = s.operands  # type: ignore[misc]
    return {"a": float(a[idx]), "b": float(b[idx]), "value": float(a[idx].double() + b[idx].double()),
            "formula": "a + b (main path + skip)"}


_UNITS = {
    "conv2d": _conv, "linear": _linear, "maxpool2d": _maxpool, "avgpool2d": _avgpool,
    "adaptive_maxpool2d": lambda s, i: _maxpool(s, i, True), "adaptive_avgpool2d": lambda s, i: _avgpool(s, i, True),
    "batchnorm": _batchnorm, "activation": _activation, "softmax": _softmax,
    "log_softmax": lambda s, i: _softmax(s, i, True), "flatten": _flatten, "add": _add,
}
