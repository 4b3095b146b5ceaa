"""Recognition of user audio: a live stream fed while audio arrives, finished on commit.

Feeding runs in its own task through a queue, so ``input_audio_buffer.append`` never waits for the
recogniser; at commit only the recogniser's finalisation remains. Partial hypotheses go to
``on_partial`` as they come (turn-taking reads them, and :class:`TranscriptDeltas` turns them into
``…input_audio_transcription.delta`` events while the user speaks).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from parley.engines.base import PCM, EngineError, RecognitionStream, SpeechToText, Transcription
from parley.protocol import server_events as ev

log = logging.getLogger("parley.transcription")

_STOP = object()


class LiveRecognition:
    """One utterance: audio queued by ``feed`` is recognised in order by a background task."""

    def __init__(
        self,
        stt: SpeechToText,
        *,
        language: str | None,
        prompt: str | None,
        deltas: TranscriptDeltas | None = None,
        channel: dict[str, Any] | None = None,
    ) -> None:
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._stream: RecognitionStream | None = None
        self._error: EngineError | None = None
        self._stt = stt
        self._language = language
        self._prompt = prompt
        self._channel = channel
        self.deltas = deltas
        self.partial = ""
        self.samples = 0
        self._final: asyncio.Future[Transcription] | None = None
        self._task = asyncio.get_running_loop().create_task(self._run())

    def feed(self, pcm: PCM) -> None:
        if len(pcm):
            self.samples += len(pcm)
            self._queue.put_nowait(pcm)

    async def _run(self) -> None:
        try:
            self._stream = self._stt.start(
                language=self._language, prompt=self._prompt, channel=self._channel
            )
            while True:
                chunk = await self._queue.get()
                try:
                    if chunk is _STOP:
                        return
                    assert isinstance(chunk, np.ndarray)
                    partial = await self._stream.feed(chunk)
                    if partial is not None and partial != self.partial:
                        self.partial = partial
                        if self.deltas is not None:
                            await self.deltas.partial(partial)
                finally:
                    self._queue.task_done()
        except EngineError as exc:
            self._error = exc

    async def current(self) -> str:
        """The partial transcript of all the audio fed so far (waits for the recogniser to catch up)."""
        if not self._task.done():
            waiter = asyncio.ensure_future(self._queue.join())
            await asyncio.wait((waiter, self._task), return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
        return self.partial

    async def finish(self) -> Transcription:
        """The final transcript; it ends the utterance, and a second call gives the same answer."""
        if self._final is None:
            self._final = asyncio.ensure_future(self._finish())
            self._final.add_done_callback(lambda done: done.cancelled() or done.exception())
        return await asyncio.shield(self._final)

    async def _finish(self) -> Transcription:
        self._queue.put_nowait(_STOP)
        await self._task
        if self._error is not None:
            self.close()
            raise self._error
        assert self._stream is not None
        return await self._stream.finish()

    def close(self) -> None:
        if not self._task.done():
            self._task.cancel()
        if self._stream is not None:
            with contextlib.suppress(Exception):
                self._stream.close()


class TranscriptDeltas:
    """Streams a transcript as ``…input_audio_transcription.delta`` events whose concatenation is the
    transcript: a word is sent once two partial hypotheses in a row agree on it and another word
    follows it (recognisers revise their last words most), and the final transcript sends the rest.
    If the recogniser still revises words already sent, no more deltas go out; ``completed`` carries
    the exact transcript either way. Until ``item_id`` is set (a candidate interruption is not a turn
    yet) nothing is sent."""

    def __init__(self, emit: Callable[[ev.Event], Awaitable[None]], item_id: str | None = None) -> None:
        self._emit = emit
        self.item_id = item_id
        """The item the transcript belongs to; nothing is sent before it is set."""
        self._sent: list[str] = []
        self._previous: list[str] = []
        self._diverged = False

    async def partial(self, text: str) -> None:
        words, previous = text.split(), self._previous
        self._previous = words
        settled: list[str] = []
        for word, before in zip(words[:-1], previous, strict=False):
            if word != before:
                break
            settled.append(word)
        if len(settled) > len(self._sent):
            await self._send(settled)

    async def final(self, text: str, item_id: str) -> None:
        self.item_id = item_id
        await self._send(text.split())

    async def _send(self, words: list[str]) -> None:
        item_id = self.item_id
        if self._diverged or item_id is None:
            return
        if words[: len(self._sent)] != self._sent:
            self._diverged = True
            return
        new = words[len(self._sent) :]
        if not new:
            return
        delta = (" " if self._sent else "") + " ".join(new)
        self._sent.extend(new)
        await self._emit(ev.transcription_delta(item_id, 0, delta))
