"""Fast, deterministic engines for driving the session engine in tests.

They do real work in their own small way (the fake TTS makes audio whose length follows the
text, the fake STT returns what a test told it the audio says, the fake VAD scores energy), so the
session's plumbing is exercised without models.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from parley.config import Settings
from parley.engines.base import (
    PCM,
    ChatRequest,
    EngineError,
    Finish,
    LLMEvent,
    TextDelta,
    ToolCallDelta,
    Transcription,
    Usage,
)
from parley.engines.registry import Engines
from parley.protocol import server_events as ev
from parley.realtime.session import RealtimeSession, SessionType


class FakeVAD:
    name = "fake-energy"
    sample_rate = 16000
    frame_samples = 512

    def speech_probability(self, frame: PCM) -> float:
        rms = float(np.sqrt(np.mean(frame.astype(np.float64) ** 2))) if len(frame) else 0.0
        return 1.0 if rms > 1000 else 0.0

    def reset(self) -> None:
        pass


class ScriptedVAD:
    """Reads each 512-sample frame's probability from its first sample (x 1000); no end lag."""

    name = "scripted"
    sample_rate = 16_000
    frame_samples = 512

    def speech_probability(self, frame: PCM) -> float:
        return float(frame[0]) / 1000

    def reset(self) -> None:
        pass


class FakeRecognition:
    def __init__(self, stt: FakeSTT) -> None:
        self.stt = stt
        self.samples = 0
        self.feeds = 0

    async def feed(self, pcm: PCM) -> str | None:
        """Partial hypotheses: the transcript this utterance will get, a word more with each feed."""
        self.samples += len(pcm)
        self.feeds += 1
        return " ".join(self.stt.transcripts[0].split()[: self.feeds]) if self.stt.transcripts else None

    async def finish(self) -> Transcription:
        if self.stt.fail:
            raise EngineError("fake recogniser failure")
        if self.stt.transcripts and self.stt.transcripts[0] == self.stt.hang_on:
            await asyncio.Event().wait()  # a recogniser that never answers
        text = self.stt.transcripts.pop(0) if self.stt.transcripts else ""
        return Transcription(text=text, audio_seconds=self.samples / self.stt.sample_rate)

    def close(self) -> None:
        pass


@dataclass
class FakeSTT:
    name: str = "fake-stt"
    sample_rate: int = 16000
    transcripts: list[str] = field(default_factory=list)
    fail: bool = False
    hang_on: str | None = None
    """The final transcript of an utterance that would be this never comes."""

    def start(
        self, *, language: str | None = None, prompt: str | None = None, channel: dict[str, Any] | None = None
    ) -> FakeRecognition:
        return FakeRecognition(self)

    async def warm_up(self) -> None:
        pass


@dataclass
class FakeTTS:
    """10 ms of a 440 Hz tone per character, at 24 kHz, in one chunk per call."""

    name: str = "fake-tts"
    sample_rate: int = 24000
    spoken: list[str] = field(default_factory=list)
    fail: bool = False

    def voices(self) -> list[str]:
        return ["alloy", "marin"]

    async def synthesize(self, text: str, *, voice: str, speed: float = 1.0) -> AsyncIterator[PCM]:
        if self.fail:
            raise EngineError("fake synthesiser failure")
        self.spoken.append(text)
        samples = int(len(text) * self.sample_rate / 100 / speed)
        t = np.arange(samples) / self.sample_rate
        yield (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)

    async def warm_up(self) -> None:
        pass


Script = Callable[[ChatRequest], list[LLMEvent]]


@dataclass
class FakeLLM:
    """Replies with scripted events; by default ``You said: <last user text>.``"""

    name: str = "fake-llm"
    replies: list[list[LLMEvent]] = field(default_factory=list)
    requests: list[ChatRequest] = field(default_factory=list)
    delay_s: float = 0.0
    fail: bool = False

    async def stream(self, request: ChatRequest) -> AsyncIterator[LLMEvent]:
        self.requests.append(request)
        if self.fail:
            raise EngineError("fake language model failure")
        events = self.replies.pop(0) if self.replies else _echo(request)
        for event in events:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            yield event

    async def warm_up(self) -> None:
        pass


def _echo(request: ChatRequest) -> list[LLMEvent]:
    last = next((m["content"] for m in reversed(request.messages) if m["role"] == "user"), "")
    words = f"You said: {last}.".split(" ")
    return [*(TextDelta(w + " ") for w in words), Usage(10, len(words)), Finish("stop")]


def text_reply(text: str) -> list[LLMEvent]:
    return [TextDelta(text), Finish("stop")]


def tool_reply(name: str, arguments: str, call_id: str = "call_1") -> list[LLMEvent]:
    half = len(arguments) // 2
    return [
        ToolCallDelta(0, call_id=call_id, name=name, arguments=arguments[:half]),
        ToolCallDelta(0, arguments=arguments[half:]),
        Finish("tool_calls"),
    ]


def fake_engines(**kwargs: Any) -> Engines:
    return Engines(
        vad=kwargs.get("vad", FakeVAD),
        stt=kwargs.get("stt", FakeSTT()),
        llm=kwargs.get("llm", FakeLLM()),
        tts=kwargs.get("tts", FakeTTS()),
    )


class Recorder:
    """A session wired to fake engines, with every emitted event recorded."""

    def __init__(
        self,
        session_type: SessionType = "realtime",
        settings: Settings | None = None,
        playback_rate: int | None = None,
        model: str = "gpt-realtime",
        **kwargs: Any,
    ) -> None:
        """``playback_rate``: the server plays the audio out (as for WebRTC and SIP); the test reads it
        from ``session.playback``. ``kwargs``: the fake engines to use (:func:`fake_engines`)."""
        self.events: list[ev.Event] = []
        self.engines = fake_engines(**kwargs)
        self.session = RealtimeSession(
            settings=settings or Settings(),
            engines=self.engines,
            emit=self._emit,
            model=model,
            session_type=session_type,
            playback_rate=playback_rate,
        )
        self._new = asyncio.Event()

    async def _emit(self, event: ev.Event) -> None:
        self.events.append(event)
        self._new.set()

    async def send(self, event: dict[str, Any]) -> None:
        await self.session.handle_text(json.dumps(event))

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    def of_type(self, type_: str) -> list[ev.Event]:
        return [e for e in self.events if e["type"] == type_]

    async def wait_for(self, type_: str, count: int = 1, timeout: float = 10.0) -> ev.Event:
        async def wait() -> ev.Event:
            while len(found := self.of_type(type_)) < count:
                self._new.clear()
                await self._new.wait()
            return found[count - 1]

        return await asyncio.wait_for(wait(), timeout)
