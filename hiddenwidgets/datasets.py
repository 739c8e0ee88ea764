"""Small data sets that ship with the package, so examples and tests run anywhere, offline."""

from __future__ import annotations

from pathlib import Path

import torch

DATA = Path(__file__).resolve().parent / "data"

__all__ = ["labelled_sentences", "twelve_bit_task"]


def twelve_bit_task() -> tuple[torch.Tensor, torch.Tensor]:
    """The 12-bit task of Shwartz-Ziv & Tishby (2017): all 4096 binary patterns and their binary labels.

    Returns ``(X, y)``: ``X`` float32 (4096, 12), row r is r in binary, most significant bit first; ``y`` int64
    (4096,) with 2118 ones, so H(Y) = 0.99916 bits. From the paper's public code (``data/var_u.mat``).
    """
    from scipy.io import loadmat

    d = loadmat(DATA / "var_u.mat")
    return torch.tensor(d["F"], dtype=torch.float32), torch.tensor(d["y"].reshape(-1), dtype=torch.int64)


def labelled_sentences() -> list[dict]:
    """160 short English sentences written for hiddenwidgets' probing examples, 40 per topic (sport, food,
    weather, technology), each a dict with ``text``, ``topic``, ``words`` (whitespace split, no punctuation) and
    ``pos`` (a coarse part-of-speech tag per word: NOUN, VERB, ADJ, ADV, DET, ADP, PRON, CONJ, NUM, AUX, PART).
    Words such as run, play, light, fast, cook, rain and watch occur with two or more tags. The tagging
    conventions are in the file's ``description`` (``hiddenwidgets/data/sentences.json``)."""
    import json

    return json.loads((DATA / "sentences.json").read_text(encoding="utf-8"))["sentences"]
