"""Load: how many sessions streaming real-time audio one server core holds, and what each costs.

The server runs in a child process pinned to one CPU (every thread of it, so helper threads of
native code share that core too) with the real input path: the real Silero VAD (``vad`` default),
resampling and ``server_vad`` turn detection with its defaults, and fake instant STT, LLM and TTS
from ``tests/fakes.py`` (``--engines real``: pocketsphinx, espeak and the ``echo`` language model),
so what is measured is Parley's own cost of listening, not a speech engine's. This process, pinned to
the other CPUs, is the load: N WebSocket sessions, each appending ``--chunk-ms`` of 24 kHz PCM16 in
real time on an absolute schedule (chunk k is due at start + k x chunk, whatever the previous sends
took), starting at a random point of a loop of speech and pauses (flite sentences, or vowel-like
bursts without flite, or ``--wav``), so that VAD opens and closes turns and every turn is committed
and answered with audio.

The sweep adds sessions step by step (10, 25, 50, 75, 100, 125, 150, 200, ... up to ``--max``); each
step has a warm-up, then ``--seconds`` measured. Its row: the server process's CPU (and the core's,
other processes included), the **event-loop lag** of the server (a task inside it sleeps 10 ms again
and again; lag is how late it wakes up), p50/p99/max over the window, the server's RSS and RSS per
session (over the RSS before any session), how fast it grows per session, turns answered, the
client-observed time from ``input_audio_buffer.speech_stopped`` to the first
``response.output_audio.delta``, how late the client's sends were, and errors (``error`` events,
failed responses, disconnects, failed connects). The sweep stops after the first step whose lag p99
is above ``--target-ms`` (50 ms), then bisects (``--refine``, 2 steps) between it and the last step
under the target, closing or opening sessions. ``--engines real`` sweeps 2, 4, 6, 8, 10, 12, 15, 20, ...
``--quick``: 10, 25, 50 sessions (real: 2, 5, 10), 5 s each.

    .venv/bin/python bench/load.py [--seconds 20] [--max 300] [--chunk-ms 20] [--engines fake|real]
        [--quick] [--steps 10,25,50] [--warmup 5] [--target-ms 50] [--refine 2] [--core N] [--wav PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import os
import random
import shutil
import signal
import sys
import time
import wave
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, SupportsIndex, TextIO

import aiohttp
import numpy as np
import numpy.typing as npt
from aiohttp import web

# Run as a script: the benchmarks (common) and the repository root (tests) on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tests.fakes import FakeLLM, FakeSTT, FakeTTS

from common import ROOT, WIRE_RATE, header, percentile, table
from parley.config import Settings
from parley.engines.registry import Engines, create, load_engines
from parley.server.app import create_app
from parley.transports.websocket import LIVE

PCM = npt.NDArray[np.int16]

TARGET_P99_MS = 50.0
TICK_S = 0.010
"""The lag monitor's sleep."""
DEFAULT_STEPS = (10, 25, 50, 75, 100, 125, 150, 200, 250, 300, 400, 500, 600, 800, 1000)
QUICK_STEPS = (10, 25, 50)
REAL_STEPS = (2, 4, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 75, 100)
"""With pocketsphinx listening to every turn a core holds far fewer sessions."""
QUICK_REAL_STEPS = (2, 5, 10)
SENTENCES = (
    "I would like to book a table for four people tonight.",
    "What is the weather going to be like tomorrow morning?",
    "Please remind me to call my sister at six.",
)
PAUSES_S = (2.5, 3.0, 3.5)
"""Silence before each sentence: the turn ends 0.5 s into it, and the reply has played before the
next sentence starts (no barge-in)."""
TRANSCRIPT = "I would like to book a table for four people tonight"
"""What the fake recogniser hears in every turn (the fake LLM answers "You said: ...")."""
CONNECT_CONCURRENCY = 16
CONNECT_TIMEOUT_S = 60.0
SERVER_START_TIMEOUT_S = 180.0
SERVER_STOP_TIMEOUT_S = 20.0
CHILD_FLAG = "--serve-child"
THIS_FILE = str(Path(__file__).resolve())


