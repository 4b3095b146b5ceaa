"""Recognition of user audio: a live stream fed while audio arrives, finished on commit.

Feeding runs in its own task through a queue, so ``input_audio_buffer.append`` never waits for the
recogniser; at commit only the recogniser's finalisation remains. The result goes into the item
(``heard``, and the part's ``transcript`` when transcription events are on) and, when the session
asked for transcription, out as ``…input_audio_transcription.delta`` / ``completed`` / ``failed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import numpy as np

from parley.engines.base import PCM, EngineError, RecognitionStream, SpeechToText, Transcription

log = logging.getLogger("parley.transcription")

_STOP = object()


class LiveRecognition:
    """One utterance: audio queued by ``feed`` is recognised in order by a background task."""

    def __init__(self, stt: SpeechToText, *, language: str | None, prompt: str | None) -> None:
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._stream: RecognitionStream | None = None
        self._error: EngineError | None = None
        self._stt = stt
        self._language = language
        self._prompt = prompt
        self.partial = ""
        self.samples = 0
        self._task = asyncio.get_running_loop().create_task(self._run())

    def feed(self, pcm: PCM) -> None:
        if len(pcm):
            self.samples += len(pcm)
            self._queue.put_nowait(pcm)

    async def _run(self) -> None:
        try:
            self._stream = self._stt.start(language=self._language, prompt=self._prompt)
            while True:
                chunk = await self._queue.get()
                if chunk is _STOP:
                    return
                assert isinstance(chunk, np.ndarray)
                partial = await self._stream.feed(chunk)
                if partial is not None:
                    self.partial = partial
        except EngineError as exc:
            self._error = exc

    async def finish(self) -> Transcription:
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
