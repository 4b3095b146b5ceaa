"""Audio for ``parley talk``: WAV files as paced 100 ms chunks, and the microphone.

Everything here is the Realtime wire's default format: 16-bit little-endian mono PCM at 24 kHz.
``sounddevice`` (and the PortAudio library under it) is imported only when the microphone is used.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from parley.audio.pcm import array_to_pcm16_bytes, pcm16_bytes_to_array
from parley.audio.resample import StreamResampler, resample
from parley.audio.wav import read_wav, write_wav

RATE = 24000
"""The wire sample rate."""
BYTES_PER_SECOND = RATE * 2
CHUNK_SECONDS = 0.1
CHUNK_BYTES = int(BYTES_PER_SECOND * CHUNK_SECONDS)


def load_wav(path: str | Path) -> bytes:
    """A WAV file's audio as wire PCM (24 kHz mono PCM16); raises OSError or ValueError."""
    pcm, rate = read_wav(path)
    return array_to_pcm16_bytes(resample(pcm, rate, RATE))


def save_wav(path: str | Path, audio: bytes) -> None:
    """Write wire PCM to a 24 kHz WAV file."""
    write_wav(path, pcm16_bytes_to_array(audio), RATE)


def silence(seconds: float) -> bytes:
    return bytes(int(BYTES_PER_SECOND * seconds) // 2 * 2)


def split(audio: bytes, size: int = CHUNK_BYTES) -> list[bytes]:
    """``audio`` in chunks of ``size`` bytes (the last may be shorter)."""
    return [audio[i : i + size] for i in range(0, len(audio), size)]


async def paced(chunks: Sequence[bytes], *, real_time: bool) -> AsyncIterator[bytes]:
    """Yield ``chunks``, at the pace they would be spoken when ``real_time``, else at once."""
    start = time.monotonic()
    sent = 0.0
    for chunk in chunks:
        if real_time:
            delay = start + sent - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        yield chunk
        sent += len(chunk) / BYTES_PER_SECOND


class MicrophoneError(RuntimeError):
    """The microphone cannot be used; the message says why and what to do."""


def _sounddevice() -> Any:
    try:
        return importlib.import_module("sounddevice")
    except ImportError as exc:
        raise MicrophoneError(
            "--mic needs the sounddevice package (pip install sounddevice); use --wav FILE instead"
        ) from exc
    except OSError as exc:  # sounddevice raises OSError when the PortAudio library is missing
        raise MicrophoneError(
            f"--mic needs the PortAudio library ({exc}); install it (Debian/Ubuntu: "
            "apt install libportaudio2, macOS: brew install portaudio) or use --wav FILE instead"
        ) from exc


def input_device() -> tuple[str, int]:
    """The default input device's name and sample rate; raises MicrophoneError when there is none."""
    sd = _sounddevice()
    try:
        info = sd.query_devices(kind="input")
    except (sd.PortAudioError, ValueError) as exc:
        raise MicrophoneError(
            f"no microphone found (no audio input device: {exc}); use --wav FILE instead"
        ) from exc
    if not info or int(info.get("max_input_channels", 0)) < 1:
        raise MicrophoneError("no microphone found (no audio input device); use --wav FILE instead")
    return str(info["name"]), int(info["default_samplerate"])


class Microphone:
    """The default input device as a stream of 100 ms wire-PCM chunks: ``async with Microphone() as mic``."""

    def __init__(self) -> None:
        self.name, self._rate = input_device()
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._resampler = StreamResampler(self._rate, RATE)
        self._stream: Any = None
        self._pending = b""

    async def __aenter__(self) -> Microphone:
        sd = _sounddevice()
        loop = asyncio.get_running_loop()

        def callback(data: Any, frames: int, when: Any, status: Any) -> None:
            loop.call_soon_threadsafe(self._queue.put_nowait, bytes(data))

        try:
            self._stream = sd.RawInputStream(
                samplerate=self._rate,
                channels=1,
                dtype="int16",
                blocksize=int(self._rate * CHUNK_SECONDS),
                callback=callback,
            )
            self._stream.start()
        except sd.PortAudioError as exc:
            raise MicrophoneError(f"cannot open the microphone {self.name!r}: {exc}") from exc
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream.close()
            self._stream = None

    def drain(self) -> None:
        """Forget audio captured so far."""
        while not self._queue.empty():
            self._queue.get_nowait()
        self._pending = b""
        self._resampler.reset()

    async def chunks(self) -> AsyncIterator[bytes]:
        """Captured audio, 100 ms at a time, for as long as the caller keeps reading."""
        while True:
            raw = await self._queue.get()
            samples = np.frombuffer(raw, dtype="<i2")
            self._pending += array_to_pcm16_bytes(self._resampler.process(samples))
            while len(self._pending) >= CHUNK_BYTES:
                chunk, self._pending = self._pending[:CHUNK_BYTES], self._pending[CHUNK_BYTES:]
                yield chunk
