"""The server side of ``bench/load.py``: Parley in a child process pinned to one CPU, and the parent's
handle on it.

The child (``load.py --serve-child``) serves ``create_app(settings, engines, with_store=False)`` on a
free loopback port with the real Silero VAD and either the instant fakes of ``tests/fakes.py`` or the
real engines, measures the lag of its own event loop (:class:`LagMonitor`), and answers JSON lines
on stdin (mark, rss, stats, stop). :class:`ServerProcess` starts it and sends those commands. The
``/proc`` readings here (CPU time, RSS, a core's busy time) serve both sides.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, SupportsIndex, TextIO

from aiohttp import web

# The repository root (tests) on the path, for this module imported on its own too.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fakes import FakeLLM, FakeSTT, FakeTTS

from common import ROOT, percentile
from parley.config import Settings
from parley.engines.registry import Engines, create, load_engines
from parley.server.app import create_app
from parley.transports.websocket import LIVE

TICK_S = 0.010
"""The lag monitor's sleep."""
TRANSCRIPT = "I would like to book a table for four people tonight"
"""What the fake recogniser hears in every turn (the fake LLM answers "You said: ...")."""
SERVER_START_TIMEOUT_S = 180.0
SERVER_STOP_TIMEOUT_S = 20.0
CHILD_FLAG = "--serve-child"
LOAD_SCRIPT = str(Path(__file__).resolve().with_name("load.py"))
"""The script the child runs (with ``CHILD_FLAG``)."""


# -------------------------------------------------------------------------------------- /proc


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
        command = [sys.executable, LOAD_SCRIPT, CHILD_FLAG, "--engines", kind]
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
