"""Rate and connection limits, and the slow-client disconnect, with a fake clock and a fake socket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import WSMessage, WSMsgType

from parley.config import Settings
from parley.realtime.audio_rate import AudioRate
from parley.server.limits import ConnectionLimits
from parley.transports.websocket import OUTBOUND_QUEUE, Services, serve_session
from tests.fakes import fake_engines


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_audio_rate_allows_a_burst_then_five_times_real_time() -> None:
    clock = Clock()
    rate = AudioRate(5.0, 2000, clock)
    assert rate.admit(1500) and rate.admit(500)
    assert not rate.admit(100)  # the burst is spent
    clock.now += 0.125  # 125 ms later: 625 ms of audio are allowed again
    assert not rate.admit(700) and rate.admit(625)
    clock.now += 60  # a long pause refills only up to the burst
    assert rate.admit(2000) and not rate.admit(1)


def test_connection_limits_per_address_key_and_minute() -> None:
    clock = Clock()
    limits = ConnectionLimits(sessions_per_ip=2, handshakes_per_minute_per_ip=4, clock=clock)
    assert limits.open("1.2.3.4", "key_a", 1) is None
    refusal = limits.open("1.2.3.4", "key_a", 1)
    assert refusal is not None and refusal.code == "too_many_sessions" and "API key" in refusal.message
    assert limits.open("1.2.3.4", None, None) is None
    refusal = limits.open("1.2.3.4", None, None)
    assert refusal is not None and refusal.code == "too_many_sessions"
    assert limits.open("5.6.7.8", None, None) is None  # another address has its own count
    limits.close("1.2.3.4", "key_a")
    assert limits.open_sessions("key_a") == 0
    refusal = limits.open("1.2.3.4", None, None)  # the fifth handshake of the minute
    assert refusal is not None and refusal.code == "rate_limit_exceeded"
    clock.now += 60
    assert limits.open("1.2.3.4", None, None) is None


class StuckSocket:
    """A WebSocket whose client never reads: every send waits forever."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[WSMessage | None] = asyncio.Queue()
        self.sent = 0
        self.closed = False

    async def send_str(self, data: str) -> None:
        self.sent += 1
        await asyncio.Event().wait()

    async def close(self, **kwargs: Any) -> bool:
        self.closed = True
        return True

    def __aiter__(self) -> AsyncIterator[WSMessage]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[WSMessage]:
        while (message := await self.incoming.get()) is not None:
            yield message


async def test_a_client_that_reads_nothing_is_disconnected() -> None:
    ws = StuckSocket()
    aborted = asyncio.Event()

    def abort() -> None:
        aborted.set()
        ws.incoming.put_nowait(None)  # the connection drops

    settings = Settings(slow_client_timeout_s=0.05)
    serving = asyncio.create_task(
        serve_session(ws, settings, fake_engines(), "gpt-realtime", services=Services(abort=abort))  # type: ignore[arg-type]
    )
    retrieve = json.dumps({"type": "conversation.item.retrieve", "item_id": "missing"})
    for _ in range(OUTBOUND_QUEUE + 10):  # each answered with an error event nobody reads
        ws.incoming.put_nowait(WSMessage(WSMsgType.TEXT, retrieve, None))
    await asyncio.wait_for(aborted.wait(), 30)
    await asyncio.wait_for(serving, 30)
    assert ws.sent == 1  # the first event is stuck in the socket; the rest never left the queue
