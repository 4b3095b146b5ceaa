"""How likely a sentence is to end after the words heard so far: a trigram language model's
P(end of sentence | the last two words).

``semantic_vad`` reads this at each pause. A phrase that stops where English sentences rarely stop
("... a table for", "... the order number is") scores near zero; one that stops where they often do
("... open tomorrow", "... the capital of france") scores high. The model is the 130k-word US English
trigram model shipped inside the pocketsphinx wheel (``en-us.lm.bin``), so it works offline whichever
recogniser the server runs; loading it takes about 0.1 s and 35 MB and it is shared by every session of a
process.
"""

from __future__ import annotations

import functools
import math
import os
import threading
from collections.abc import Sequence
from typing import Any, Protocol

LOG_BASE = 1.0001
"""pocketsphinx's language model scores are logarithms in this base."""


class SentenceEnds(Protocol):
    def probability(self, words: Sequence[str]) -> float:
        """P(the sentence ends here | ``words``, lower-case, in order); 0.5 when nothing is known."""
        ...


class NgramSentenceEnds:
    """P(</s> | w[-2], w[-1]) from pocketsphinx's bundled trigram model (loaded on first use)."""

    def __init__(self, path: str | None = None) -> None:
        self._path = path
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                from pocketsphinx import NGramModel, get_model_path

                path = self._path or os.path.join(get_model_path(), "en-us", "en-us.lm.bin")
                self._model = NGramModel.readfile(path)
            return self._model

    def probability(self, words: Sequence[str]) -> float:
        if not words:
            return 0.5
        history = list(words[-2:])
        # pocketsphinx: the word to score first, then its history, most recent word first.
        score = self._load().prob(["</s>", *reversed(history)])
        return min(1.0, math.exp(score * math.log(LOG_BASE)))


@functools.cache
def shared() -> NgramSentenceEnds:
    """The process's one model (it is read-only, so every session uses it)."""
    return NgramSentenceEnds()
