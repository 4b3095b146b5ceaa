"""The settings that choose and configure the engines: ``PARLEY_VAD``, ``PARLEY_STT``, ``PARLEY_LLM``,
``PARLEY_TTS`` and each engine's options, named ``PARLEY_<STAGE>_<ENGINE>_<OPTION>`` so that engines
of one failover list never share an option.

``PARLEY_STT``, ``PARLEY_LLM`` and ``PARLEY_TTS`` take one engine or a comma-separated failover list
(``faster-whisper,pocketsphinx``): the first serves, and the next takes over while it fails.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings


def engine_list(value: str) -> list[str]:
    """The engines of a ``PARLEY_STT``/``_LLM``/``_TTS`` value, in failover order."""
    return [name.strip() for name in value.split(",") if name.strip()]


class EngineSettings(BaseSettings):
    """Mixed into :class:`parley.config.Settings`; only engine code reads these."""

    llm: str = Field(
        "auto",
        description="LLM engine, or a comma-separated failover list: auto, openai, llama-cpp, echo.",
    )
    llm_base_url: str | None = Field(
        None, description="Base URL of an OpenAI-compatible chat-completions server (e.g. .../v1)."
    )
    llm_model: str | None = Field(None, description="Model name to ask that server for.")
    llm_api_key: str | None = Field(None, description="API key for that server.")
    llm_timeout_s: float = Field(60.0, gt=0, description="Timeout of one LLM request in seconds.")
    ollama_url: str = Field(
        "http://127.0.0.1:11434", description="Where `auto` looks for a local Ollama server."
    )
    llm_llama_model: Path | None = Field(
        None, description="llama-cpp: the GGUF model file, run by llama.cpp in a worker process."
    )
    llm_llama_context: int = Field(
        4096, ge=256, description="llama-cpp: context window in tokens (the conversation is cut to fit)."
    )
    llm_llama_threads: int | None = Field(
        None, ge=1, description="llama-cpp: CPU threads. Default: the cores this process may use."
    )
    llm_llama_chat_format: str | None = Field(
        None,
        description="llama-cpp: chat template name (chatml, llama-3...). Default: the GGUF's own template.",
    )

    stt: str = Field(
        "pocketsphinx",
        description="Speech-to-text engine, or a comma-separated failover list: pocketsphinx, "
        "faster-whisper, openai.",
    )
    stt_whisper_model: str | None = Field(
        None,
        description="faster-whisper: a CTranslate2 Whisper model directory, or a model name (tiny.en, "
        "small...) the library downloads on a machine with internet.",
    )
    stt_whisper_compute_type: str = Field(
        "int8", description="faster-whisper: CTranslate2 compute type (int8, int8_float32, float32...)."
    )
    stt_whisper_threads: int = Field(
        0,
        ge=0,
        description="faster-whisper: CPU threads of each of its 2 decoders (0: half the cores this "
        "process may use).",
    )
    stt_whisper_beam_size: int = Field(
        1, ge=1, description="faster-whisper: beam size of the final decode (partials use 1)."
    )
    stt_whisper_partial_ms: int = Field(
        600, ge=100, description="faster-whisper: re-decode the growing utterance for a partial this often."
    )
    stt_openai_base_url: str | None = Field(
        None,
        description="openai STT: base URL of an OpenAI-compatible server with /audio/transcriptions "
        "(e.g. http://127.0.0.1:8001/v1 for speaches or vLLM).",
    )
    stt_openai_api_key: str | None = Field(None, description="openai STT: API key for that server.")
    stt_openai_model: str = Field("whisper-1", description="openai STT: model name to ask that server for.")
    stt_openai_realtime: bool = Field(
        False,
        description="openai STT: stream audio over the server's realtime transcription WebSocket "
        "(/realtime?intent=transcription, as OpenAI and Parley offer) instead of posting each utterance.",
    )
    stt_openai_timeout_s: float = Field(30.0, gt=0, description="openai STT: timeout of one request.")

    tts: str = Field(
        "espeak",
        description="Text-to-speech engine, or a comma-separated failover list: espeak, piper, kokoro, "
        "openai.",
    )
    tts_voice_map: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description='Realtime API voices to each engine\'s voices, as JSON keyed by engine: {"kokoro": '
        '{"marin": "af_heart"}, "piper": {"alloy": "3"}}. Unmapped voices use the engine\'s own table.',
    )
    tts_piper_voice: Path | None = Field(
        None, description="piper: the voice model file (.onnx, with its .onnx.json beside it)."
    )
    tts_kokoro_model: Path | None = Field(None, description="kokoro: the kokoro-onnx model file (.onnx).")
    tts_kokoro_voices: Path | None = Field(None, description="kokoro: the voices file (voices-v1.0.bin).")
    tts_openai_base_url: str | None = Field(
        None,
        description="openai TTS: base URL of an OpenAI-compatible server with /audio/speech (e.g. "
        "http://127.0.0.1:8001/v1).",
    )
    tts_openai_api_key: str | None = Field(None, description="openai TTS: API key for that server.")
    tts_openai_model: str = Field("tts-1", description="openai TTS: model name to ask that server for.")
    tts_openai_timeout_s: float = Field(30.0, gt=0, description="openai TTS: timeout of one request.")

    vad: str = Field(
        "silero",
        description="Voice activity detector: silero, or silero-onnx (one model shared by all sessions).",
    )
    denoise: str = Field("rnnoise", description="Noise suppressor for audio.input.noise_reduction: rnnoise.")
    engine_retry_s: float = Field(
        30.0,
        gt=0,
        description="After an engine of a failover list fails, the next serves for this long before the "
        "failed one is tried again.",
    )

    @field_validator("tts_voice_map", mode="before")
    @classmethod
    def _voice_map(cls, value: Any) -> Any:
        table = json.loads(value) if isinstance(value, str) and value.strip() else value or {}
        if not isinstance(table, dict) or not all(
            isinstance(voices, dict) and all(isinstance(v, str) for v in voices.values())
            for voices in table.values()
        ):
            raise ValueError('give a JSON object keyed by TTS engine, like {"kokoro": {"marin": "af_heart"}}')
        return table

    @field_validator("llm", "stt", "tts")
    @classmethod
    def _engine_list(cls, value: str) -> str:
        names = engine_list(value)
        if not names:
            raise ValueError("name at least one engine")
        if len(set(names)) != len(names):
            raise ValueError(f"an engine is named twice in {value!r}")
        return ",".join(names)