# -------------------------------------------------------------------------------------- both sides


def pin_process(cpus: set[int]) -> None:
    """Pin every thread of this process, and so every thread started later, to ``cpus``."""
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(tid), cpus)
    os.sched_setaffinity(0, cpus)


def rss_kib(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds() -> float:
    """CPU time of this process, all threads, user and system."""
    times = os.times()
    return times.user + times.system


def core_ticks(cpu: int) -> tuple[int, int]:
    """(busy, total) jiffies of one CPU from /proc/stat: every process on it, not only ours."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            values = [int(v) for v in line.split()[1:]]
            idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
            total = sum(values[:8])  # guest time is already counted in user
            return total - idle, total
    return 0, 0


# -------------------------------------------------------------------------------------- server side


class _Kept(list[str]):
    """A transcript list that never runs out: the fake recogniser pops one per utterance."""

    def pop(self, index: SupportsIndex = -1) -> str:
        return self[index]


class _Dropped(list[Any]):
    """The fakes record what they were asked for; over a load test that would be a leak."""

    def append(self, value: Any) -> None:
        pass


def server_settings(engines: str) -> Settings:
    return Settings(
        sessions_per_ip=1_000_000,
        handshakes_per_minute_per_ip=1_000_000,
        requests_per_minute=1_000_000,
        tokens_per_minute=1_000_000_000,
        log_level="warning",
        llm="echo" if engines == "real" else "auto",  # the fake engines bring their own
    )


def server_engines(kind: str, settings: Settings) -> Engines:
    if kind == "real":
        return load_engines(settings)  # silero, pocketsphinx, espeak, echo
    return Engines(
        vad=lambda: create("vad", settings.vad, settings),  # the real Silero, one per session
        stt=FakeSTT(transcripts=_Kept([TRANSCRIPT])),
        llm=FakeLLM(requests=_Dropped()),
        tts=FakeTTS(spoken=_Dropped()),
    )


class WarningCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.first: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if len(self.first) < 5:
            self.first.append(f"{record.name}: {record.getMessage()}")


class LagMonitor:
    """Sleeps ``TICK_S`` again and again on the server's loop; how late each wake-up is, is the lag
    every other piece of work on that loop (an append, an event to send) waits too."""

    def __init__(self) -> None:
        self.mark()

    def mark(self) -> None:
        self.lags: list[float] = []
        self.wall = time.monotonic()
        self.cpu = cpu_seconds()
        self.rss = rss_kib()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(TICK_S)
            self.lags.append(max(0.0, loop.time() - before - TICK_S))

    def stats(self) -> dict[str, Any]:
        lags = self.lags
        wall = time.monotonic() - self.wall
        return {
            "lag_p50": percentile(lags, 50),
            "lag_p99": percentile(lags, 99),
            "lag_max": max(lags) if lags else float("nan"),
            "ticks": len(lags),
            "wall": wall,
            "cpu_pct": 100 * (cpu_seconds() - self.cpu) / wall if wall > 0 else float("nan"),
            "rss_mark_kib": self.rss,
            "rss_kib": rss_kib(),
        }


async def serve(kind: str, protocol: TextIO, warnings: WarningCounter) -> None:
    """The server process: Parley on a free loopback port, driven by JSON lines on stdin (mark,
    stats, stop) and answering on ``protocol``. End of stdin (the parent gone) stops it too."""
    loop = asyncio.get_running_loop()

    def reply(message: dict[str, Any]) -> None:
        protocol.write(json.dumps(message) + "\n")
        protocol.flush()

    settings = server_settings(kind)
    app = create_app(settings, server_engines(kind, settings), with_store=False)
    runner = web.AppRunner(
        app, handle_signals=False, access_log=None, handler_cancellation=True, shutdown_timeout=2.0
    )
    await runner.setup()  # the engines' warm-up
    monitor = LagMonitor()
    ticker = asyncio.create_task(monitor.run(), name="lag monitor")
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        reply({"port": int(runner.addresses[0][1]), "pid": os.getpid()})
        commands = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
        while line := await commands.readline():
            command = json.loads(line)["cmd"]
            if command == "mark":
                monitor.mark()
                reply({"ok": True})
            elif command == "rss":
                reply({"rss_kib": rss_kib()})
            elif command == "stats":
                stats = monitor.stats()
                stats.update(
                    sessions=len(app[LIVE].open), warnings=warnings.count, warning_samples=warnings.first
                )
                reply(stats)
            elif command == "stop":
                break
    finally:
        ticker.cancel()
        await runner.cleanup()


def serve_child(kind: str, core: int | None) -> None:
    if core is not None:
        pin_process({core})
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever an engine prints goes to stderr, not into the protocol
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's; it stops us through stdin
    logging.basicConfig(level=logging.WARNING, format="server %(levelname)s %(name)s: %(message)s")
    warnings = WarningCounter()
    logging.getLogger().addHandler(warnings)
    asyncio.run(serve(kind, protocol, warnings))


class ServerGone(RuntimeError):
    pass


class ServerProcess:
    """The parent's handle on the server process."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.port = 0
        self.pid = proc.pid

    @classmethod
    async def start(cls, kind: str, core: int | None) -> ServerProcess:
        command = [sys.executable, THIS_FILE, CHILD_FLAG, "--engines", kind]
        if core is not None:
            command += ["--core", str(core)]
        proc = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT
        )
        server = cls(proc)
        try:
            hello = await server._read(SERVER_START_TIMEOUT_S, "to start")
        except BaseException:
            await server.stop()
            raise
        server.port = int(hello["port"])
        return server

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/realtime?model=gpt-realtime"

    async def _read(self, timeout_s: float, doing: str) -> dict[str, Any]:
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout_s)
        except TimeoutError:
            raise ServerGone(
                f"the server process did not answer within {timeout_s:.0f} s ({doing})"
            ) from None
        if not line:
            status = await self.proc.wait()
            raise ServerGone(
                f"the server process exited with status {status} ({doing}); its messages are above"
            )
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def command(self, cmd: str, timeout_s: float = 60.0) -> dict[str, Any]:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps({"cmd": cmd}) + "\n").encode())
            await self.proc.stdin.drain()
        except (ConnectionError, BrokenPipeError):
            raise ServerGone(f"the server process is gone (sending {cmd!r})") from None
        return await self._read(timeout_s, f"answering {cmd!r}")

    async def stop(self) -> None:
        """Ask it to stop (stdin: stop, then end of input); terminate, then kill, if it does not."""
        proc = self.proc
        if proc.returncode is None and proc.stdin is not None:
            with contextlib.suppress(Exception):
                proc.stdin.write(b'{"cmd": "stop"}\n')
                await proc.stdin.drain()
            with contextlib.suppress(Exception):
                proc.stdin.close()
        for step in ("wait", "terminate", "kill"):
            if proc.returncode is not None:
                break
            if step == "terminate":
                print("!! the server process did not stop; terminating it", file=sys.stderr, flush=True)
                proc.terminate()
            elif step == "kill":
                print("!! the server process did not terminate; killing it", file=sys.stderr, flush=True)
                proc.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), SERVER_STOP_TIMEOUT_S if step == "wait" else 5.0)
        if proc.returncode is None:
            await proc.wait()


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


