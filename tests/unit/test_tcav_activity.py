"""A TCAV computation tells its watchers that it runs, how far it is and how it ended (hiddenwidgets.analysis.tcav
.watch); ConceptScores shows that as its busy state, and says so when a computation fails."""

from __future__ import annotations

import gc
import weakref
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

import hiddenwidgets as hw
from hiddenwidgets.analysis.tcav import ConceptError, tcav, watch

from .test_tcav import DIRECTION, linear_model, shifted_data


def small_run(model=None, **kwargs):
    w = torch.stack([DIRECTION, -DIRECTION])
    x = shifted_data(200, 30)
    return tcav(model or linear_model(w), x, {"d": np.arange(30)}, ["h"], class_examples=np.arange(100, 200),
                random_sets=3, progress=False, **kwargs)


class Unused(nn.Module):
    """A model with a layer that never runs: TCAV fails while computing (not while checking its arguments)."""

    def __init__(self):
        super().__init__()
        self.h = nn.Identity()
        self.spare = nn.Identity()
        self.out = nn.Linear(8, 2).double()

    def forward(self, x):
        return self.out(self.h(x))


def test_watchers_see_start_progress_and_the_end():
    events = []
    stop = watch(events.append)
    try:
        small_run(epoch=4)
    finally:
        stop()
    assert events[0]["state"] == "running" and events[0]["done"] == 0
    assert events[-1]["state"] == "finished"
    total = events[0]["total"]
    # 1 pass for activations, 1 for the gradients (one class set), then 3 random-vs-random + 3 concept CAVs
    assert total == 1 + 1 + 3 + 3
    done = [e["done"] for e in events if e["state"] == "running"]
    assert done == list(range(total + 1))
    assert all(e["epoch"] == 4 and e["concepts"] == ["d"] and e["layers"] == ["h"] for e in events)
    small_run()  # after stop(): nothing more
    assert events[-1]["state"] == "finished" and len(events) == total + 2


def test_a_failure_is_told_and_raised_and_a_failing_watcher_changes_nothing():
    events = []

    def broken(event):
        raise RuntimeError("a view's bug")

    stops = [watch(broken), watch(events.append)]
    try:
        x = shifted_data(200, 30)
        with pytest.raises(ConceptError) as err:
            tcav(Unused(), x, {"d": np.arange(30)}, ["spare"], class_examples=np.arange(100, 200), random_sets=3,
                 progress=False)
        result = small_run()  # the raising watcher did not stop this one
    finally:
        for stop in stops:
            stop()
    failed = [e for e in events if e["state"] == "failed"]
    assert len(failed) == 1 and failed[0]["error"].startswith("ConceptError: ") and str(err.value) in failed[0]["error"]
    assert result.records() and events[-1]["state"] == "finished"


def test_concept_scores_is_busy_while_tcav_runs_and_says_when_it_failed():
    scores = hw.ConceptScores(title="t")
    seen = []
    scores.observe(lambda change: seen.append(dict(change["new"])), "activity")
    assert scores.activity == {"state": "", "text": ""}
    scores.add(small_run(epoch=2))
    assert seen[0]["state"] == "running" and seen[0]["text"].startswith("computing TCAV for epoch 2: step 0 of 8")
    assert "concept d in h" in seen[0]["text"]
    assert seen[-1] == {"state": "", "text": ""} and scores.records
    with pytest.raises(ConceptError):
        tcav(Unused(), shifted_data(200, 30), {"d": np.arange(30)}, ["spare"], class_examples=np.arange(100, 200),
             random_sets=3, progress=False, epoch=5)
    assert scores.activity["state"] == "failed"
    assert scores.activity["text"].startswith("the TCAV computation for epoch 5 failed: ConceptError: ")
    assert scores.activity["text"].endswith("(the scores shown are from before it)")
    n = len(scores.records)
    small_run()  # the next computation clears the failure
    assert scores.activity == {"state": "", "text": ""} and len(scores.records) == n
    scores.close()
    before = len(seen)
    small_run()
    assert len(seen) == before  # closed: no longer follows TCAV


def test_a_view_nobody_holds_is_collected():
    ref = weakref.ref(hw.ConceptScores())
    gc.collect()
    assert ref() is None
    small_run()  # its dead watcher is dropped without trouble


def test_model_with_two_layers_reports_both():
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(h=nn.Linear(8, 8), act=nn.Tanh(), out=nn.Linear(8, 2))).double()
    events = []
    stop = watch(events.append)
    try:
        tcav(model, shifted_data(200, 30), {"d": np.arange(30)}, ["h", "act"], class_examples=np.arange(100, 200),
             random_sets=3, progress=False)
    finally:
        stop()
    assert events[-1]["layers"] == ["h", "act"] and events[-1]["total"] == 1 + 1 + 2 * (3 + 3)
