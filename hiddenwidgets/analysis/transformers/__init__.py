"""Transformers: the residual stream, the logit and tuned lens, attention heads and the life of tokens.

Plain functions, tensors in and out (no widget code):

- :func:`trace`: one recorded pass (residual stream per layer, attention weights, the model's logits and its own
  decoder), for Hugging Face causal / masked LMs and encoders, ``nn.TransformerEncoder`` and nanoGPT-style models.
- :func:`logit_lens`, :class:`TunedLens`, :func:`fit_tuned_lens`: what each layer predicts.
- :func:`head_entropy`, :func:`distance_profile`, :func:`classify_heads`: attention heads.
- :func:`token_flow`, :func:`token_decodability`: how token representations drift through depth.
- :func:`corpus`, :class:`WordTokenizer`: a small CC0 story to train a language model on in a notebook.
"""

from ._errors import TransformerError
from .attention import HEAD_CLASSES, HeadClasses, allowed_keys, classify_heads, distance_profile, head_entropy
from .flow import Decodability, TokenFlow, token_decodability, token_flow
from .lens import LensResult, TunedLens, fit_tuned_lens, logit_lens
from .text import WordTokenizer, corpus
from .trace import Trace, find_blocks, sdpa_weights, trace

__all__ = ["HEAD_CLASSES", "Decodability", "HeadClasses", "LensResult", "TokenFlow", "Trace", "TransformerError",
           "TunedLens", "WordTokenizer", "allowed_keys", "classify_heads", "corpus", "distance_profile",
           "find_blocks", "fit_tuned_lens", "head_entropy", "logit_lens", "sdpa_weights", "token_decodability",
           "token_flow", "trace"]
