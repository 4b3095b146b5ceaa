"""The Realtime API over WebSocket: ``GET /v1/realtime``, one JSON event per text frame."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from aiohttp import WSMsgType, web

from parley.config import Settings
from parley.engines.registry import Engines
from parley.protocol import server_events as ev
from parley.protocol.beta import BetaDialect, beta_requested, beta_subprotocol
from parley.protocol.errors import ProtocolError
from parley.realtime.session import RealtimeSession, SessionType
from parley.server.auth import check_key, error_body, offered_subprotocols

log = logging.getLogger("parley.websocket")

MAX_FRAME_BYTES = 24 * 1024 * 1024
"""Large enough for a 15 MiB append (base64 grows it by a third)."""
OUTBOUND_QUEUE = 256
"""Events waiting for a slow client; past this the session waits for it (backpressure)."""
DEFAULT_MODEL = "gpt-realtime"
FLUSH_TIMEOUT_S = 5.0

SETTINGS = web.AppKey("settings", Settings)
ENGINES = web.AppKey("engines", Engines)


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
    )
    return ws


async def serve_session(
    ws: web.WebSocketResponse,
    settings: Settings,
    engines: Engines,
    model: str,
    *,
    beta: bool = False,
    session_type: SessionType = "realtime",
) -> None:
    """Run one session on ``ws``; with ``beta`` its events are translated to and from the beta dialect."""
    outbound: asyncio.Queue[ev.Event | None] = asyncio.Queue(OUTBOUND_QUEUE)
    dialect: BetaDialect | None = None

    async def emit(event: ev.Event) -> None:
        for out in dialect.server_event(event) if dialect is not None else (event,):
            if not ws.closed:
                await outbound.put(out)

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
        await writer
        await ws.close(code=1000, message=b"session expired")

    writer = asyncio.create_task(write(), name="websocket writer")
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
    log.info("session %s opened (model %s%s)", session.id, model, ", beta dialect" if beta else "")
    try:
        await session.start()
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                await handle_text(message.data)
            elif message.type == WSMsgType.BINARY:
                await emit(
                    ev.error(
                        ProtocolError(
                            "invalid_event",
                            "Binary frames are not supported; send JSON events as text frames.",
                        )
                    )
                )
            elif message.type == WSMsgType.ERROR:
                log.info("session %s: websocket error %s", session.id, ws.exception())
    finally:
        await session.close()
        with contextlib.suppress(asyncio.QueueFull):
            outbound.put_nowait(None)
        with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
            await asyncio.wait_for(writer, FLUSH_TIMEOUT_S)
        log.info("session %s closed", session.id)
