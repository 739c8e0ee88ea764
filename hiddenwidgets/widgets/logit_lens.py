"""LogitLens: what each layer of a transformer predicts at each position (nostalgebraist 2020's logit lens, or
Belrose et al. 2023's tuned lens), as a layer × position grid; live while the model trains.

This file also holds what the three transformer views share (:class:`TransformerView`): turning text or ids into
one recorded pass, recomputing while a model trains (``step()``, at most ``overhead`` of the training time), the
recorded steps to look back at, and the rate limit shared with every other view.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
import traitlets

from ..analysis import transformers as T
from ..pipeline.checks import check_choice, check_int, check_number, keywords_checked, what
from ..pipeline.model_state import note_training_step
from ..pipeline.transport import SHARED_BUDGET, encode
from ._base import HiddenWidget, model_name

__all__ = ["LogitLens", "TransformerView"]

STATISTICS = ("entropy", "cross_entropy", "kl_to_final", "top1_prob")
MAX_TOKENS = 1024  # longer sequences are refused (a view pages through at most this many positions)
HISTORY = 64  # recorded training steps kept; beyond, every other one is thinned (the view says how many)


def _np32(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().float().cpu().numpy(), dtype=np.float32)


class TransformerView(HiddenWidget):
    """Shared by LogitLens, AttentionView and TokenFlow: one sequence of one model, recomputed on demand."""

    title = traitlets.Unicode("").tag(sync=True)
    status = traitlets.Unicode("", help="What was computed, or why not (read-only).").tag(sync=True)
    text = traitlets.Unicode("", help="The text shown; editable in the view when there is a tokenizer.").tag(
        sync=True)
    editable = traitlets.Bool(False, help="Whether the view may edit the text (a tokenizer is needed).").tag(
        sync=True)
    steps = traitlets.List(traitlets.Int(), help="Training steps recorded by step() (read-only).").tag(sync=True)
    shown_step = traitlets.Int(-1, help="Recorded step shown; -1 follows the latest.").tag(sync=True)
    thinned = traitlets.Int(0, help="Recorded steps thinned away to keep at most 64 (read-only).").tag(sync=True)
    _state = traitlets.Dict(help="What the view shows, {header, data}.").tag(sync=True)

    def _setup(self, model: torch.nn.Module, source: Any, tokenizer: Any, tokens: Any, sequence: int,
               every: int | None, overhead: float, trace_kw: dict[str, Any]) -> None:
        if not isinstance(model, torch.nn.Module):
            raise T.TransformerError(f"model must be a torch.nn.Module; got {what(model)}")
        self.model, self.tokenizer, self.tokens_given = model, tokenizer, tokens
        self.sequence = check_int(sequence, "sequence", minimum=0, error=T.TransformerError)
        self.every = None if every is None else check_int(every, "every", minimum=1, error=T.TransformerError)
        self.overhead = check_number(overhead, "overhead", minimum=0, maximum=1, error=T.TransformerError)
        self.trace_kw = trace_kw
        self._history: list[tuple[int, dict]] = []
        self._step = 0
        self._spent = 0.0
        self._since: float | None = None  # the first step(): the budget counts training time only
        self._pending: dict | None = None
        self.source = source
        self._inputs = self._encode(source)

    # -- inputs ----------------------------------------------------------------------------------------------
    def _encode(self, source: Any) -> Any:
        if isinstance(source, str):
            if self.tokenizer is None:
                raise T.TransformerError("text needs a tokenizer: pass tokenizer=, or token ids with tokens=[the "
                                         "token strings] (a model without a tokenizer)")
            inputs = self.tokenizer(source, return_tensors="pt")
        else:
            inputs = source
        first = inputs["input_ids"] if isinstance(inputs, dict) or hasattr(inputs, "keys") else inputs
        if isinstance(first, torch.Tensor) and first.dim() >= 2 and first.shape[1] > MAX_TOKENS:
            raise T.TransformerError(f"the sequence has {first.shape[1]} tokens; these views take at most "
                                     f"{MAX_TOKENS} (they page through them). Pass a shorter window, e.g. "
                                     f"ids[:, :{MAX_TOKENS}]")
        return inputs

    def _trace(self, attention: bool = False) -> T.Trace:
        return T.trace(self.model, self._inputs, attention=attention, tokenizer=self.tokenizer,
                       tokens=self.tokens_given, **self.trace_kw)

    @traitlets.observe("text")
    def _text_changed(self, change: dict) -> None:
        if not hasattr(self, "_inputs") or not self.editable or change["new"] == getattr(self, "_text_shown", None):
            return
        try:
            self._inputs = self._encode(change["new"])
            self.refresh()
        except Exception as err:  # a bad edit is shown in the view, never raised into the comm thread
            self.status = f"could not recompute: {err}"

    # -- computing and publishing ------------------------------------------------------------------------------
    def _compute(self) -> dict:
        raise NotImplementedError

    def refresh(self) -> None:
        """Recompute on the current weights and text, and show it."""
        with self._state_lock:
            payload = self._compute()
            self._publish(payload, force=True)

    def _publish(self, payload: dict, force: bool = False) -> None:
        if self.shown_step >= 0 and not force:
            return
        if not force and not SHARED_BUDGET.try_take():
            self._pending = payload  # sent with the next step, or by flush()
            return
        self._pending = None
        with self.hold_sync():
            self._text_shown = self.text
            self._state = payload

    def flush(self) -> None:
        """Send what is computed but not yet shown (``save_html`` calls it)."""
        if self._pending is not None:
            self._publish(self._pending, force=True)

    def step(self, step: int | None = None) -> bool:
        """Call once per training step: recomputes on the current weights when due (every ``every`` steps; by
        default whenever the time spent here stays under ``overhead`` of the time since the first ``step()``),
        records it under the step number for the step slider, and shows it. Returns whether it recomputed.

        The time budget counts from the first ``step()``, so time spent before training (a view created, then a
        pause) is not spent on a burst of recomputations."""
        self._step = self._step + 1 if step is None else check_int(step, "step", minimum=0,
                                                                   error=T.TransformerError)
        # between two training steps, on the training thread: an edit in the view (computed on the comm thread)
        # then works on a snapshot of these weights, never on the model mid-step (model_state.model_for_work)
        note_training_step(self.model, self._step)
        if self._pending is not None and SHARED_BUDGET.try_take():
            self._publish(self._pending, force=True)
        if self._since is None:
            self._since = time.monotonic()
        elapsed = time.monotonic() - self._since
        due = (self._step % self.every == 0) if self.every else (self._spent <= self.overhead * elapsed)
        if not due:
            return False
        started = time.monotonic()
        with self._state_lock:
            payload = self._compute()
            payload["header"]["step"] = self._step
            self._history.append((self._step, payload))
            if len(self._history) > HISTORY:
                self._history = self._history[::2]
                self.thinned += HISTORY // 2
            self.steps = [s for s, _ in self._history]
            self._publish(payload)
        self._spent += time.monotonic() - started
        return True

    @traitlets.observe("shown_step")
    def _show_step(self, change: dict) -> None:
        if change["new"] < 0:
            if self._history:
                self._publish(self._history[-1][1], force=True)
            return
        for s, payload in self._history:
            if s == change["new"]:
                self._publish(payload, force=True)
                return

    @traitlets.validate("shown_step")
    def _valid_step(self, proposal: dict) -> int:
        value = proposal["value"]
        if value >= 0 and value not in [s for s, _ in getattr(self, "_history", [])]:
            raise traitlets.TraitError(f"step {value} was not recorded; recorded: {self.steps}")
        return value

    def close(self) -> None:
        """Nothing runs in the background: closing only closes the widget."""
        super().close()


class LogitLens(TransformerView):
    """The logit lens (nostalgebraist 2020) of ``model`` on one text: for every layer (rows) and position
    (columns), the top token the layer's residual decodes to, coloured by the chosen ``statistic`` (entropy,
    cross-entropy against the next token, KL to the final layer, top-1 probability); the top-k on hover. With a
    ``tuned`` lens (:func:`~hiddenwidgets.analysis.transformers.fit_tuned_lens`) it shows Belrose et al. 2023's
    tuned lens instead.

    ``source``: text (with ``tokenizer``), token ids (1, T) or a tokenizer's output; ``tokens``: token strings
    when there is no tokenizer; ``vocab``: id → string for the predictions. Editing the text in the view
    recomputes (debounced). ``step()`` in a training loop recomputes live (see :class:`TransformerView`).
    """

    _view_file = "logit_lens"

    statistic = traitlets.Unicode("entropy", help="Colour of the cells: " + ", ".join(STATISTICS)).tag(sync=True)

    def _describe(self) -> str:
        return (f"the logit lens of {model_name(self.model)} on one text: each layer's next-token prediction per token"
                + (f" ({self.status})" if self.status else ""))

    @keywords_checked
    def __init__(self, model: torch.nn.Module, source: Any, *, tokenizer: Any = None, tokens: Any = None,
                 vocab: Any = None, k: int = 5, tuned: T.TunedLens | None = None, statistic: str = "entropy",
                 sequence: int = 0, every: int | None = None, overhead: float = 0.03,
                 final_norm: Any = "auto", unembed: Any = "auto", title: str = "Logit lens"):
        statistic = check_choice(statistic, "statistic", STATISTICS, T.TransformerError)
        self.k = check_int(k, "k", minimum=1, maximum=20, error=T.TransformerError)
        self.tuned = tuned
        super().__init__(title=title if tuned is None else title.replace("Logit", "Tuned"), statistic=statistic,
                         text=source if isinstance(source, str) else "", editable=isinstance(source, str) and
                         tokenizer is not None)
        self._setup(model, source, tokenizer, tokens, sequence, every, overhead,
                    {"vocab": vocab, "final_norm": final_norm, "unembed": unembed})
        self.refresh()

    @traitlets.validate("statistic")
    def _valid_statistic(self, proposal: dict) -> str:
        return check_choice(proposal["value"], "statistic", STATISTICS, traitlets.TraitError)

    def _compute(self) -> dict:
        tr = self._trace()
        self.result = lens = T.logit_lens(tr, k=self.k, tuned=self.tuned)
        s = min(self.sequence, tr.mask.shape[0] - 1)
        keep = tr.mask[s]
        n = int(keep.sum())
        where = keep.nonzero()[:, 0]
        top = lens.topk_ids[:, s][:, where]  # (L+1, n, k)
        words = [[[lens.vocab(int(i)) for i in cell] for cell in row] for row in top.tolist()]
        targets = lens.targets[s][where].tolist() if lens.targets is not None else [-1] * n
        header = {"layers": lens.layer_names, "tokens": [tr.tokens[s][j] for j in where.tolist()],
                  "targets": [lens.vocab(t) if t >= 0 else "" for t in targets], "top": words,
                  "target_kind": lens.target, "lens": lens.lens, "k": self.k, "step": -1}
        arrays = {"entropy": _np32(lens.entropy[:, s][:, where]),
                  "cross_entropy": _np32(lens.cross_entropy[:, s][:, where]),
                  "kl_to_final": _np32(lens.kl_to_final[:, s][:, where]),
                  "top_probs": _np32(lens.topk_probs[:, s][:, where])}
        arrays["top1_prob"] = np.ascontiguousarray(arrays["top_probs"][..., 0])
        index, data = encode(arrays)
        header["index"] = index
        self.status = (f"{lens.lens} lens · {len(lens.layer_names)} layers × {n} tokens · cross-entropy against the "
                       f"{'next token' if lens.target == 'next' else 'token itself'}")
        return {"header": header, "data": data}
