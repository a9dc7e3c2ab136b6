"""A small tokenizer and vocabulary for the text applications (`text`, `embeddings`).

``tokenize``: HTML entities decoded (``&amp;`` -> ``&``), lowercase, then the regular
expression `TOKEN` left to right: a URL (written ``<url>``), an @mention, a #hashtag, a word
of letters/digits/apostrophes, or one other non-space character (punctuation and emoji are
tokens of their own). ``words`` keeps only the word tokens (the skip-gram corpus). The
vocabulary is built from the training texts only: tokens with at least ``min_count``
occurrences, most frequent first (ties by the token's string), after the reserved ``<pad>``
(0) and ``<unk>`` (1).
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

TOKEN = re.compile(r"https?://\S+|[@#]?\w[\w']*|[^\s\w]", re.UNICODE)
WORD = re.compile(r"[^\W_][\w']*", re.UNICODE)
URL = "<url>"
PAD, UNK = "<pad>", "<unk>"


def tokenize(text: str) -> list[str]:
    """The tokens of `text` (see the module docstring)."""
    return [
        URL if t.startswith("http") and "://" in t else t
        for t in TOKEN.findall(html.unescape(text).lower())
    ]


def words(text: str) -> list[str]:
    """The word tokens of `text`, lowercased, URLs removed (the embeddings' corpus)."""
    return WORD.findall(re.sub(r"https?://\S+", " ", html.unescape(text).lower()))


@dataclass(frozen=True)
class Vocabulary:
    """token -> id; ``tokens[i]`` is id i's token, ``counts[i]`` its training count (0 for the
    reserved ones)."""

    tokens: tuple[str, ...]
    counts: tuple[int, ...]

    @classmethod
    def build(cls, docs: Iterable[Sequence[str]], min_count: int = 1) -> Vocabulary:
        if min_count < 1:
            raise ValueError(f"min_count: expected an integer >= 1, got {min_count!r}")
        counter = Counter(t for doc in docs for t in doc)
        kept = sorted((t for t, c in counter.items() if c >= min_count),
                      key=lambda t: (-counter[t], t))  # fmt: skip
        return cls((PAD, UNK, *kept), (0, 0, *(counter[t] for t in kept)))

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def index(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.tokens)}

    def encode(self, docs: Sequence[Sequence[str]], max_len: int) -> np.ndarray:
        """[n, max_len] int64 ids, truncated to `max_len`, right-padded with 0; unknown
        tokens are 1."""
        index = self.index
        out = np.zeros((len(docs), max_len), dtype=np.int64)
        for i, doc in enumerate(docs):
            ids = [index.get(t, 1) for t in doc[:max_len]]
            out[i, : len(ids)] = ids
        return out
