"""The browser playground: a page at ``/`` that talks to Parley over WebRTC as OpenAI's browser
sample does, and the dev route it mints its ``ek_`` secret with, ``POST /playground/client_secret``.

The route mints with the server's own authority, so it exists only for local development:
``PARLEY_PLAYGROUND=auto`` (the default) serves the page and the route only in dev mode (no API key
in ``PARLEY_API_KEYS`` or the database), ``on`` always (anyone who can reach the server can then
mint secrets), ``off`` never. The page's files are the fixed set in ``parley/web``; a name outside
that set is a 404, so nothing else on disk can be reached.
"""

from __future__ import annotations

import importlib.resources
import logging
from pathlib import Path
from typing import Any

from aiohttp import web

from parley.config import Settings
from parley.protocol.errors import ProtocolError
from parley.protocol.session_config import DEFAULT_TRANSCRIPTION
from parley.server.admin_routes import STORE
from parley.server.auth import Caller, error_response, has_database_keys
from parley.server.client_secrets import DEFAULT_TTL_S, effective_session, json_object_body, mint_secret
from parley.store import Store
from parley.transports.websocket import SETTINGS

log = logging.getLogger("parley.server")

WEB_DIR = Path(str(importlib.resources.files("parley") / "web"))
CONTENT_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}
INDEX = "index.html"
MAX_TEXT = 16_000
"""Longest instructions the route accepts, in characters."""


def web_files() -> dict[str, Path]:
    """The files the playground may serve, by name: those directly in ``parley/web`` with a known
    content type."""
    if not WEB_DIR.is_dir():
        return {}
    return {p.name: p for p in WEB_DIR.iterdir() if p.is_file() and p.suffix in CONTENT_TYPES}


def add_playground_routes(app: web.Application) -> None:
    app.router.add_get("/", playground_page)
    app.router.add_get("/playground/{name}", playground_file)
    app.router.add_post("/playground/client_secret", playground_client_secret)


async def playground_enabled(settings: Settings, store: Store | None) -> bool:
    """Whether the page and the minting route are served: ``on``, or ``auto`` in dev mode."""
    if settings.playground != "auto":
        return settings.playground == "on"
    return settings.dev_mode and not await has_database_keys(store)


def _disabled() -> web.Response:
    return error_response(
        "The playground is not served: it runs only in dev mode (no API keys configured) unless "
        "PARLEY_PLAYGROUND=on, which lets anyone who can reach this server mint client secrets.",
        code="playground_disabled",
        status=404,
    )


async def _enabled(request: web.Request) -> bool:
    return await playground_enabled(request.app[SETTINGS], request.app.get(STORE))


def _file_response(path: Path) -> web.Response:
    return web.Response(
        body=path.read_bytes(),
        content_type=CONTENT_TYPES[path.suffix],
        charset="utf-8",
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )


async def playground_page(request: web.Request) -> web.Response:
    if not await _enabled(request):
        return _disabled()
    path = web_files().get(INDEX)
    if path is None:
        return error_response("The playground's files are missing from this install.", status=500)
    return _file_response(path)


async def playground_file(request: web.Request) -> web.Response:
    if not await _enabled(request):
        return _disabled()
    path = web_files().get(request.match_info["name"])
    if path is None:
        return error_response("No such playground file.", code="not_found", status=404)
    return _file_response(path)


def _playground_session(body: dict[str, Any]) -> dict[str, Any] | web.Response:
    """The session a playground call starts with: input transcription on (so the page can show what
    was heard), plus the optional ``instructions`` and ``voice`` of the body."""
    session: dict[str, Any] = {
        "type": "realtime",
        "audio": {"input": {"transcription": {"model": DEFAULT_TRANSCRIPTION["model"]}}},
    }
    for name in ("instructions", "voice"):
        value = body.get(name)
        if value is None or value == "":
            continue
        if not isinstance(value, str) or len(value) > MAX_TEXT:
            return error_response(f"'{name}' must be a string of at most {MAX_TEXT} characters.", param=name)
        if name == "voice":
            session["audio"]["output"] = {"voice": value}
        else:
            session["instructions"] = value
    return session


async def playground_client_secret(request: web.Request) -> web.Response:
    """Mint a secret as the server itself (no key needed), for the page: ``{value, expires_at,
    session}`` as ``POST /v1/realtime/client_secrets`` answers."""
    store = request.app.get(STORE)
    if not await _enabled(request):
        return _disabled()
    if store is None:
        return error_response(
            "Client secrets need the database, which this server runs without.",
            code="unavailable",
            status=503,
        )
    body = await json_object_body(request)
    if isinstance(body, web.Response):
        return body
    session = _playground_session(body)
    if isinstance(session, web.Response):
        return session
    try:
        wire = effective_session(request.app[SETTINGS], session)
    except ProtocolError as exc:
        return error_response(exc.message, param=exc.param, code=exc.code)
    secret, value = await mint_secret(store, Caller(), session, DEFAULT_TTL_S)
    log.info("playground minted client secret %s for %s", secret.id, request.remote)
    wire["expires_at"] = secret.expires_at_unix
    return web.json_response({"value": value, "expires_at": secret.expires_at_unix, "session": wire})
