"""``GET /v1/realtime``: the handshake (API key, quotas, connection limits, dialect) before a
session runs on the WebSocket."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiohttp import web

from parley.config import Settings
from parley.protocol.beta import beta_requested, beta_subprotocol
from parley.server.admin_routes import STORE
from parley.server.auth import Caller, authenticate, error_response, offered_subprotocols
from parley.server.limits import ConnectionLimits
from parley.server.metrics import METRICS
from parley.store import ApiKey, Store
from parley.transports.services import CALLS, Services, wants_turn_latency
from parley.transports.sideband import serve_sideband
from parley.transports.websocket import (
    DEFAULT_MODEL,
    ENGINES,
    LIMITS,
    LIVE,
    MAX_FRAME_BYTES,
    SETTINGS,
    serve_session,
)

log = logging.getLogger("parley.websocket")


async def realtime_websocket(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    store = request.app.get(STORE)
    caller = await authenticate(request, settings, store, allow_secret=True)
    if isinstance(caller, web.Response):
        return caller
    offered = offered_subprotocols(request)
    beta = beta_requested(request.headers.get("OpenAI-Beta", ""), offered)
    initial = caller.secret.session_config if caller.secret is not None else None
    transcription = (
        request.query.get("intent") == "transcription" or (initial or {}).get("type") == "transcription"
    )
    if "call_id" in request.query:
        return await _sideband(request, caller, offered)
    admitted = await admit(request, caller)
    if isinstance(admitted, web.Response):
        return admitted
    try:
        ws = web.WebSocketResponse(
            protocols=beta_subprotocol(offered) if beta else (("realtime",) if "realtime" in offered else ()),
            max_msg_size=MAX_FRAME_BYTES,
            compress=False,
        )
        await ws.prepare(request)
        services = Services(
            metrics=request.app.get(METRICS),
            live=request.app.get(LIVE),
            store=store,
            key=caller.key,
            max_minutes=admitted.max_minutes,
            initial_session=initial,
            abort=request.transport.abort if request.transport is not None else None,
            turn_latency=wants_turn_latency(request),
            release=admitted.release,
        )
        await serve_session(
            ws,
            settings,
            request.app[ENGINES],
            request.query.get("model") or DEFAULT_MODEL,
            beta=beta,
            session_type="transcription" if transcription else "realtime",
            services=services,
        )
    finally:
        admitted.release()
    return ws


@dataclass
class Admission:
    """A new session let in: how long it may last, and its place under the connection limits."""

    max_minutes: float
    limits: ConnectionLimits
    ip: str
    key_id: str | None
    released: bool = False

    def release(self) -> None:
        """The session ended: its place under the limits is free again (once, however often called)."""
        if not self.released:
            self.released = True
            self.limits.close(self.ip, self.key_id)


async def admit(request: web.Request, caller: Caller) -> Admission | web.Response:
    """Let a new session in (a WebSocket or a WebRTC call) under the key's daily minutes and the
    connection limits, or the 429 to send."""
    store = request.app.get(STORE)
    key = caller.key
    max_minutes = await minutes_allowed(request.app[SETTINGS], store, key)
    if max_minutes <= 0:
        message = "This API key has used its session minutes for today (UTC); try again tomorrow."
        return error_response(message, code="quota_exceeded", status=429, type_="rate_limit_error")
    limits = request.app[LIMITS]
    ip = request.remote or "unknown"
    key_id = key.id if key is not None else None
    cap = key.limits.max_concurrent_sessions if key is not None else None
    live = request.app.get(LIVE)
    if key is not None and cap is not None and store is not None and live is not None:
        # The key's sessions on the other workers and nodes sharing the database (each records its
        # sessions and refreshes them every 30 s); this process's own are counted by ``limits``.
        # Two opens at the same moment on two processes can both get in.
        recorded = await store.run(store.keys.open_session_ids, key.id)
        elsewhere = sum(1 for session_id in recorded if not live.known(session_id))
        here = limits.open_sessions(key.id)
        if here + elsewhere >= cap:
            message = (
                f"This API key already has {here + elsewhere} sessions open (its limit is {cap}), "
                f"{elsewhere} of them on other server processes."
            )
            log.warning("refused a connection from %s: %s", ip, message)
            return error_response(message, code="too_many_sessions", status=429, type_="rate_limit_error")
    refusal = limits.open(ip, key_id, key.limits.max_concurrent_sessions if key is not None else None)
    if refusal is not None:
        log.warning("refused a connection from %s: %s", ip, refusal.message)
        return error_response(refusal.message, code=refusal.code, status=429, type_="rate_limit_error")
    return Admission(max_minutes, limits, ip, key_id)


async def minutes_allowed(settings: Settings, store: Store | None, key: ApiKey | None) -> float:
    """How long a new session may last: the server's maximum, the key's, and what is left of the
    key's minutes for today."""
    allowed = settings.session_max_minutes
    if key is None:
        return allowed
    if key.limits.max_session_minutes is not None:
        allowed = min(allowed, key.limits.max_session_minutes)
    per_day = key.limits.session_minutes_per_day
    if per_day is not None and store is not None:
        used = await store.run(store.keys.minutes_used_today, key.id)
        allowed = min(allowed, per_day - used)
    return allowed


async def _sideband(request: web.Request, caller: Caller, offered: list[str]) -> web.StreamResponse:
    """Attach a backend's socket to a live WebRTC call (it needs a real key, not a client secret)."""
    call_id = request.query["call_id"]
    calls = request.app.get(CALLS)
    call = calls.get(call_id, caller.key.id if caller.key else None) if calls is not None else None
    if caller.secret is not None:
        message = "A client secret cannot attach to a call; use an API key."
        return error_response(message, code="invalid_api_key", status=401)
    if call is None:
        message = f"No call with id '{call_id}' is in progress in this process."
        return error_response(message, code="call_not_found", status=404)
    ws = web.WebSocketResponse(
        protocols=("realtime",) if "realtime" in offered else (), max_msg_size=MAX_FRAME_BYTES, compress=False
    )
    await ws.prepare(request)
    await serve_sideband(ws, call)
    return ws
