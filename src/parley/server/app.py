"""The HTTP application: routes, engine loading and warm-up, health."""

from __future__ import annotations

import logging
import time

from aiohttp import web

from parley import __version__
from parley.config import Settings
from parley.engines.registry import Engines, load_engines
from parley.server.limits import ConnectionLimits
from parley.server.metrics import setup_metrics
from parley.transports.websocket import (
    ENGINES,
    LIMITS,
    LIVE,
    SETTINGS,
    LiveSessions,
    realtime_websocket,
)

log = logging.getLogger("parley.server")

READY = web.AppKey("ready", bool)


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


def create_app(settings: Settings, engines: Engines | None = None) -> web.Application:
    app = web.Application(client_max_size=32 * 1024 * 1024)
    app[SETTINGS] = settings
    app[ENGINES] = engines if engines is not None else load_engines(settings)
    app[READY] = False
    app[LIMITS] = ConnectionLimits(
        sessions_per_ip=settings.sessions_per_ip,
        handshakes_per_minute_per_ip=settings.handshakes_per_minute_per_ip,
    )
    app.router.add_get("/v1/realtime", realtime_websocket)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app[LIVE] = LiveSessions()
    setup_metrics(app)
    app.on_startup.append(_warm_up)
    return app


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
