"""Progress of long Python-side work: a bar by default (after a second), silenced by False or the environment,
a callable instead of a bar; and the counts each function reports add up to the work it does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hiddenwidgets.analysis.information import kde_mi, sample_propagation_mi
from hiddenwidgets.analysis.probes import linear_probe
from hiddenwidgets.analysis.tcav import tcav
from hiddenwidgets.pipeline.progress import SILENT, reporter

from .test_tcav import D, linear_model, shifted_data


def test_reporter_follows_what_progress_asks_for(capsys, monkeypatch):
    calls = []
    with reporter(lambda d, t: calls.append((d, t)), "x") as report:
        report(3, 10)
    assert calls == [(3, 10)]
    assert reporter(False, "x") is SILENT
    monkeypatch.setenv("HIDDENWIDGETS_PROGRESS", "0")
    assert reporter(None, "x") is SILENT  # the default bar silenced for a whole run
    monkeypatch.delenv("HIDDENWIDGETS_PROGRESS")
    with reporter(True, "probing layers", unit="eval", total=4) as report:
        for done in range(1, 5):
            report(done, 4)
    err = capsys.readouterr().err
    assert "probing layers" in err and "4/4" in err
    with pytest.raises(ValueError, match=r"progress must be True \(a progress bar\), False \(silent\).*got str"):
        reporter("yes", "x")


def test_probe_shows_a_bar_when_asked_and_the_count_ends_at_its_total(capsys):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 4, generator=g)
    y = (x[:, 0] > 0).long()
    seen = []
    result = linear_probe(x, y, progress=lambda done, total: seen.append((done, total)))
    assert seen and seen[-1][0] == seen[-1][1] and [d for d, _ in seen] == sorted(d for d, _ in seen)
    again = linear_probe(x, y, progress=True, layer="h")
    assert "probe h" in capsys.readouterr().err
    assert again.accuracy == result.accuracy  # progress never changes the result


def test_tcav_counts_every_pass_and_every_cav():
    x = shifted_data(100, 10)
    seen = []
    result = tcav(linear_model(torch.eye(2, D, dtype=torch.float64)), x, {"c": np.arange(10), "d": np.arange(10, 20)},
                  "h", class_examples=np.arange(50, 100), random_sets=3, set_size=10, correction=None,
                  progress=lambda done, total: seen.append((done, total)))
    # 1 activation pass + 1 gradient pass (class_examples: one group) + per layer: 3*2/2 random pairs + 2 concepts x 3
    total = 1 + 1 + (3 + 2 * 3)
    assert [d for d, _ in seen] == list(range(1, total + 1)) and {t for _, t in seen} == {total}
    silent = tcav(linear_model(torch.eye(2, D, dtype=torch.float64)), x, {"c": np.arange(10), "d": np.arange(10, 20)},
                  "h", class_examples=np.arange(50, 100), random_sets=3, set_size=10, correction=None, progress=False)
    assert silent.records() == result.records()


def test_kde_and_sample_propagation_count_rows_and_draws():
    g = torch.Generator().manual_seed(1)
    t = torch.randn(300, 3, generator=g)
    y = np.arange(300) % 3
    seen = []
    assert kde_mi(t, y, progress=lambda d, n: seen.append((d, n))) == kde_mi(t, y, progress=False)
    assert seen[-1] == (600, 600)  # every row of H(T), then every row of the H(T|Y=y) terms
    seen.clear()
    sample_propagation_mi(t, y, samples=2, progress=lambda d, n: seen.append((d, n)))
    assert seen[-1] == (1200, 1200)
