"""Speech synthesis by an OpenAI-compatible speech server (OpenAI, speaches, vLLM...).

Each call posts the whole text to ``{base}/audio/speech`` with ``response_format="pcm"`` (24 kHz
16-bit mono, as OpenAI defines it) through the ``openai`` client and yields the body's samples as
they arrive, so playback can start with the first network chunk. The caller already sends
sentence-sized text; only text over the API's 4096-character limit is cut (at spaces).

Voices: the Realtime API names are passed through (OpenAI-compatible servers use them);
``PARLEY_TTS_VOICE_MAP`` ``{"openai": {...}}`` maps them to a server's own voices (e.g. a Kokoro
``af_heart`` on speaches). Limits: a server whose ``pcm`` is not 24 kHz (some serve a model's native
rate) plays at the wrong pitch; the speed is sent only when it is not 1 (OpenAI accepts 0.25-4).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import AsyncGenerator, AsyncIterator

import httpx2
import numpy as np
import openai
from openai import AsyncOpenAI, omit

from parley.config import Settings
from parley.engines.base import PCM, EngineError
from parley.engines.openai_client import NO_API_KEY, capital, speech_error, speech_server
from parley.engines.tts.voices import resolve_voice
from parley.protocol.session_config import VOICES

log = logging.getLogger("parley.engines.tts.openai")

SAMPLE_RATE = 24000
MAX_INPUT_CHARS = 4096
"""OpenAI's limit on ``input``."""
MIN_SPEED, MAX_SPEED = 0.25, 4.0
BUILTIN_VOICES = {voice: voice for voice in VOICES}


def text_pieces(text: str, limit: int = MAX_INPUT_CHARS) -> list[str]:
    """``text`` cut at spaces into pieces of at most ``limit`` characters (one piece when it fits)."""
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        cut = rest.rfind(" ", 0, limit + 1)
        cut = cut if cut > 0 else limit
        pieces.append(rest[:cut].strip())
        rest = rest[cut:].strip()
    return [*pieces, rest] if rest else pieces


class PcmAssembler:
    """Turns a byte stream of 16-bit little-endian samples into int16 arrays, whatever the chunking:
    an odd byte at the end of a chunk waits for the next one."""

    def __init__(self) -> None:
        self._pending = b""

    def push(self, data: bytes) -> PCM:
        data = self._pending + data
        whole = len(data) - len(data) % 2
        self._pending = data[whole:]
        return np.frombuffer(data[:whole], dtype="<i2").astype(np.int16)


class OpenAITTS:
    """The ``openai`` text-to-speech engine: 24 kHz audio streamed from a remote server."""

    name = "openai"
    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        base_url: str,
        *,
        model: str = "tts-1",
        api_key: str | None = None,
        timeout_s: float = 30.0,
        voice_map: dict[str, dict[str, str]] | None = None,
        default_voice: str = "marin",
        max_retries: int = 1,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout_s = timeout_s
        self.where = f"the text-to-speech server at {self.base_url}"
        self.voice_map = voice_map or {}
        self.default_voice = default_voice if default_voice in VOICES else "marin"
        self._client = AsyncOpenAI(
            base_url=self.base_url, api_key=api_key or NO_API_KEY, timeout=timeout_s, max_retries=max_retries
        )

    def voices(self) -> list[str]:
        return list(VOICES)

    def server_voice(self, voice: str) -> str:
        """The voice name sent to the server for a Realtime API voice; an unknown name gets the default
        voice, itself mapped."""
        return resolve_voice(
            voice,
            engine=self.name,
            settings_map=self.voice_map,
            builtin=BUILTIN_VOICES,
            available=VOICES,
            default=self.server_voice(self.default_voice) if voice != self.default_voice else voice,
        )

    async def synthesize(self, text: str, *, voice: str, speed: float = 1.0) -> AsyncIterator[PCM]:
        server_voice = self.server_voice(voice)
        speed = min(MAX_SPEED, max(MIN_SPEED, speed)) if math.isfinite(speed) else 1.0
        for piece in text_pieces(text):
            async with contextlib.aclosing(self._speak(piece, server_voice, speed)) as chunks:
                async for pcm in chunks:  # closing it at once when our consumer stops
                    yield pcm

    async def _speak(self, text: str, voice: str, speed: float) -> AsyncGenerator[PCM]:
        assembler = PcmAssembler()
        try:
            async with self._client.audio.speech.with_streaming_response.create(
                model=self.model,
                input=text,
                voice=voice,
                response_format="pcm",
                speed=speed if speed != 1.0 else omit,
            ) as response:
                async for data in response.iter_bytes():
                    pcm = assembler.push(data)
                    if pcm.size:
                        yield pcm
        except (openai.OpenAIError, httpx2.HTTPError, ValueError) as exc:  # HTTPError: while streaming
            raise speech_error(
                exc, where=self.where, stage="tts", model=self.model, timeout_s=self.timeout_s
            ) from exc

    async def warm_up(self) -> None:
        """Synthesise a short word, which proves the server answers (raises EngineError if not)."""
        samples = 0
        async for pcm in self.synthesize("Hello.", voice=self.default_voice):
            samples += pcm.size
        if not samples:
            raise EngineError(f"{capital(self.where)} returned no audio for 'Hello.'")
        log.info("%s answers (model %s)", self.where, self.model)

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.close()


def create(settings: Settings) -> OpenAITTS:
    return OpenAITTS(
        **speech_server(settings, "tts"), voice_map=settings.tts_voice_map, default_voice=settings.voice
    )
