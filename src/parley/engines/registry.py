"""Maps an engine name from the settings to a factory, importing engine modules only when chosen.

Each entry is ``"module:function"``; the function takes the :class:`~parley.config.Settings` and
returns the engine. New engines register here (or at run time with :func:`register`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from parley.config import Settings
from parley.engine_settings import engine_list
from parley.engines import sentence_end
from parley.engines.base import (
    LanguageModel,
    NoiseReductionType,
    NoiseSuppressor,
    SpeechToText,
    TextToSpeech,
    VoiceActivityDetector,
)
from parley.engines.failover import FailoverListener, FailoverLLM, FailoverSTT, FailoverTTS
from parley.engines.sentence_end import SentenceEnds

Kind = Literal["vad", "stt", "llm", "tts", "denoise"]


class DenoiseFactory(Protocol):
    """Makes the noise suppressor of one input stream: ``(type, strength)`` of
    ``audio.input.noise_reduction``, running at ``sample_rate`` (the input's own, so that no resampler
    in front of it holds back audio). Denoise engines register
    ``create(settings, type, strength, *, sample_rate)``."""

    def __call__(
        self, kind: NoiseReductionType, strength: float | None = None, sample_rate: int = 16_000
    ) -> NoiseSuppressor: ...


_FACTORIES: dict[Kind, dict[str, str | Callable[..., Any]]] = {
    "vad": {
        "silero": "parley.engines.vad.silero:create",
        "silero-onnx": "parley.engines.vad.silero_onnx:create",
    },
    "stt": {
        "pocketsphinx": "parley.engines.stt.pocketsphinx:create",
        "faster-whisper": "parley.engines.stt.faster_whisper:create",
        "openai": "parley.engines.stt.openai_stt:create",
    },
    "llm": {
        "auto": "parley.engines.llm.auto:create",
        "openai": "parley.engines.llm.openai_chat:create",
        "echo": "parley.engines.llm.echo:create",
        "llama-cpp": "parley.engines.llm.llama_cpp:create",
    },
    "tts": {
        "espeak": "parley.engines.tts.espeak:create",
        "piper": "parley.engines.tts.piper:create",
        "kokoro": "parley.engines.tts.kokoro:create",
        "openai": "parley.engines.tts.openai_tts:create",
    },
    "denoise": {
        "rnnoise": "parley.engines.denoise.rnnoise:create",
    },
}


class UnknownEngineError(ValueError):
    pass


def register(kind: Kind, name: str, factory: str | Callable[..., Any]) -> None:
    _FACTORIES[kind][name] = factory


def names(kind: Kind) -> list[str]:
    return sorted(_FACTORIES[kind])


def _factory(kind: Kind, name: str) -> Callable[..., Any]:
    try:
        target = _FACTORIES[kind][name]
    except KeyError:
        raise UnknownEngineError(
            f"unknown {kind} engine {name!r}; choose one of: {', '.join(names(kind))}"
        ) from None
    if callable(target):
        return target
    module_name, _, attr = target.partition(":")
    factory: Callable[..., Any] = getattr(importlib.import_module(module_name), attr)
    return factory


def create(kind: Kind, name: str, settings: Settings) -> Any:
    return _factory(kind, name)(settings)


def denoise_factory(settings: Settings, name: str | None = None) -> DenoiseFactory:
    """The per-stream factory of the denoise engine ``name`` (default: ``settings.denoise``)."""
    create_one = _factory("denoise", name or settings.denoise)

    def make(
        kind: NoiseReductionType, strength: float | None = None, sample_rate: int = 16_000
    ) -> NoiseSuppressor:
        suppressor: NoiseSuppressor = create_one(settings, kind, strength, sample_rate=sample_rate)
        return suppressor

    return make


def _default_denoise(
    kind: NoiseReductionType, strength: float | None = None, sample_rate: int = 16_000
) -> NoiseSuppressor:
    return denoise_factory(Settings())(kind, strength, sample_rate)


@dataclass
class Engines:
    """The engines one server process uses; shared by all its sessions."""

    vad: Callable[[], VoiceActivityDetector]
    """VAD detectors keep recurrent state, so each session gets its own from this factory."""
    stt: SpeechToText
    llm: LanguageModel
    tts: TextToSpeech
    denoise: DenoiseFactory = field(default=_default_denoise)
    """Noise suppressors keep state, so each input stream gets its own from this factory."""
    sentence_ends: SentenceEnds = field(default_factory=sentence_end.shared)
    """P(end of sentence | words), read-only and shared: ``semantic_vad`` judges pauses with it."""

    def on_failover(self, listener: FailoverListener) -> None:
        """Call ``listener(stage, failed, taking_over)`` whenever a failover chain switches engines."""
        for engine in (self.stt, self.llm, self.tts):
            if isinstance(engine, FailoverSTT | FailoverLLM | FailoverTTS):
                engine.chain.listeners.append(listener)

    async def warm_up(self) -> None:
        await self.stt.warm_up()
        await self.tts.warm_up()
        await self.llm.warm_up()
        self.vad().speech_probability(_silence(self.vad().frame_samples))
        suppressor = self.denoise("near_field", None)
        suppressor.process(_silence(suppressor.sample_rate // 10))
        suppressor.flush()
        self.sentence_ends.probability(["good", "morning"])


def _silence(samples: int) -> Any:
    import numpy as np

    return np.zeros(samples, dtype=np.int16)


def load_engines(settings: Settings) -> Engines:
    """The engines the settings name; a comma-separated list of a stage becomes a failover chain."""
    vad_factory = _factory("vad", settings.vad)
    retry_s = settings.engine_retry_s
    stt = [create("stt", name, settings) for name in engine_list(settings.stt)]
    llm = [create("llm", name, settings) for name in engine_list(settings.llm)]
    tts = [create("tts", name, settings) for name in engine_list(settings.tts)]
    return Engines(
        vad=lambda: vad_factory(settings),
        stt=stt[0] if len(stt) == 1 else FailoverSTT(stt, retry_s),
        llm=llm[0] if len(llm) == 1 else FailoverLLM(llm, retry_s),
        tts=tts[0] if len(tts) == 1 else FailoverTTS(tts, retry_s),
        denoise=denoise_factory(settings),
    )