# -------------------------------------------------------------------------------------- the sweep


@dataclass
class Row:
    sessions: int
    server: dict[str, Any]
    core_pct: float
    window: Window
    client_cpu_pct: float
    errors: int
    rss0_kib: int
    open_kib: float
    """RSS added per session by opening the sessions of this step, before they had streamed much."""
    after_shrink: bool
    """Measured after sessions were closed (a refinement step): the memory figures are not shown."""
    refine: bool = False

    @property
    def lag_p99_ms(self) -> float:
        return float(self.server["lag_p99"]) * 1000


def fmt(value: float, digits: int = 1) -> str:
    return "-" if value != value else f"{value:.{digits}f}"  # NaN: nothing measured


COLUMNS = (
    "sessions",
    "server CPU %",
    "core %",
    "lag p50",
    "p99",
    "max",
    "RSS MiB",
    "MiB/sess",
    "open MiB/sess",
    "KiB/s/sess",
    "turns",
    "answer p50",
    "p99",
    "send late p99",
    "client CPU %",
    "errors",
)
LEGEND = """\
server CPU %: the server process, all threads | core %: every process on the server's CPU
lag: how late the server's event loop woke from a 10 ms sleep, ms (p50, p99, max)
RSS: the server process's resident memory at the end of the window; MiB/sess: (RSS - RSS with no
  session) / sessions; open MiB/sess: RSS added per session by opening this step's sessions (before
  they had streamed); KiB/s/sess: RSS growth over the window / sessions / seconds
turns: responses completed in the window; answer: speech_stopped -> first response.output_audio.delta,
  received by the client, ms (p50, p99)
send late: how late the client's sends left against their schedule, ms; client CPU %: this process"""
REFINED = """\
*: a refinement step between the last step that met the lag target and the first that did not,
  reached by closing sessions (memory figures not shown: RSS keeps what closed sessions freed)"""


