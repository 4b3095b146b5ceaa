"""The HTTP application: routes, engine loading and warm-up, health."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from parley import __version__
from parley.config import Settings
from parley.engines.registry import Engines, load_engines
from parley.server.admin_routes import PARLEY_KEY, STORE, add_admin_routes
from parley.server.auth import authenticate
from parley.server.beta_sessions import create_beta_session, create_beta_transcription_session
from parley.server.call_control import add_call_control
from parley.server.calls import add_call_routes
from parley.server.client_secrets import create_client_secret
from parley.server.limits import ConnectionLimits
from parley.server.metrics import setup_metrics
from parley.server.playground import add_playground_routes
from parley.server.realtime_route import realtime_websocket
from parley.server.telephony import add_telephony_routes
from parley.store import Redactor, display_url, open_store, retention_loop
from parley.transports.services import LiveSessions
from parley.transports.websocket import (
    ENGINES,
    LIMITS,
    LIVE,
    SETTINGS,
)

log = logging.getLogger("parley.server")

READY = web.AppKey("ready", bool)
RETENTION = web.AppKey("retention", asyncio.Task[None])
ADMIN_PREFIX = "/v1/parley/"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "version": __version__})


async def readyz(request: web.Request) -> web.Response:
    ready = request.app[READY]
    engines = request.app[ENGINES]
    body = {
        "status": "ready" if ready else "starting",
        "engines": {
            "stt": engines.stt.name,
            "tts": engines.tts.name,
            "llm": engines.llm.name,
            "vad": request.app[SETTINGS].vad,
        },
    }
    return web.json_response(body, status=200 if ready else 503)


@web.middleware
async def _admin_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The REST routes over recorded sessions need a key like every other request."""
    if not request.path.startswith(ADMIN_PREFIX):
        return await handler(request)
    caller = await authenticate(request, request.app[SETTINGS], request.app.get(STORE))
    if isinstance(caller, web.Response):
        return caller
    if caller.key is not None:
        request[PARLEY_KEY] = caller.key
    return await handler(request)


def create_app(
    settings: Settings, engines: Engines | None = None, *, with_store: bool = True
) -> web.Application:
    """The application. ``with_store=False`` runs without a database (no keys from it, no audit
    trail), as benchmarks do."""
    app = web.Application(client_max_size=32 * 1024 * 1024, middlewares=[_admin_auth])
    app[SETTINGS] = settings
    app[ENGINES] = engines if engines is not None else load_engines(settings)
    app[READY] = False
    app[LIMITS] = ConnectionLimits(
        sessions_per_ip=settings.sessions_per_ip,
        handshakes_per_minute_per_ip=settings.handshakes_per_minute_per_ip,
    )
    app.router.add_get("/v1/realtime", realtime_websocket)
    app.router.add_post("/v1/realtime/client_secrets", create_client_secret)
    add_call_routes(app)
    add_telephony_routes(app)
    add_call_control(app)
    add_playground_routes(app)
    app.router.add_post("/v1/realtime/sessions", create_beta_session)
    app.router.add_post("/v1/realtime/transcription_sessions", create_beta_transcription_session)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app[LIVE] = LiveSessions()
    app[ENGINES].on_failover(setup_metrics(app).failover)
    if with_store:
        add_admin_routes(app)
        app.on_startup.append(_open_store)
        app.on_cleanup.append(_close_store)
    app.on_startup.append(_warm_up)
    return app


async def _open_store(app: web.Application) -> None:
    settings = app[SETTINGS]
    if settings.redact:
        Redactor(settings.redact_patterns)  # a bad pattern stops the start with its message
    store = await asyncio.to_thread(open_store, settings.database_url, data_dir=settings.data_dir)
    app[STORE] = store
    app[RETENTION] = asyncio.create_task(retention_loop(store, settings.retention_days), name="retention")
    log.info("database: %s", display_url(store.url))


async def _close_store(app: web.Application) -> None:
    if RETENTION in app:
        app[RETENTION].cancel()
    if STORE in app:
        await app[STORE].aclose()


async def _warm_up(app: web.Application) -> None:
    """Load and exercise every engine before the first session, so the first turn is not slow."""
    started = time.perf_counter()
    engines = app[ENGINES]
    await engines.warm_up()
    app[READY] = True
    log.info(
        "engines ready in %.2f s: stt=%s tts=%s llm=%s vad=%s",
        time.perf_counter() - started,
        engines.stt.name,
        engines.tts.name,
        engines.llm.name,
        app[SETTINGS].vad,
    )
