"""The narrow interfaces every engine implements.

Audio crossing these interfaces is mono 16-bit PCM in a numpy ``int16`` array at the rate the engine
declares in ``sample_rate``; the session engine resamples to and from the wire format at the edge.
CPU-heavy work (recognition, synthesis) must not block the event loop: implementations run it in a
worker thread (``asyncio.to_thread``) and keep the coroutine itself cheap.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

PCM = npt.NDArray[np.int16]


class EngineError(Exception):
    """An engine could not do its job; the message is safe to show to a client."""

    def __init__(self, message: str, *, code: str = "engine_error") -> None:
        super().__init__(message)
        self.code = code


class MissingDependencyError(EngineError):
    """An optional dependency of an engine is not installed; the message names the install command."""

    def __init__(self, engine: str, install: str) -> None:
        super().__init__(f"The {engine} engine needs an optional dependency: run `{install}`")
        self.install = install


# --------------------------------------------------------------------------------------------------
# Voice activity detection


@runtime_checkable
class VoiceActivityDetector(Protocol):
    """Scores fixed-size frames of audio with a speech probability in [0, 1]."""

    name: str
    sample_rate: int
    frame_samples: int

    def speech_probability(self, frame: PCM) -> float:
        """Score exactly ``frame_samples`` samples. Cheap enough to call on the event loop."""
        ...

    def reset(self) -> None:
        """Forget the recurrent state (start of a new stream)."""
        ...


# --------------------------------------------------------------------------------------------------
# Speech to text


@dataclass(frozen=True)
class Word:
    """A recognised word and where it lies in the utterance, in seconds from its first sample."""

    text: str
    start: float
    end: float


@dataclass(frozen=True)
class Transcription:
    text: str
    audio_seconds: float
    language: str | None = None
    words: tuple[Word, ...] = ()
    """Word timings, from engines that give them (empty otherwise)."""


@runtime_checkable
class RecognitionStream(Protocol):
    """One utterance being recognised, fed incrementally."""

    async def feed(self, pcm: PCM) -> str | None:
        """Add audio; return the new partial hypothesis when it changed, else None."""
        ...

    async def finish(self) -> Transcription:
        """End the utterance and return the final transcript."""
        ...

    def close(self) -> None:
        """Release resources without a result (idempotent, also after finish)."""
        ...


@runtime_checkable
class SpeechToText(Protocol):
    name: str
    sample_rate: int

    def start(
        self,
        *,
        language: str | None = None,
        prompt: str | None = None,
        channel: dict[str, Any] | None = None,
    ) -> RecognitionStream:
        """Begin an utterance. ``channel`` is one per audio source (a session): the engine may keep
        adaptation state there between that source's utterances (never across sources). Its
        ``source_rate`` key, when present, is the sample rate the audio had on the wire (8000 for
        telephone audio resampled up)."""
        ...

    async def warm_up(self) -> None: ...


# --------------------------------------------------------------------------------------------------
# Text to speech


@runtime_checkable
class TextToSpeech(Protocol):
    name: str
    sample_rate: int

    def voices(self) -> list[str]:
        """The Realtime API voice names this engine can speak with (each maps to a distinct voice)."""
        ...

    def synthesize(self, text: str, *, voice: str, speed: float = 1.0) -> AsyncIterator[PCM]:
        """Speak ``text``; yield audio chunks as they are ready (the first as early as possible)."""
        ...

    async def warm_up(self) -> None: ...


# --------------------------------------------------------------------------------------------------
# Language model


@dataclass(frozen=True)
class FunctionTool:
    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)


ToolChoice = Literal["auto", "none", "required"] | str
"""``auto``/``none``/``required`` or the name of the one function the model must call."""


@dataclass(frozen=True)
class ChatRequest:
    """A chat-completions style request built from the conversation.

    ``messages`` are OpenAI chat messages (``role`` system/user/assistant/tool, ``content`` text,
    assistant ``tool_calls``, tool ``tool_call_id``).
    """

    messages: list[dict[str, Any]]
    tools: list[FunctionTool] = field(default_factory=list)
    tool_choice: ToolChoice = "auto"
    max_output_tokens: int | None = None
    model: str | None = None
    parallel_tool_calls: bool | None = None
    temperature: float | None = None
    """Sampling temperature; None leaves it to the model server."""


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a tool call. ``index`` tells parallel calls apart; the first delta of a call carries
    its ``call_id`` and ``name``, later ones only ``arguments`` text."""

    index: int
    arguments: str = ""
    call_id: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class Usage:
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class Finish:
    reason: Literal["stop", "length", "tool_calls", "content_filter"]


LLMEvent = TextDelta | ToolCallDelta | Usage | Finish


@runtime_checkable
class LanguageModel(Protocol):
    name: str

    def stream(self, request: ChatRequest) -> AsyncIterator[LLMEvent]:
        """Stream the reply. Raise EngineError on failure. Must stop promptly when cancelled."""
        ...

    async def warm_up(self) -> None: ...


# --------------------------------------------------------------------------------------------------
# Noise suppression

NoiseReductionType = Literal["near_field", "far_field"]
"""``audio.input.noise_reduction.type``: a close-talking microphone (headset) or a distant one
(laptop, conference room)."""


@runtime_checkable
class NoiseSuppressor(Protocol):
    """Removes background noise from one stream of input audio, before VAD and recognition.

    Streaming with state, so each session (each input stream) needs its own. ``process`` takes any
    number of samples and returns the cleaned audio that is ready. The output is time-aligned with the
    input (output sample ``k`` is input sample ``k``, cleaned) and lags it by a fixed
    ``latency_ms``: after ``process`` calls that took ``n`` samples in all, exactly
    ``max(0, n - latency_samples)`` samples have come out, where ``latency_samples`` is
    ``round(latency_ms * sample_rate / 1000)``. ``flush`` returns the rest, so that in all as many
    samples come out as went in, and starts a new stream. Chunk sizes do not change the output.
    """

    name: str
    sample_rate: int
    latency_ms: float

    def process(self, pcm: PCM) -> PCM:
        """Add audio; return the cleaned audio now due (possibly empty)."""
        ...

    def flush(self) -> PCM:
        """End the stream: return the audio still held back, then start afresh as after ``reset``."""
        ...

    def reset(self) -> None:
        """Drop held audio and the noise estimate (start of an unrelated stream)."""
        ...
