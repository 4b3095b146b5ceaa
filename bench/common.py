"""Shared pieces of the benchmarks: the machine line, percentiles, an in-process server, a raw client.

The benchmarks print figures; they never pass or fail on timing (DESIGN.md §7).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT, ROOT / "src"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from parley import __version__  # noqa: E402
from parley.config import Settings  # noqa: E402
from parley.engines.registry import Engines  # noqa: E402
from parley.server.app import create_app  # noqa: E402

WIRE_RATE = 24000
"""The wire's default input format: audio/pcm, 24 kHz, mono, 16-bit little-endian."""

R = TypeVar("R")


# -------------------------------------------------------------------------------------- machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> str:
    """One line: CPU model, cores, Python, Parley version, and how busy the machine is."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = f" | load avg {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""
    return (
        f"machine: {cpu_model()}, {cores} cores | Python {platform.python_version()} "
        f"({platform.python_implementation()}) | Parley {__version__} | "
        f"{platform.system()} {platform.release()}{load}"
    )


def header(title: str, details: str = "") -> None:
    print(f"== {title} ==")
    print(machine_info())
    if details:
        print(details)


# -------------------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100), linear between the closest ranks (numpy's default)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(rows: Sequence[Sequence[str]], align_right_from: int = 1) -> str:
    """A plain text table; the first row is the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        cells = [
            cell.rjust(widths[i]) if i >= align_right_from else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


# -------------------------------------------------------------------------------------- server


@dataclass
class RunningServer:
    runner: web.AppRunner
    port: int

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/realtime?model=gpt-realtime"


@asynccontextmanager
async def running_server(settings: Settings, engines: Engines) -> AsyncIterator[RunningServer]:
    """Parley on a free loopback port of this process's event loop, engines warmed up."""
    app = create_app(settings, engines, with_store=False)  # no database: the server alone is measured
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0)
    await runner.setup()  # runs on_startup: the engine warm-up
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = int(runner.addresses[0][1])
        yield RunningServer(runner, port)
    finally:
        await runner.cleanup()


# -------------------------------------------------------------------------------------- client


@dataclass(frozen=True)
class Stamp:
    at: float
    """``time.perf_counter()``: wall-clock seconds."""
    cpu: float
    """``time.thread_time()``: CPU seconds of this thread, which runs both client and server, so
    the difference of two stamps is the CPU the process spent between them even when other work on
    a busy machine keeps it waiting."""

    @classmethod
    def now(cls) -> Stamp:
        return cls(time.perf_counter(), time.thread_time())


@dataclass
class Received:
    at: float
    """``time.perf_counter()`` when the frame was read from the socket."""
    cpu: float
    """``time.thread_time()`` then."""
    event: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.event.get("type"))


class RealtimeClient:
    """A raw WebSocket client: sends JSON events, records every server event with its arrival time."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.events: list[Received] = []
        self._new = asyncio.Event()
        self._barriers = 0
        self._reader = asyncio.create_task(self._read(), name="bench client reader")

    @classmethod
    @asynccontextmanager
    async def connect(cls, url: str) -> AsyncIterator[RealtimeClient]:
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(url, headers={"Authorization": "Bearer sk-bench"}, max_msg_size=0) as ws,
        ):
            client = cls(ws)
            try:
                yield client
            finally:
                client._reader.cancel()
                await asyncio.gather(client._reader, return_exceptions=True)

    async def _read(self) -> None:
        async for message in self.ws:
            at, cpu = time.perf_counter(), time.thread_time()
            if message.type == aiohttp.WSMsgType.TEXT:
                self.events.append(Received(at, cpu, json.loads(message.data)))
                self._new.set()
        self._new.set()

    async def send(self, event: dict[str, Any]) -> Stamp:
        """Send one event; return the time just before it went to the socket."""
        data = json.dumps(event, separators=(",", ":"))
        stamp = Stamp.now()
        await self.ws.send_str(data)
        return stamp

    async def append_audio(self, pcm: bytes) -> Stamp:
        return await self.send(
            {"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode("ascii")}
        )

    def mark(self) -> int:
        """An index into ``events``: later waits only look at events after it."""
        return len(self.events)

    async def wait_for(self, type_: str, since: int = 0, timeout_s: float = 60.0) -> Received:
        """The first event of ``type_`` at or after index ``since``; an ``error`` event raises."""

        def match(received: Received) -> bool:
            if received.type == "error" and type_ != "error":
                raise RuntimeError(f"server error: {received.event['error']}")
            return received.type == type_

        return await self.wait_until(match, since, timeout_s)

    async def wait_until(
        self, match: Callable[[Received], bool], since: int = 0, timeout_s: float = 60.0
    ) -> Received:
        """The first event at or after index ``since`` that ``match`` accepts."""

        async def wait() -> Received:
            index = since
            while True:
                while index < len(self.events):
                    received = self.events[index]
                    index += 1
                    if match(received):
                        return received
                if self._reader.done() or self.ws.closed:
                    raise RuntimeError("connection closed while waiting for an event")
                self._new.clear()
                await self._new.wait()

        return await asyncio.wait_for(wait(), timeout_s)

    async def barrier(self) -> float:
        """Wait until the server has handled every event sent so far; return how long that took.

        The server handles a connection's events in order, so the answer to a side-effect-free
        request proves the earlier ones are done: here a ``conversation.item.retrieve`` of an item
        that does not exist, answered by an ``error`` carrying this request's ``event_id``.
        """
        self._barriers += 1
        event_id = f"bench_barrier_{self._barriers}"
        since = self.mark()
        sent = await self.send(
            {"type": "conversation.item.retrieve", "event_id": event_id, "item_id": "item_bench_absent"}
        )

        def answer(received: Received) -> bool:
            return received.type == "error" and received.event["error"].get("event_id") == event_id

        received = await self.wait_until(answer, since)
        return received.at - sent.at

    async def session_update(self, session: dict[str, Any]) -> None:
        since = self.mark()
        await self.send({"type": "session.update", "session": {"type": "realtime", **session}})
        await self.wait_for("session.updated", since)


def pcm_chunks(pcm: bytes, chunk_ms: int = 100, rate: int = WIRE_RATE) -> list[bytes]:
    """16-bit mono PCM split into ``chunk_ms`` pieces."""
    step = rate * 2 * chunk_ms // 1000
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]


# -------------------------------------------------------------------------------------- command line


def counted_parser(
    doc: str, dest: str, what: str, count: int, warmup: int, warmup_help: str
) -> argparse.ArgumentParser:
    """A parser described by the benchmark's docstring, with ``-n/--<dest>`` (how many ``what`` are
    measured, default ``count``) and ``--warmup`` (how many run first, default ``warmup``)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", f"--{dest}", type=int, default=count, help=f"measured {what} (default {count})")
    parser.add_argument("--warmup", type=int, default=warmup, help=f"{warmup_help} (default {warmup})")
    return parser


def run_and_report(
    bench: Callable[[argparse.Namespace], Coroutine[Any, Any, R]],
    report: Callable[[R, argparse.Namespace], None],
    args: argparse.Namespace,
) -> None:
    """Run ``bench(args)`` on a fresh event loop, then print what it measured with ``report``."""
    report(asyncio.run(bench(args)), args)
