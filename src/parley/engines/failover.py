"""Failover: an ordered list of engines for one stage, served by the first that works.

``PARLEY_STT=faster-whisper,pocketsphinx`` builds a :class:`FailoverSTT` over both. A request goes to
the first engine that is not resting; when it raises :class:`EngineError` the engine rests for
``PARLEY_ENGINE_RETRY_S`` and the next one serves the same request, so the user hears an answer
rather than an error. Listeners (the server's metrics and log) hear of each failover.

What can be retried without the user noticing, and is:
- speech to text: the stream keeps the utterance's audio, so the next engine is fed all of it;
- text to speech and the language model: until the first audio chunk or event came out. After that
  the failure is the response's (a half-spoken sentence cannot be taken back).

The first engine is tried again once its rest is over; if every engine is resting, they are all tried
in order anyway (better a retry than a certain failure).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from parley.audio.resample import StreamResampler
from parley.engines.base import (
    PCM,
    ChatRequest,
    EngineError,
    LanguageModel,
    LLMEvent,
    RecognitionStream,
    SpeechToText,
    TextToSpeech,
    Transcription,
)

log = logging.getLogger("parley.engines.failover")

E = TypeVar("E")
T = TypeVar("T")
FailoverListener = Callable[[str, str, str], None]
"""Called with ``(stage, failed engine, engine taking over)``."""


@dataclass
class Chain(Generic[E]):
    """The engines of one stage in order, and which of them are resting after a failure."""

    stage: str
    engines: Sequence[E]
    retry_s: float
    listeners: list[FailoverListener] = field(default_factory=list)
    resting_until: dict[int, float] = field(default_factory=dict)

    def order(self) -> list[int]:
        now = time.monotonic()
        ready = [i for i in range(len(self.engines)) if self.resting_until.get(i, 0.0) <= now]
        return ready or list(range(len(self.engines)))

    def name(self, index: int) -> str:
        return str(getattr(self.engines[index], "name", index))

    def failed(self, index: int, error: EngineError, next_index: int | None) -> None:
        self.resting_until[index] = time.monotonic() + self.retry_s
        if next_index is None:
            return
        failed, taking_over = self.name(index), self.name(next_index)
        log.warning("%s engine %s failed (%s); %s takes over", self.stage, failed, error, taking_over)
        for listener in self.listeners:
            listener(self.stage, failed, taking_over)

    def served(self, index: int) -> None:
        self.resting_until.pop(index, None)

    async def warm_up(self, warm: Callable[[E], Any]) -> None:
        """Warm every engine; one that fails rests (the server starts if any engine is ready)."""
        errors: list[str] = []
        for index, engine in enumerate(self.engines):
            try:
                await warm(engine)
            except EngineError as exc:
                self.resting_until[index] = time.monotonic() + self.retry_s
                errors.append(f"{self.name(index)}: {exc}")
                log.warning("%s engine %s failed to warm up: %s", self.stage, self.name(index), exc)
        if len(errors) == len(self.engines):
            raise EngineError(f"no {self.stage} engine could start: " + "; ".join(errors))

    async def stream(self, attempt: Callable[[E], AsyncIterator[T]]) -> AsyncIterator[T]:
        """``attempt(engine)``'s output from the first engine that works: one that fails before its
        first output is replaced by the next; a failure after it is the caller's."""
        order = self.order()
        for position, index in enumerate(order):
            started = False
            try:
                async with _closing(attempt(self.engines[index])) as outputs:
                    async for output in outputs:
                        started = True
                        yield output
            except EngineError as exc:
                following = order[position + 1] if position + 1 < len(order) else None
                self.failed(index, exc, None if started else following)
                if started or following is None:
                    raise
                continue
            self.served(index)
            return


