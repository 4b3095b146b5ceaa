"""Speech recognition with pocketsphinx 5 and the English model inside its wheel (offline).

A ``Decoder`` costs about half a second and 90 MB to build, so ready decoders wait in a small
pool; a stream borrows one for an utterance and gives it back. Decoding runs in worker threads
(the C library releases the GIL), one call at a time per stream.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading

import numpy as np

from parley.config import Settings
from parley.engines.base import PCM, EngineError, Transcription

log = logging.getLogger("parley.engines.stt")

POOL_SIZE = 4
"""Idle decoders kept for reuse; more are built when more utterances run at once."""


def _is_english(language: str | None) -> bool:
    return language is None or language.lower() == "en" or language.lower().startswith(("en-", "en_"))


class _Pool:
    def __init__(self, size: int) -> None:
        self._idle: list[object] = []
        self._lock = threading.Lock()
        self.size = size
        self.built = 0

    def take(self) -> object:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        from pocketsphinx import Decoder

        decoder = Decoder(loglevel="FATAL", logfn=os.devnull)
        with self._lock:
            self.built += 1
        return decoder

    def give(self, decoder: object) -> None:
        with self._lock:
            if len(self._idle) < self.size:
                self._idle.append(decoder)

    @property
    def idle(self) -> int:
        return len(self._idle)


class PocketsphinxStream:
    """One utterance on a borrowed decoder."""

    def __init__(self, pool: _Pool, sample_rate: int) -> None:
        self._pool = pool
        self._rate = sample_rate
        self._decoder: object | None = None
        self._lock = asyncio.Lock()
        self._samples = 0
        self._partial = ""
        self._closed = False

    def _ensure(self) -> object:
        if self._decoder is None:
            decoder = self._pool.take()
            decoder.start_utt()  # type: ignore[attr-defined]
            self._decoder = decoder
        return self._decoder

    def _process(self, data: bytes) -> str:
        decoder = self._ensure()
        decoder.process_raw(data, False, False)  # type: ignore[attr-defined]
        hyp = decoder.hyp()  # type: ignore[attr-defined]
        return str(hyp.hypstr) if hyp is not None else ""

    async def feed(self, pcm: PCM) -> str | None:
        if self._closed or not len(pcm):
            return None
        self._samples += len(pcm)
        data = np.ascontiguousarray(pcm, dtype="<i2").tobytes()
        async with self._lock:
            try:
                partial = await asyncio.to_thread(self._process, data)
            except RuntimeError as exc:
                raise EngineError(f"pocketsphinx failed to decode audio: {exc}") from exc
        if partial != self._partial:
            self._partial = partial
            return partial
        return None

    def _end(self) -> str:
        decoder = self._ensure()
        decoder.end_utt()  # type: ignore[attr-defined]
        hyp = decoder.hyp()  # type: ignore[attr-defined]
        return str(hyp.hypstr) if hyp is not None else ""

    async def finish(self) -> Transcription:
        async with self._lock:
            if self._closed:
                return Transcription(text="", audio_seconds=self._samples / self._rate, language="en")
            try:
                text = await asyncio.to_thread(self._end) if self._samples else ""
            except RuntimeError as exc:
                raise EngineError(f"pocketsphinx failed to finish the utterance: {exc}") from exc
            finally:
                self._release(reusable=True)
        return Transcription(text=text, audio_seconds=self._samples / self._rate, language="en")

    def _release(self, *, reusable: bool) -> None:
        self._closed = True
        decoder, self._decoder = self._decoder, None
        if decoder is not None and reusable:
            self._pool.give(decoder)

    def close(self) -> None:
        if self._closed:
            return
        # A decoder in the middle of an utterance is not given back while a feed may still run
        # on it in a thread; it is dropped instead.
        self._release(reusable=not self._lock.locked() and self._decoder is not None and self._end_quietly())

    def _end_quietly(self) -> bool:
        try:
            self._end()
        except RuntimeError:
            return False
        return True


class PocketsphinxSTT:
    name = "pocketsphinx"
    sample_rate = 16000

    def __init__(self, pool_size: int = POOL_SIZE) -> None:
        self.pool = _Pool(pool_size)

    def start(self, *, language: str | None = None, prompt: str | None = None) -> PocketsphinxStream:
        """``prompt`` cannot steer pocketsphinx's language model, so it is not used."""
        if not _is_english(language):
            raise EngineError(
                f"The pocketsphinx engine only has an English model and cannot recognise '{language}'; "
                "choose another speech-to-text engine with PARLEY_STT.",
                code="unsupported_language",
            )
        return PocketsphinxStream(self.pool, self.sample_rate)

    async def warm_up(self) -> None:
        stream = self.start()
        await stream.feed(np.zeros(self.sample_rate // 5, dtype=np.int16))
        await stream.finish()


def create(settings: Settings) -> PocketsphinxSTT:
    return PocketsphinxSTT()
