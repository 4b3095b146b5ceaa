"""The Realtime API over WebSocket: ``GET /v1/realtime``, one JSON event per text frame."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from parley.config import Settings
from parley.engines.registry import Engines
from parley.logging_context import bind_session
from parley.protocol import server_events as ev
from parley.protocol.beta import BetaDialect
from parley.protocol.errors import ProtocolError
from parley.realtime.session import RealtimeSession, SessionType
from parley.server.limits import ConnectionLimits
from parley.transports.services import LiveSession, LiveSessions, Services, SessionWatch

log = logging.getLogger("parley.websocket")

MAX_EVENT_BYTES = 24 * 1024 * 1024
"""Large enough for a 15 MiB append (base64 grows it by a third); a larger event gets an error."""
MAX_FRAME_BYTES = 32 * 1024 * 1024
"""Past this the socket is closed (1009, message too big) without reading the frame."""
OUTBOUND_QUEUE = 256
"""Events waiting for a slow client; past this the session waits for it (backpressure)."""
DEFAULT_MODEL = "gpt-realtime"
FLUSH_TIMEOUT_S = 5.0

SETTINGS = web.AppKey("settings", Settings)
ENGINES = web.AppKey("engines", Engines)
LIMITS = web.AppKey("limits", ConnectionLimits)


LIVE = web.AppKey("live", LiveSessions)


async def serve_session(
    ws: web.WebSocketResponse,
    settings: Settings,
    engines: Engines,
    model: str,
    *,
    beta: bool = False,
    session_type: SessionType = "realtime",
    services: Services | None = None,
) -> None:
    """Run one session on ``ws``; with ``beta`` its events are translated to and from the beta dialect.

    Events wait for the client in a bounded queue (backpressure). A client that reads nothing for
    ``slow_client_timeout_s`` while the queue is full is disconnected (``abort``), not buffered for.
    """
    services = services or Services()
    abort = services.abort
    outbound: asyncio.Queue[ev.Event | None] = asyncio.Queue(OUTBOUND_QUEUE)
    dialect: BetaDialect | None = None
    stalled = False

    async def emit(event: ev.Event) -> None:
        nonlocal stalled
        for out in dialect.server_event(event) if dialect is not None else (event,):
            if ws.closed or stalled:
                return
            try:
                outbound.put_nowait(out)
                continue
            except asyncio.QueueFull:
                pass
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
                # of the caller (a response being cancelled) when the put completes at that moment.
                async with asyncio.timeout(settings.slow_client_timeout_s):
                    await outbound.put(out)
            except TimeoutError:
                stalled = True
                log.warning(
                    "session %s: the client read nothing for %.0f s; disconnecting it",
                    session.id,
                    settings.slow_client_timeout_s,
                )
                if abort is not None:
                    abort()

    async def write() -> None:
        while (event := await outbound.get()) is not None:
            if ws.closed:
                continue
            try:
                await ws.send_str(json.dumps(event, separators=(",", ":")))
            except (ConnectionError, RuntimeError):
                log.info("client went away while sending")

    async def expired() -> None:
        await outbound.put(None)
        if writer is not None:
            await writer
        await ws.close(code=1000, message=b"session expired")

    session = RealtimeSession(
        settings=settings,
        engines=engines,
        emit=emit,
        model=model,
        on_expired=expired,
        session_type=session_type,
        max_minutes=services.max_minutes,
    )
    dialect = BetaDialect(session) if beta else None
    handle_text = dialect.handle_text if dialect is not None else session.handle_text
    watch = SessionWatch(session, services, settings, transport="websocket", model=model)
    live = services.live
    writer: asyncio.Task[None] | None = None

    async def close_writer() -> None:
        assert writer is not None
        if stalled:
            writer.cancel()  # it is stuck on a client that does not read
        with contextlib.suppress(asyncio.QueueFull):
            outbound.put_nowait(None)
        with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
            await asyncio.wait_for(writer, FLUSH_TIMEOUT_S)

    dialect_note = ", beta dialect" if beta else ""
    log.info("session %s opened (model %s%s, pid %d)", session.id, model, dialect_note, os.getpid())
    if live is not None:
        live.add(LiveSession(session, lambda: _going_away(ws)))
    with bind_session(session.id):
        writer = asyncio.create_task(write(), name="websocket writer")
        try:
            await _run(session, ws, handle_text, close_writer, services.initial_session, services.release)
        finally:
            if live is not None:
                live.remove(session.id)
            await watch.close("client_disconnected")


async def _going_away(ws: web.WebSocketResponse) -> None:
    await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")


async def end_sessions(app: web.Application) -> None:
    """On shutdown (new connections are already refused): let open sessions go on for the grace
    period, then end each with a ``server_shutting_down`` error and close its connection (a
    WebSocket with 1001)."""
    live = app[LIVE]
    grace = app[SETTINGS].shutdown_grace_s
    if live.open:
        log.info("shutting down: %d session(s) open; waiting up to %.0f s", len(live.open), grace)
        await live.wait_empty(grace)
    for entry in list(live.open.values()):
        error = ProtocolError(
            "server_shutting_down",
            "The server is shutting down; what was said is kept. Reconnect to go on.",
            type="server_error",
        )
        with contextlib.suppress(Exception):
            await entry.session.emit(ev.error(error))
            await asyncio.sleep(0.05)  # let the writer send it
            await entry.close()


async def _run(
    session: RealtimeSession,
    ws: web.WebSocketResponse,
    handle_text: Callable[[str], Awaitable[None]],
    close_writer: Callable[[], Awaitable[None]],
    initial_session: dict[str, Any] | None = None,
    on_disconnect: Callable[[], None] | None = None,
) -> None:
    """The session's life on its socket: events in until the client goes, then a clean close.
    ``on_disconnect`` is called first thing once the socket is done, before anything is awaited."""
    try:
        await session.start(initial_session)
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                if len(message.data) > MAX_EVENT_BYTES:
                    size = len(message.data) / 1024 / 1024
                    limit = MAX_EVENT_BYTES / 1024 / 1024
                    error = ProtocolError(
                        "event_too_large",
                        f"This event is {size:.1f} MiB; events may be at most {limit:.0f} MiB. "
                        "Split audio into smaller input_audio_buffer.append events.",
                    )
                    await session.emit(ev.error(error))
                    continue
                await handle_text(message.data)
            elif message.type == WSMsgType.BINARY:
                error = ProtocolError(
                    "invalid_event", "Binary frames are not supported; send JSON events as text frames."
                )
                await session.emit(ev.error(error))
            elif message.type == WSMsgType.ERROR:
                log.info("session %s: websocket error %s", session.id, ws.exception())
    finally:
        if on_disconnect is not None:
            on_disconnect()
        await session.close()
        await close_writer()
        log.info("session %s closed", session.id)
