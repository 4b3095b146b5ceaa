"""The Realtime API over WebSocket: ``GET /v1/realtime``, one JSON event per text frame."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import WSCloseCode, WSMsgType, web

from parley.config import Settings
from parley.engines.registry import Engines
from parley.logging_context import bind_session
from parley.protocol import server_events as ev
from parley.protocol.beta import BetaDialect, beta_requested, beta_subprotocol
from parley.protocol.errors import ProtocolError
from parley.realtime.session import RealtimeSession, SessionType
from parley.server.auth import check_key, error_body, offered_subprotocols
from parley.server.limits import ConnectionLimits
from parley.server.metrics import METRICS, Metrics

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


@dataclass
class LiveSession:
    """An open session and its socket, so a shutting-down server can end it."""

    session: RealtimeSession
    ws: web.WebSocketResponse


class LiveSessions:
    """The sessions open in this process."""

    def __init__(self) -> None:
        self.open: dict[str, LiveSession] = {}
        self._empty = asyncio.Event()
        self._empty.set()

    def add(self, entry: LiveSession) -> None:
        self.open[entry.session.id] = entry
        self._empty.clear()

    def remove(self, session_id: str) -> None:
        self.open.pop(session_id, None)
        if not self.open:
            self._empty.set()

    async def wait_empty(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._empty.wait(), timeout_s)


LIVE = web.AppKey("live", LiveSessions)


def _refuse(status: int, message: str, code: str, param: str | None = None) -> web.Response:
    return web.json_response(
        error_body(message, type_="invalid_request_error", code=code, param=param), status=status
    )


async def realtime_websocket(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    refused = check_key(request, settings)
    if refused is not None:
        return refused
    offered = offered_subprotocols(request)
    beta = beta_requested(request.headers.get("OpenAI-Beta", ""), offered)
    transcription = request.query.get("intent") == "transcription"
    if "call_id" in request.query:
        return _refuse(404, f"No call with id '{request.query['call_id']}' is in progress.", "call_not_found")
    limits = request.app[LIMITS]
    ip = request.remote or "unknown"
    refusal = limits.open(ip, None, None)
    if refusal is not None:
        log.warning("refused a connection from %s: %s", ip, refusal.message)
        return web.json_response(
            error_body(refusal.message, type_="rate_limit_error", code=refusal.code), status=429
        )
    try:
        ws = web.WebSocketResponse(
            protocols=beta_subprotocol(offered) if beta else (("realtime",) if "realtime" in offered else ()),
            max_msg_size=MAX_FRAME_BYTES,
            compress=False,
        )
        await ws.prepare(request)
        await serve_session(
            ws,
            request.app[SETTINGS],
            request.app[ENGINES],
            request.query.get("model") or DEFAULT_MODEL,
            beta=beta,
            session_type="transcription" if transcription else "realtime",
            abort=request.transport.abort if request.transport is not None else None,
            metrics=request.app.get(METRICS),
            live=request.app.get(LIVE),
        )
    finally:
        limits.close(ip, None)
    return ws


async def serve_session(
    ws: web.WebSocketResponse,
    settings: Settings,
    engines: Engines,
    model: str,
    *,
    beta: bool = False,
    session_type: SessionType = "realtime",
    abort: Callable[[], None] | None = None,
    metrics: Metrics | None = None,
    live: LiveSessions | None = None,
) -> None:
    """Run one session on ``ws``; with ``beta`` its events are translated to and from the beta dialect.

    Events wait for the client in a bounded queue (backpressure). A client that reads nothing for
    ``slow_client_timeout_s`` while the queue is full is disconnected (``abort``), not buffered for.
    """
    outbound: asyncio.Queue[ev.Event | None] = asyncio.Queue(OUTBOUND_QUEUE)
    dialect: BetaDialect | None = None
    stalled = False

    async def emit(event: ev.Event) -> None:
        nonlocal stalled
        for out in dialect.server_event(event) if dialect is not None else (event,):
            if ws.closed or stalled:
                return
            try:
                await asyncio.wait_for(outbound.put(out), settings.slow_client_timeout_s)
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
    )
    dialect = BetaDialect(session) if beta else None
    handle_text = dialect.handle_text if dialect is not None else session.handle_text
    observer = metrics.observer("websocket") if metrics is not None else None
    if observer is not None:
        session.observers.append(observer)
    writer: asyncio.Task[None] | None = None

    async def close_writer() -> None:
        assert writer is not None
        if stalled:
            writer.cancel()  # it is stuck on a client that does not read
        with contextlib.suppress(asyncio.QueueFull):
            outbound.put_nowait(None)
        with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
            await asyncio.wait_for(writer, FLUSH_TIMEOUT_S)

    log.info("session %s opened (model %s%s)", session.id, model, ", beta dialect" if beta else "")
    if live is not None:
        live.add(LiveSession(session, ws))
    with bind_session(session.id):
        writer = asyncio.create_task(write(), name="websocket writer")
        try:
            await _run(session, ws, handle_text, close_writer)
        finally:
            if live is not None:
                live.remove(session.id)
            if observer is not None:
                observer.close()


async def end_sessions(app: web.Application) -> None:
    """On shutdown (new connections are already refused): let open sessions go on for the grace
    period, then end each with a ``server_shutting_down`` error and close its socket (1001)."""
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
            await entry.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")


async def _run(
    session: RealtimeSession,
    ws: web.WebSocketResponse,
    handle_text: Callable[[str], Awaitable[None]],
    close_writer: Callable[[], Awaitable[None]],
) -> None:
    """The session's life on its socket: events in until the client goes, then a clean close."""
    try:
        await session.start()
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
        await session.close()
        await close_writer()
        log.info("session %s closed", session.id)
