"""The client side of ``bench/load.py``: the audio every session streams, and the sessions.

:func:`speech_loop` builds a loop of speech and pauses at 24 kHz (flite sentences, vowel-like bursts
without flite, or a WAV), :func:`append_events` cuts it into ready-made ``input_audio_buffer.append``
frames, and :class:`Load` keeps N WebSocket sessions sending them on an absolute real-time schedule,
recording what each sees in the current :class:`Window` (turns, answers, how late the sends left,
errors).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import shutil
import time
import wave
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np
import numpy.typing as npt

from common import WIRE_RATE
from load_server import cpu_seconds

PCM = npt.NDArray[np.int16]

SENTENCES = (
    "I would like to book a table for four people tonight.",
    "What is the weather going to be like tomorrow morning?",
    "Please remind me to call my sister at six.",
)
PAUSES_S = (2.5, 3.0, 3.5)
"""Silence before each sentence: the turn ends 0.5 s into it, and the reply has played before the
next sentence starts (no barge-in)."""
CONNECT_CONCURRENCY = 16
CONNECT_TIMEOUT_S = 60.0


# -------------------------------------------------------------------------------------- audio


def quiet(seconds: float, rng: np.random.Generator) -> PCM:
    """Room noise at -70 dBFS: what a microphone sends when nobody speaks."""
    noise = rng.standard_normal(round(WIRE_RATE * seconds)) * 32768 * 10 ** (-70 / 20)
    return np.round(noise).astype(np.int16)


def vowel_bursts(seconds: float) -> PCM:
    """Speech-like sound Silero takes for speech: a 120 Hz voice through vowel formants, with a
    syllable every 200 ms."""
    rate = WIRE_RATE
    n = round(rate * seconds)
    t = np.arange(n) / rate
    f0 = 120.0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    signal_ = np.zeros(n)
    syllable = round(0.2 * rate)
    formants = ((700, 1200, 2600), (300, 2300, 3000), (500, 900, 2500))
    for start in range(0, n, syllable):
        span = slice(start, min(n, start + syllable))
        vowel = formants[(start // syllable) % len(formants)]
        for harmonic in range(1, 30):
            f = harmonic * 120.0
            amplitude = sum(1 / (1 + ((f - fk) / 100) ** 2) for fk in vowel) / harmonic**0.5
            signal_[span] += amplitude * np.sin(harmonic * phase[span])
    signal_ *= np.clip(np.sin(np.pi * ((t / 0.2) % 1)), 0, 1) ** 0.7
    pcm: PCM = (signal_ / np.max(np.abs(signal_)) * 8000).astype(np.int16)
    return pcm


def read_wav(path: Path) -> PCM:
    import soxr

    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise SystemExit(f"{path}: only 16-bit PCM WAV files are supported")
        channels, rate = wav.getnchannels(), wav.getframerate()
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, channels)
    mono = pcm.mean(axis=1) if channels > 1 else pcm[:, 0].astype(np.float64)
    if rate != WIRE_RATE:
        mono = soxr.resample(mono, rate, WIRE_RATE)
    out: PCM = np.clip(np.round(mono), -32768, 32767).astype(np.int16)
    return out


def speech_loop(wav: Path | None) -> tuple[PCM, str]:
    """The audio every session loops over, at 24 kHz, and where it came from."""
    rng = np.random.default_rng(0)
    if wav is not None:
        pieces, source = [read_wav(wav)], f"{wav}"
    elif shutil.which("flite"):
        from tests.speech import flite_speech

        pieces = [np.asarray(flite_speech(text, WIRE_RATE, "rms")) for text in SENTENCES]
        source = f"{len(pieces)} flite sentences"
    else:
        pieces = [vowel_bursts(seconds) for seconds in (1.6, 2.4, 1.2)]
        source = f"{len(pieces)} synthesized vowel-like bursts (flite is not installed)"
    parts: list[PCM] = []
    for index, piece in enumerate(pieces):
        parts += [quiet(PAUSES_S[index % len(PAUSES_S)], rng), piece]
    pcm = np.concatenate(parts)
    speech_s = sum(len(p) for p in pieces) / WIRE_RATE
    return pcm, f"{source}, {speech_s:.1f} s of speech in a {len(pcm) / WIRE_RATE:.1f} s loop"


def append_events(pcm: PCM, chunk_ms: int) -> list[str]:
    """The loop as ready-made ``input_audio_buffer.append`` frames (the client only sends them)."""
    step = WIRE_RATE * chunk_ms // 1000
    usable = len(pcm) - len(pcm) % step
    data = pcm[:usable].astype("<i2").tobytes()
    size = step * 2
    return [
        json.dumps(
            {"type": "input_audio_buffer.append", "audio": base64.b64encode(data[i : i + size]).decode()},
            separators=(",", ":"),
        )
        for i in range(0, len(data), size)
    ]


# -------------------------------------------------------------------------------------- load


@dataclass(eq=False)
class Client:
    index: int
    ws: aiohttp.ClientWebSocketResponse
    position: int
    """The next chunk of the loop to send."""
    created: asyncio.Event = field(default_factory=asyncio.Event)
    stopped_at: float | None = None
    """When the last ``speech_stopped`` arrived, until the first audio delta of the answer."""
    closed: bool = False
    reader: asyncio.Task[None] | None = None


@dataclass
class Window:
    """What the client saw during one measured window."""

    wall: float = field(default_factory=time.monotonic)
    cpu: float = field(default_factory=cpu_seconds)
    speech_started: int = 0
    speech_stopped: int = 0
    responses: Counter[str] = field(default_factory=Counter)
    answer: list[float] = field(default_factory=list)
    """Seconds from receiving ``speech_stopped`` to receiving the first ``response.output_audio.delta``."""
    late: list[float] = field(default_factory=list)
    """Per pacing tick: how late the last send of the tick left, against its absolute schedule."""


class Load:
    """N sessions appending audio in real time; :meth:`resize` opens or closes sessions.

    Sessions are spread over ``slots`` phases of the chunk period; one pacing task per phase sends
    the next chunk of each of its sessions, so the client costs one wake-up per phase and tick rather
    than one per session.
    """

    def __init__(self, url: str, messages: list[str], chunk_ms: int, seed: int) -> None:
        self.url = url
        self.messages = messages
        self.chunk_s = chunk_ms / 1000
        self.slots = max(1, min(chunk_ms, 50))
        self.groups: list[list[Client]] = [[] for _ in range(self.slots)]
        self.clients: list[Client] = []
        self.rng = random.Random(seed)
        self.errors: list[str] = []
        self.window = Window()
        self.closing = False
        self.shrunk = False
        """Sessions were closed: the server's RSS no longer says what the open ones hold."""
        self._next_index = 0
        self._http: aiohttp.ClientSession | None = None
        self._pacers: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Load:
        self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        self._t0 = asyncio.get_running_loop().time() + 0.05
        self._pacers = [
            asyncio.create_task(self._pace(slot), name=f"pacer {slot}") for slot in range(self.slots)
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def error(self, message: str) -> None:
        self.errors.append(message)

    def mark(self) -> None:
        self.window = Window()

    @property
    def open(self) -> int:
        return sum(1 for c in self.clients if not c.closed)

    async def resize(self, n: int) -> None:
        """Open or close sessions until ``n`` are open. A new session starts streaming once it has
        its ``session.created``, at a random point of the loop; the newest sessions are closed first."""
        if n < self.open:
            await self._shrink(self.open - n)
            return
        assert self._http is not None
        http = self._http
        limit = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def open_one(index: int) -> None:
            client: Client | None = None
            async with limit:
                try:
                    async with asyncio.timeout(CONNECT_TIMEOUT_S):
                        ws = await http.ws_connect(
                            self.url, headers={"Authorization": "Bearer sk-bench"}, max_msg_size=0
                        )
                        client = Client(index, ws, self.rng.randrange(len(self.messages)))
                        self.clients.append(client)
                        client.reader = asyncio.create_task(self._read(client), name=f"reader {index}")
                        await client.created.wait()
                except Exception as exc:
                    self.error(f"session {index}: could not open it: {exc!r}")
                    if client is not None and not client.closed:
                        client.closed = True
                        await client.ws.close()
                    return
                self.groups[index % self.slots].append(client)

        first = self._next_index
        self._next_index += n - self.open
        await asyncio.gather(*(open_one(i) for i in range(first, self._next_index)))

    async def _shrink(self, count: int) -> None:
        self.shrunk = True
        closing = [c for c in self.clients if not c.closed][-count:]
        for client in closing:
            client.closed = True  # before the close: not a disconnect to count
            self.groups[client.index % self.slots].remove(client)
        await asyncio.gather(*(c.ws.close() for c in closing), return_exceptions=True)

    async def _pace(self, slot: int) -> None:
        loop = asyncio.get_running_loop()
        group = self.groups[slot]
        offset = slot * self.chunk_s / self.slots
        messages = self.messages
        tick = 0
        while True:
            due = self._t0 + offset + tick * self.chunk_s
            delay = due - loop.time()
            # Behind schedule (a busy client), the next chunks go at once until it has caught up,
            # as a client sending what its microphone captured would; sleep(0) lets readers in.
            await asyncio.sleep(max(0.0, delay))
            for client in tuple(group):
                if client.closed:
                    continue
                try:
                    await client.ws.send_str(messages[client.position])
                except (ConnectionError, RuntimeError) as exc:
                    if not self.closing:
                        client.closed = True
                        self.error(f"session {client.index}: sending failed: {exc!r}")
                    continue
                client.position = (client.position + 1) % len(messages)
            if group:
                self.window.late.append(loop.time() - due)
            tick += 1

    async def _read(self, client: Client) -> None:
        loop = asyncio.get_running_loop()
        try:
            async for message in client.ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                now = loop.time()
                event = json.loads(message.data)
                kind = event.get("type")
                window = self.window
                if kind == "response.output_audio.delta":
                    if client.stopped_at is not None:
                        window.answer.append(now - client.stopped_at)
                        client.stopped_at = None
                elif kind == "input_audio_buffer.speech_stopped":
                    client.stopped_at = now
                    window.speech_stopped += 1
                elif kind == "input_audio_buffer.speech_started":
                    window.speech_started += 1
                elif kind == "response.done":
                    response = event["response"]
                    window.responses[response["status"]] += 1
                    client.stopped_at = None
                    if response["status"] == "failed":
                        self.error(
                            f"session {client.index}: response failed: {response.get('status_details')}"
                        )
                elif kind == "session.created":
                    client.created.set()
                elif kind == "error":
                    error = event.get("error", {})
                    self.error(
                        f"session {client.index}: error event {error.get('code')}: {error.get('message')}"
                    )
        except Exception as exc:
            if not self.closing:
                self.error(f"session {client.index}: reading failed: {exc!r}")
        finally:
            if not self.closing and not client.closed:
                self.error(f"session {client.index}: disconnected (close code {client.ws.close_code})")
            client.closed = True

    async def close(self) -> None:
        self.closing = True
        for pacer in self._pacers:
            pacer.cancel()
        await asyncio.gather(*self._pacers, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(c.ws.close() for c in self.clients), return_exceptions=True), 30
            )
        readers = [c.reader for c in self.clients if c.reader is not None]
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
