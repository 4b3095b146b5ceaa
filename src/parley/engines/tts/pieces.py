"""Text spoken a piece at a time: sentences (long ones cut into clauses), each synthesised on an
engine's own worker thread, so the first sentence is heard while the next is made and sessions
sharing the engine take turns sentence by sentence."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor

from parley.engines.base import PCM

_SENTENCE_END = re.compile(r"(?P<end>[.!?…]+[\"'\u201d\u2019)\]]*)\s+|\n\s*")
_ABBREVIATION = re.compile(r"(?:^|\s)(?:mr|mrs|ms|dr|prof|st|sr|jr|vs|etc|e\.g|i\.e|no)\.$", re.IGNORECASE)
_CLAUSE_END = re.compile(r"(?<=[,;:—])\s+")
_MAX_PIECE = 240


def split_text(text: str) -> list[str]:
    """Split text into sentences (and long sentences into clauses) to synthesize one at a time."""
    sentences: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        candidate = text[start : match.end("end") if match.group("end") else match.start()]
        following = text[match.end() : match.end() + 1]
        if "\n" not in match.group() and (following.islower() or _ABBREVIATION.search(candidate)):
            continue  # "p.m. today", "Dr. Smith": not a sentence end
        sentences.append(candidate)
        start = match.end()
    sentences.append(text[start:])
    pieces: list[str] = []
    for sentence in (s.strip() for s in sentences):
        if len(sentence) <= _MAX_PIECE:
            pieces.append(sentence)
            continue
        current = ""
        for part in _CLAUSE_END.split(sentence):
            if current and len(current) + len(part) + 1 > _MAX_PIECE:
                pieces.append(current)
                current = ""
            current = f"{current} {part}" if current else part
            while len(current) > _MAX_PIECE:
                cut = current.rfind(" ", 0, _MAX_PIECE)
                cut = cut if cut > 0 else _MAX_PIECE
                pieces.append(current[:cut])
                current = current[cut:].lstrip()
        pieces.append(current)
    return [p for p in pieces if any(ch.isalnum() for ch in p)]


def speakable_pieces(text: str) -> list[str]:
    """The pieces of ``text`` to synthesise one at a time (none when nothing in it is speakable)."""
    return split_text(text.replace("\0", " "))


async def speak_pieces(
    pieces: list[str], executor: Executor, speak: Callable[[str], PCM]
) -> AsyncIterator[PCM]:
    """Each piece's audio from ``speak`` run on ``executor``, in order; empty audio is skipped. A
    consumer that stops reading stops it after the piece under way."""
    loop = asyncio.get_running_loop()
    for piece in pieces:
        pcm = await loop.run_in_executor(executor, speak, piece)
        if pcm.size:
            yield pcm