def print_table(rows: list[Row]) -> None:
    lines = [list(COLUMNS)]
    for row in rows:
        s, w = row.server, row.window
        n = row.sessions
        rss, mark = s["rss_kib"], s["rss_mark_kib"]
        memory = n > 0 and not row.after_shrink
        lines.append(
            [
                f"{n}*" if row.refine else str(n),
                fmt(s["cpu_pct"]),
                fmt(row.core_pct),
                fmt(s["lag_p50"] * 1000, 2),
                fmt(s["lag_p99"] * 1000, 2),
                fmt(s["lag_max"] * 1000, 1),
                fmt(rss / 1024),
                fmt((rss - row.rss0_kib) / 1024 / n, 2) if memory else "-",
                fmt(row.open_kib / 1024, 2) if memory else "-",
                fmt((rss - mark) / n / s["wall"], 1) if memory else "-",
                str(w.responses["completed"]),
                fmt(percentile(w.answer, 50) * 1000, 1),
                fmt(percentile(w.answer, 99) * 1000, 1),
                fmt(percentile(w.late, 99) * 1000, 1),
                fmt(row.client_cpu_pct),
                str(row.errors),
            ]
        )
    print(table(lines))
    print(LEGEND)
    if any(row.refine for row in rows):
        print(REFINED)


def steps_for(args: argparse.Namespace) -> list[int]:
    if args.steps:
        steps = sorted({int(s) for s in args.steps.split(",") if s.strip()})
    else:
        base: tuple[int, ...]
        if args.engines == "real":
            base = QUICK_REAL_STEPS if args.quick else REAL_STEPS
        else:
            base = QUICK_STEPS if args.quick else DEFAULT_STEPS
        steps = [n for n in base if n <= args.max]
        if not args.quick and args.max < base[-1] and args.max not in steps:
            steps.append(args.max)
    return [n for n in steps if 0 < n <= args.max] or [args.max]


