"""Abuse protection at the socket: sessions and handshakes per address, oversized events, audio
sent faster than real time. A second server is started with small limits."""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from parley.config import Settings
from parley.realtime.session import RealtimeSession
from parley.server.app import create_app
from tests.conformance.conftest import LLMThread, Server, free_port, start_server, stop_server
from tests.conformance.helpers import b64, silence
from tests.fakes import fake_engines


@pytest.fixture(scope="module")
def limited(llm_thread: LLMThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {
        "PARLEY_LLM_BASE_URL": llm_thread.llm.base_url,
        "PARLEY_SESSIONS_PER_IP": "2",
        "PARLEY_HANDSHAKES_PER_MINUTE_PER_IP": "6",
        "PARLEY_AUDIO_BURST_S": "5",
    }
    server = start_server(tmp_path_factory.mktemp("parley-limited"), env, name="limited")
    yield server
    stop_server(server)


def _open(server: Server) -> connect:
    return connect(
        f"{server.ws_base}/realtime?model=gpt-realtime", proxy=None, open_timeout=30, max_size=None
    )


async def _event(ws: ClientConnection, type_: str) -> dict[str, Any]:
    while True:
        event: dict[str, Any] = json.loads(await ws.recv())
        if event["type"] == type_:
            return event


async def _no_sessions_open(server: Server) -> None:
    """Wait until the server has let go of closed sessions (its metrics say none is active)."""

    def active() -> float:
        with urllib.request.urlopen(f"{server.http_url}/metrics", timeout=10) as reply:
            text = reply.read().decode()
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "parley_sessions_active"
        )

    for _ in range(100):
        if await asyncio.to_thread(active) == 0:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("closed sessions were never released")


async def _refusal(server: Server) -> tuple[int, dict[str, Any]]:
    with pytest.raises(InvalidStatus) as refused:
        async with _open(server):
            pass
    response = refused.value.response
    return response.status_code, json.loads(response.body or b"{}")


async def test_limits_on_sessions_handshakes_events_and_audio_speed(limited: Server) -> None:
    # Handshake 1 and 2: two sessions are allowed from one address; a third is refused.
    async with _open(limited) as first, _open(limited):
        await _event(first, "session.created")
        status, body = await _refusal(limited)  # handshake 3
        assert status == 429 and body["error"]["code"] == "too_many_sessions"

        # An event over 24 MiB gets an error and the session goes on.
        await first.send(json.dumps({"type": "input_audio_buffer.append", "audio": "A" * (25 * 1024 * 1024)}))
        error = await _event(first, "error")
        assert error["error"]["code"] == "event_too_large"

        # Audio far faster than real time: past the 5 s burst it is refused, with an error.
        manual = {
            "type": "session.update",
            "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}},
        }
        await first.send(json.dumps(manual))
        await _event(first, "session.updated")
        for _ in range(8):
            await first.send(json.dumps({"type": "input_audio_buffer.append", "audio": b64(silence(1000))}))
        error = await _event(first, "error")
        assert (
            error["error"]["code"] == "input_audio_rate_exceeded"
            and "5x real time" in error["error"]["message"]
        )

    # Handshakes 4 to 6 are allowed (sessions closed), the 7th within the minute is not.
    for _ in range(3):
        await _no_sessions_open(limited)
        async with _open(limited) as ws:
            await _event(ws, "session.created")
    await _no_sessions_open(limited)
    status, body = await _refusal(limited)
    assert status == 429 and body["error"]["code"] == "rate_limit_exceeded"


async def test_shutdown_lets_sessions_run_for_the_grace_period_then_ends_them(
    llm_thread: LLMThread, tmp_path_factory: pytest.TempPathFactory
) -> None:
    env = {"PARLEY_LLM_BASE_URL": llm_thread.llm.base_url, "PARLEY_SHUTDOWN_GRACE_S": "1"}
    server = start_server(tmp_path_factory.mktemp("parley-shutdown"), env, name="shutdown")
    try:
        async with _open(server) as ws:
            await _event(ws, "session.created")
            server.process.send_signal(signal.SIGTERM)
            # The session still answers during the grace period...
            await ws.send(json.dumps({"type": "conversation.item.retrieve", "item_id": "x"}))
            assert (await _event(ws, "error"))["error"]["code"] == "item_not_found"
            # ...then it is ended with a clear error and a going-away close.
            error = await _event(ws, "error")
            assert error["error"]["code"] == "server_shutting_down"
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        assert server.process.wait(30) == 0
        assert "shutting down: 1 session(s) open" in server.log()
    finally:
        stop_server(server)


async def test_a_closed_session_frees_its_place_before_its_teardown_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A client that closes and reconnects at once is let in, even while the server is still tearing
    the old session down (here: slowly)."""
    teardown = asyncio.Event()
    close = RealtimeSession.close

    async def slow_close(self: RealtimeSession) -> None:
        await asyncio.sleep(1.0)
        await close(self)
        teardown.set()

    monkeypatch.setattr(RealtimeSession, "close", slow_close)
    runner = web.AppRunner(create_app(Settings(sessions_per_ip=1), fake_engines(), with_store=False))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"ws://127.0.0.1:{port}/v1/realtime?model=gpt-realtime"
    try:
        async with connect(url, proxy=None) as ws:
            await _event(ws, "session.created")
        async with connect(url, proxy=None) as ws:
            await _event(ws, "session.created")
            assert not teardown.is_set(), "the first session was still being torn down"
    finally:
        await runner.cleanup()
