"""A small text to train a language model on in a notebook, and a word tokenizer for it.

``corpus()`` is *The miller and the river*, about 940 words (163 distinct) written for hiddenwidgets and dedicated
to the public domain (CC0 1.0): a short story with a small vocabulary and repeated phrasings ("the cat said to the dog,
the river is slow today"), so that a tiny decoder-only model learns it in a few minutes on a CPU and its logit lens
has something to show: copying a phrase, completing "the cat sat on the …".
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

__all__ = ["WordTokenizer", "corpus"]

CORPUS = Path(__file__).resolve().parent / "corpus.txt"


def corpus() -> str:
    """The text of *The miller and the river* (CC0 1.0), lower case, punctuation spaced as words."""
    return CORPUS.read_text(encoding="utf-8")


class WordTokenizer:
    """Whitespace tokenizer over a fixed vocabulary built from a text (``<unk>`` is id 0). Callable like a
    Hugging Face tokenizer (``tokenizer(text, return_tensors="pt")``) and has ``convert_ids_to_tokens``, so the
    transformer views take it."""

    def __init__(self, text: str):
        words = sorted(set(self.split(text)))
        self.vocab = ["<unk>", *words]
        self.index = {w: i for i, w in enumerate(self.vocab)}

    @staticmethod
    def split(text: str) -> list[str]:
        return re.findall(r"[a-z0-9]+|[^\sa-z0-9]", text.lower())

    def encode(self, text: str) -> list[int]:
        return [self.index.get(w, 0) for w in self.split(text)]

    def __call__(self, text: str, return_tensors: str = "pt") -> dict[str, torch.Tensor]:
        if return_tensors != "pt":
            raise ValueError("WordTokenizer returns PyTorch tensors only: return_tensors='pt'")
        return {"input_ids": torch.tensor([self.encode(text)])}

    def convert_ids_to_tokens(self, ids: int | list[int]) -> str | list[str]:
        if isinstance(ids, int):
            return self.vocab[ids]
        return [self.vocab[int(i)] for i in ids]

    def __len__(self) -> int:
        return len(self.vocab)