async def measure(
    server: ServerProcess, load: Load, n: int, warmup_s: float, seconds: float, core: int | None, rss0: int
) -> Row:
    errors_before = len(load.errors)
    opened_before = load.open
    rss_before = (await server.command("rss"))["rss_kib"]
    await load.resize(n)
    rss_opened = (await server.command("rss"))["rss_kib"]
    opened = load.open - opened_before
    open_kib = (rss_opened - rss_before) / opened if opened > 0 else float("nan")
    await asyncio.sleep(warmup_s)
    await server.command("mark")
    load.mark()
    ticks = core_ticks(core) if core is not None else (0, 0)
    await asyncio.sleep(seconds)
    stats = await server.command("stats")
    window, load.window = load.window, Window()  # what follows (the next warm-up) is not this step's
    busy, total = core_ticks(core) if core is not None else (0, 0)
    core_pct = 100 * (busy - ticks[0]) / (total - ticks[1]) if total > ticks[1] else float("nan")
    client_cpu = 100 * (cpu_seconds() - window.cpu) / (time.monotonic() - window.wall)
    if stats["sessions"] != load.open:
        load.error(f"{n} sessions opened: the server has {stats['sessions']} open, the client {load.open}")
    errors = len(load.errors) - errors_before
    return Row(n, stats, core_pct, window, client_cpu, errors, rss0, open_kib, load.shrunk)