@asynccontextmanager
async def _closing(iterator: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """Close an engine's async generator when we stop reading it (a cancelled response)."""
    try:
        yield iterator
    finally:
        close = getattr(iterator, "aclose", None)
        if close is not None:
            await close()


# --------------------------------------------------------------------------------------------------
# Speech to text


class FailoverSTT:
    def __init__(self, engines: Sequence[SpeechToText], retry_s: float) -> None:
        rates = {engine.sample_rate for engine in engines}
        if len(rates) != 1:
            raise EngineError(
                "the speech-to-text engines of one failover list must take the same sample rate: "
                + ", ".join(f"{e.name} {e.sample_rate} Hz" for e in engines)
            )
        self.chain = Chain("stt", engines, retry_s)
        self.name = ",".join(engine.name for engine in engines)
        self.sample_rate = engines[0].sample_rate

    def start(
        self,
        *,
        language: str | None = None,
        prompt: str | None = None,
        channel: dict[str, Any] | None = None,
    ) -> RecognitionStream:
        return _FailoverStream(self.chain, {"language": language, "prompt": prompt, "channel": channel})

    async def warm_up(self) -> None:
        await self.chain.warm_up(lambda engine: engine.warm_up())


class _FailoverStream:
    """Feeds the serving engine and keeps the audio, so a successor can hear the whole utterance."""

    def __init__(self, chain: Chain[SpeechToText], options: dict[str, Any]) -> None:
        self.chain = chain
        self.options = options
        self.audio: list[PCM] = []
        self.candidates = chain.order()
        self.index = self.candidates.pop(0)
        self.stream: RecognitionStream | None = None

    def _current(self) -> RecognitionStream:
        if self.stream is None:
            self.stream = self.chain.engines[self.index].start(**self.options)
        return self.stream

    async def _switch(self, error: EngineError) -> str | None:
        """Hand the utterance to the next engine; re-raise when none is left."""
        while True:
            failed = self.index
            if self.stream is not None:
                self.stream.close()
                self.stream = None
            if not self.candidates:
                self.chain.failed(failed, error, None)
                raise error
            self.index = self.candidates.pop(0)
            self.chain.failed(failed, error, self.index)
            try:
                partial = None
                for pcm in self.audio:
                    partial = await self._current().feed(pcm) or partial
                return partial
            except EngineError as exc:
                error = exc

    async def feed(self, pcm: PCM) -> str | None:
        self.audio.append(pcm)
        try:
            return await self._current().feed(pcm)
        except EngineError as exc:
            return await self._switch(exc)

    async def finish(self) -> Transcription:
        while True:
            try:
                result = await self._current().finish()
            except EngineError as exc:
                await self._switch(exc)
                continue
            self.chain.served(self.index)
            return result

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
        self.audio = []


# --------------------------------------------------------------------------------------------------
# Text to speech


class FailoverTTS:
    def __init__(self, engines: Sequence[TextToSpeech], retry_s: float) -> None:
        self.chain = Chain("tts", engines, retry_s)
        self.name = ",".join(engine.name for engine in engines)
        self.sample_rate = engines[0].sample_rate

    def voices(self) -> list[str]:
        return sorted({voice for engine in self.chain.engines for voice in engine.voices()})

    def synthesize(self, text: str, *, voice: str, speed: float = 1.0) -> AsyncIterator[PCM]:
        async def attempt(engine: TextToSpeech) -> AsyncIterator[PCM]:
            resampler = StreamResampler(engine.sample_rate, self.sample_rate)
            async with _closing(engine.synthesize(text, voice=voice, speed=speed)) as chunks:
                async for chunk in chunks:
                    if len(out := resampler.process(chunk)):
                        yield out
            if len(tail := resampler.flush()):
                yield tail

        return self.chain.stream(attempt)

    async def warm_up(self) -> None:
        await self.chain.warm_up(lambda engine: engine.warm_up())


# --------------------------------------------------------------------------------------------------
# Language model


class FailoverLLM:
    def __init__(self, engines: Sequence[LanguageModel], retry_s: float) -> None:
        self.chain = Chain("llm", engines, retry_s)
        self.name = ",".join(engine.name for engine in engines)

    def stream(self, request: ChatRequest) -> AsyncIterator[LLMEvent]:
        return self.chain.stream(lambda engine: engine.stream(request))

    async def warm_up(self) -> None:
        await self.chain.warm_up(lambda engine: engine.warm_up())
