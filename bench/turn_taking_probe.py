"""The session under test in ``bench/turn_taking.py``: its settings, the fake language model and TTS,
a null recogniser, and :class:`Probe`, a ``RealtimeSession`` driven in process whose events are
stamped with the input position (ms of audio appended so far)."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from parley.config import Settings
from parley.engines.base import (
    PCM,
    ChatRequest,
    LLMEvent,
    SpeechToText,
    TextDelta,
    Transcription,
)
from parley.engines.registry import Engines, create
from parley.realtime.session import RealtimeSession
from turn_sounds import RATE

CHUNK_MS = 20
CHUNK_SAMPLES = RATE * CHUNK_MS // 1000
YIELDS_PER_CHUNK = 1
"""``await asyncio.sleep(0)`` calls after each append."""
TRANSCRIPTION = {"model": "whisper-1"}

SERVER_VAD: dict[str, Any] = {
    "type": "server_vad",
    "threshold": 0.5,
    "prefix_padding_ms": 300,
    "silence_duration_ms": 500,
}
TURN_MODES: dict[str, dict[str, Any]] = {
    "server_vad": SERVER_VAD,
    "semantic_low": {"type": "semantic_vad", "eagerness": "low"},
    "semantic_medium": {"type": "semantic_vad", "eagerness": "medium"},
    "semantic_high": {"type": "semantic_vad", "eagerness": "high"},
}

Event = dict[str, Any]


def log(message: str) -> None:
    print(f"turn_taking: {message}", file=sys.stderr, flush=True)


def snr_label(snr: float | None) -> str:
    return "clean" if snr is None else f"{snr:g} dB"


# -------------------------------------------------------------------------------------- engines


class EndlessLLM:
    """Streams a word every ``interval_s`` (a sentence every eight words) until it is cancelled."""

    name = "bench-endless"
    WORDS = ("the", "weather", "will", "be", "sunny", "with", "light", "wind", "later", "today")

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s

    async def stream(self, request: ChatRequest) -> AsyncIterator[LLMEvent]:
        count = 0
        while True:
            await asyncio.sleep(self.interval_s)
            count += 1
            word = self.WORDS[count % len(self.WORDS)]
            yield TextDelta(f"{word}{'.' if count % 8 == 0 else ''} ")

    async def warm_up(self) -> None:
        pass


class ToneTTS:
    """10 ms of a 440 Hz tone per character, at 24 kHz, in one chunk."""

    name = "bench-tone"
    sample_rate = 24000

    def voices(self) -> list[str]:
        return ["alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"]

    async def synthesize(self, text: str, *, voice: str, speed: float = 1.0) -> AsyncIterator[PCM]:
        samples = int(len(text) * self.sample_rate / 100 / speed)
        t = np.arange(samples) / self.sample_rate
        yield (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)

    async def warm_up(self) -> None:
        pass


class NullRecognition:
    def __init__(self) -> None:
        self.samples = 0

    async def feed(self, pcm: PCM) -> str | None:
        self.samples += len(pcm)
        return None

    async def finish(self) -> Transcription:
        return Transcription(text="", audio_seconds=self.samples / 16000)

    def close(self) -> None:
        pass


class NullSTT:
    """A recogniser that does no work: the session input path without recognition."""

    name = "bench-null"
    sample_rate = 16000

    def start(self, **options: Any) -> NullRecognition:
        """Any keyword the protocol names (language, prompt...) is accepted and ignored."""
        return NullRecognition()

    async def warm_up(self) -> None:
        pass


def make_engines(settings: Settings, stt: SpeechToText) -> Engines:
    return Engines(
        vad=lambda: create("vad", "silero", settings),
        stt=stt,
        llm=EndlessLLM(),
        tts=ToneTTS(),
    )


# -------------------------------------------------------------------------------------- probe


@dataclass
class Seen:
    type: str
    at_ms: float
    """Input position (ms of audio appended to the session) when the event was emitted."""
    fields: dict[str, Any]


KEPT_FIELDS = ("audio_start_ms", "audio_end_ms", "item_id", "transcript")


class Probe:
    """A session with every event it emits stamped with the input position."""

    def __init__(
        self, settings: Settings, engines: Engines, speed: float = 0.0, noise_reduction: str | None = None
    ) -> None:
        self.position_ms = 0.0
        self.noise_reduction = noise_reduction
        """``audio.input.noise_reduction`` type for the session (None: off, the API's default)."""
        self.seen: list[Seen] = []
        self.audio_deltas = 0
        self.errors: list[str] = []
        self.speed = speed
        self._changed = asyncio.Event()
        self.session = RealtimeSession(
            settings=settings, engines=engines, emit=self._emit, model="gpt-realtime"
        )

    async def _emit(self, event: Event) -> None:
        kind = str(event["type"])
        if kind == "response.output_audio.delta":
            self.audio_deltas += 1
            self._changed.set()
            return
        if kind.endswith(".delta"):
            return
        if kind == "error":
            self.errors.append(str(event["error"].get("message")))
        fields = {k: event[k] for k in KEPT_FIELDS if k in event}
        if kind == "response.done":
            response = event["response"]
            fields.update(id=response["id"], status=response["status"], details=response["status_details"])
        elif kind == "response.created":
            fields["id"] = event["response"]["id"]
        elif kind == "session.updated":
            fields["turn_detection"] = event["session"]["audio"]["input"]["turn_detection"]
        self.seen.append(Seen(kind, self.position_ms, fields))
        self._changed.set()

    async def send(self, event: Event) -> None:
        await self.session.handle_text(json.dumps(event))

    async def start(self, turn_detection: dict[str, Any] | None, transcription: bool = True) -> None:
        await self.session.start()
        update: Event = {
            "type": "realtime",
            "output_modalities": ["audio"],
            "audio": {
                "input": {
                    "turn_detection": turn_detection,
                    "transcription": dict(TRANSCRIPTION) if transcription else None,
                    "noise_reduction": {"type": self.noise_reduction} if self.noise_reduction else None,
                }
            },
        }
        await self.send({"type": "session.update", "session": update})

    async def push(self, pcm: PCM, stop: Callable[[], bool] | None = None) -> None:
        """Append ``pcm`` in 20 ms events; ``stop`` is asked after each one."""
        started = time.perf_counter()
        pushed = 0.0
        for i in range(0, len(pcm), CHUNK_SAMPLES):
            chunk = pcm[i : i + CHUNK_SAMPLES]
            self.position_ms += len(chunk) * 1000 / RATE
            pushed += len(chunk) / RATE
            audio = base64.b64encode(chunk.astype("<i2").tobytes()).decode("ascii")
            await self.send({"type": "input_audio_buffer.append", "audio": audio})
            for _ in range(YIELDS_PER_CHUNK):
                await asyncio.sleep(0)
            if self.speed > 0:
                lag = started + pushed / self.speed - time.perf_counter()
                if lag > 0:
                    await asyncio.sleep(lag)
            if stop is not None and stop():
                return

    async def wait_until(self, condition: Callable[[], bool], timeout_s: float) -> bool:
        async def wait() -> None:
            while not condition():
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def of(self, kind: str) -> list[Seen]:
        return [s for s in self.seen if s.type == kind]

    def transcribed(self) -> bool:
        """Every committed item has its transcript (or its failure)."""
        done = len(self.of("conversation.item.input_audio_transcription.completed")) + len(
            self.of("conversation.item.input_audio_transcription.failed")
        )
        return done >= len(self.of("input_audio_buffer.committed"))

    async def wait_transcribed(self, timeout_s: float) -> bool:
        return await self.wait_until(self.transcribed, timeout_s)

    def transcripts(self) -> list[str]:
        """The final transcript of each committed item, in order."""
        return [
            str(s.fields.get("transcript", ""))
            for s in self.of("conversation.item.input_audio_transcription.completed")
        ]

    async def close(self) -> None:
        await self.session.close()