async def bench(args: argparse.Namespace) -> int:
    allowed = sorted(os.sched_getaffinity(0))
    core = args.core if args.core is not None else allowed[-1]
    if core not in allowed:
        raise SystemExit(f"--core {core}: this process may only run on CPUs {allowed}")
    others = [c for c in allowed if c != core]
    steps = steps_for(args)
    pcm, source = speech_loop(args.wav)
    messages = append_events(pcm, args.chunk_ms)
    engines = (
        "fake instant STT, LLM and TTS (tests/fakes.py)"
        if args.engines == "fake"
        else "pocketsphinx, espeak, echo LLM"
    )
    header(
        "load: concurrent real-time sessions on one server core",
        f"server: one process pinned to CPU {core}, real Silero VAD and input path (server_vad defaults), "
        f"{engines}\n"
        f"client: this process on CPU {','.join(map(str, others)) or f'{core} (shared!)'}, each session "
        f"appends {args.chunk_ms} ms of 24 kHz PCM16 in real time from a random point of {source}\n"
        f"steps: {', '.join(map(str, steps))} sessions | {args.warmup:g} s warm-up, then {args.seconds:g} s "
        f"measured | lag target p99 <= {args.target_ms:g} ms",
    )
    if others:
        pin_process(set(others))  # after the header, whose core count is this process's affinity
    started = time.monotonic()
    rows: list[Row] = []
    load: Load | None = None
    server = await ServerProcess.start(args.engines, core)
    try:
        async with Load(server.ws_url, messages, args.chunk_ms, args.seed) as load:
            await asyncio.sleep(1.0)
            idle = await server.command("stats")
            rss0 = int(idle["rss_kib"])
            rows.append(await measure(server, load, 0, 0.0, min(args.seconds, 5.0), core, rss0))
            print(f"-- idle server: RSS {rss0 / 1024:.1f} MiB", file=sys.stderr, flush=True)

            async def step(n: int, refine: bool = False) -> Row:
                row = await measure(server, load, n, args.warmup, args.seconds, core, rss0)
                row.refine = refine
                rows.append(row)
                print(
                    f"-- {n} sessions: lag p99 {row.lag_p99_ms:.2f} ms, server CPU "
                    f"{row.server['cpu_pct']:.0f} %, errors {row.errors}",
                    file=sys.stderr,
                    flush=True,
                )
                return row

            good = 0
            for n in steps:
                row = await step(n)
                if load.open < n:
                    return 0  # sessions could not be opened: the errors say why
                if row.lag_p99_ms > args.target_ms:
                    # Bisect between the last step that met the target and this one.
                    bad = n
                    for _ in range(args.refine):
                        middle = round((good + bad) / 2)
                        if bad - good <= max(2, bad // 20):
                            break
                        if (await step(middle, refine=True)).lag_p99_ms > args.target_ms:
                            bad = middle
                        else:
                            good = middle
                    break
                good = n
    finally:
        await server.stop()
        if rows:
            report(rows, load, args, time.monotonic() - started)
    return 0


def report(rows: list[Row], load: Load | None, args: argparse.Namespace, elapsed: float) -> None:
    print()
    print_table(rows)
    measured = [r for r in rows if r.sessions]
    good = [r for r in measured if r.lag_p99_ms <= args.target_ms]
    if good:
        best = max(good, key=lambda r: r.sessions)
        above = [r for r in measured if r.sessions > best.sessions and r.lag_p99_ms > args.target_ms]
        line = (
            f"largest N with lag p99 <= {args.target_ms:g} ms: {best.sessions} sessions "
            f"(p99 {best.lag_p99_ms:.1f} ms, {best.server['cpu_pct']:.0f} % of the core)"
        )
        if above:
            first = min(above, key=lambda r: r.sessions)
            line += f"; {first.sessions} had p99 {first.lag_p99_ms:.1f} ms"
        else:
            line += " (every step met it)"
        print(line)
    elif measured:
        print(f"no step met lag p99 <= {args.target_ms:g} ms (the smallest: {measured[0].lag_p99_ms:.1f} ms)")
    if load is not None:
        errors = load.errors
        print(f"errors: {len(errors)}" + (" (target: none)" if errors else ""))
        for message, count in Counter(errors).most_common(5):
            print(f"  {count} x {message}")
    warnings = rows[-1].server.get("warnings", 0)
    if warnings:
        print(f"server warnings: {warnings}; the first: {rows[-1].server.get('warning_samples')}")
    late = [r for r in measured if r.client_cpu_pct > 90 or percentile(r.window.late, 99) > 0.05]
    if late:
        print(
            f"!! the client fell behind at {', '.join(str(r.sessions) for r in late)} sessions "
            "(sends late or its core busy): those rows understate the load"
        )
    one, five, _ = os.getloadavg()
    print(f"took {elapsed:.0f} s | load average at the end: {one:.2f} (1 min), {five:.2f} (5 min)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seconds", type=float, default=None, help="measured seconds per step (default 20, --quick 5)"
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="seconds after adding sessions before measuring (default 5)",
    )
    parser.add_argument("--max", type=int, default=300, help="most sessions (default 300)")
    parser.add_argument("--steps", help="comma-separated session counts instead of the default sweep")
    parser.add_argument("--chunk-ms", type=int, default=20, help="ms of audio per append (default 20)")
    parser.add_argument("--engines", choices=("fake", "real"), default="fake")
    parser.add_argument("--target-ms", type=float, default=TARGET_P99_MS, help="lag p99 target (default 50)")
    parser.add_argument("--core", type=int, help="the CPU of the server (default: the last one allowed)")
    parser.add_argument("--wav", type=Path, help="a 16-bit WAV of speech to stream instead of flite's")
    parser.add_argument(
        "--refine",
        type=int,
        default=None,
        help="bisection steps between the last step under the target and the first above (default 2, "
        "--quick 0)",
    )
    parser.add_argument("--seed", type=int, default=0, help="where in the loop each session starts")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a sanity run: 10, 25, 50 sessions (real engines: 2, 5, 10), 5 s each, no refinement",
    )
    parser.add_argument(CHILD_FLAG, action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = 5.0 if args.quick else 20.0
    if args.warmup is None:
        args.warmup = 2.0 if args.quick else 5.0
    if args.refine is None:
        args.refine = 0 if args.quick else 2
    if not 10 <= args.chunk_ms <= 1000 or (WIRE_RATE * args.chunk_ms) % 1000:
        parser.error("--chunk-ms must be 10..1000 ms")
    if args.max < 1:
        parser.error("--max must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_child:
        serve_child(args.engines, args.core)
        return 0
    if not hasattr(os, "sched_setaffinity"):
        print("load.py needs Linux (CPU affinity, /proc)", file=sys.stderr)
        return 2
    try:
        return asyncio.run(bench(args))
    except ServerGone as exc:
        print(f"!! {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; the server process was stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
