"""Splits a stream of model text into pieces worth speaking: sentences, or long clauses.

The first piece of a reply is released at a clause boundary (comma, colon…) once it has a few
words, so speech starts early; later pieces wait for whole sentences, which sound more natural.
"""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"[.!?…]+[\"')\]]*\s+|\n+")
_CLAUSE_END = re.compile(r"[,;:\u2014\u2013]\s+")  # comma, semicolon, colon, em/en dash
FIRST_CLAUSE_MIN_WORDS = 4
MAX_PIECE_CHARS = 240


class SentenceChunker:
    def __init__(self) -> None:
        self._pending = ""
        self._released = 0

    def push(self, text: str) -> list[str]:
        """Add model text; return the pieces now complete, in order."""
        self._pending += text
        pieces: list[str] = []
        while True:
            piece = self._next_piece()
            if piece is None:
                return pieces
            if piece.strip():
                pieces.append(piece)
                self._released += 1

    def flush(self) -> list[str]:
        """The rest of the text, at the end of the reply."""
        rest, self._pending = self._pending, ""
        return [rest] if rest.strip() else []

    def _next_piece(self) -> str | None:
        match = _SENTENCE_END.search(self._pending)
        if match is None and self._released == 0:
            for clause in _CLAUSE_END.finditer(self._pending):
                if len(self._pending[: clause.start()].split()) >= FIRST_CLAUSE_MIN_WORDS:
                    match = clause
                    break
        if match is None:
            if len(self._pending) <= MAX_PIECE_CHARS:
                return None
            cut = self._pending.rfind(" ", 0, MAX_PIECE_CHARS)
            cut = cut if cut > 0 else MAX_PIECE_CHARS
            piece, self._pending = self._pending[: cut + 1], self._pending[cut + 1 :]
            return piece
        piece, self._pending = self._pending[: match.end()], self._pending[match.end() :]
        return piece
