"""``POST /v1/realtime/client_secrets``: a backend mints a short-lived ``ek_…`` secret with its real
key, and a browser or device opens sessions with it; the secret carries the session configuration.

Secrets live in the database, so any worker or node accepts them. Only a real key can mint one. The
beta routes (``beta_sessions``) mint the same secrets with the helpers here.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from aiohttp import web
from openai.types.realtime import SessionUpdateEvent

from parley import ids
from parley.config import Settings
from parley.protocol.client_events import parse_client_event
from parley.protocol.errors import ProtocolError
from parley.protocol.session_config import new_config
from parley.realtime.session import apply_session_update
from parley.server.admin_routes import STORE
from parley.server.auth import SECRET_PREFIX, Caller, authenticate, error_response, presented_key
from parley.store import ClientSecret, Store
from parley.transports.websocket import DEFAULT_MODEL, SETTINGS

log = logging.getLogger("parley.server")

MIN_TTL_S, MAX_TTL_S, DEFAULT_TTL_S = 10, 7200, 600


def effective_session(settings: Settings, session: dict[str, Any]) -> dict[str, Any]:
    """The full session ``session`` (a GA realtime or transcription session, ``type`` included)
    would start with; raises ProtocolError (with the JSON path) when it is not valid."""
    config = new_config(
        settings,
        session["type"],
        session_id=ids.session_id(),
        model=str(session.get("model") or DEFAULT_MODEL),
    )
    event = parse_client_event({"type": "session.update", "session": session})
    assert isinstance(event, SessionUpdateEvent)
    apply_session_update(config, event, settings, audio_produced=False)
    return config.wire()


def ttl_seconds(expires: Any, param: str) -> int | web.Response:
    """The lifetime an ``expires_after`` object (found at ``param`` in the body) asks for, or the
    400 response to send."""
    if expires is None:
        return DEFAULT_TTL_S
    if not isinstance(expires, dict):
        return error_response(f"'{param}' must be an object.", param=param)
    if expires.get("anchor", "created_at") != "created_at":
        return error_response(f"'{param}.anchor' must be 'created_at'.", param=f"{param}.anchor")
    seconds = expires.get("seconds", DEFAULT_TTL_S)
    if not isinstance(seconds, int) or isinstance(seconds, bool) or not MIN_TTL_S <= seconds <= MAX_TTL_S:
        return error_response(
            f"'{param}.seconds' must be an integer from {MIN_TTL_S} to {MAX_TTL_S}.", param=f"{param}.seconds"
        )
    return seconds


async def minting_caller(request: web.Request) -> tuple[Caller, Store] | web.Response:
    """Who mints a secret and the store that keeps it, or the error to send: only an API key can
    mint (a secret gets 401 ``invalid_api_key``), and secrets need the database (else 503)."""
    settings, store = request.app[SETTINGS], request.app.get(STORE)
    if (presented_key(request) or "").startswith(SECRET_PREFIX):
        return error_response(
            "Only an API key can mint a client secret, not another secret.",
            code="invalid_api_key",
            status=401,
        )
    caller = await authenticate(request, settings, store)
    if isinstance(caller, web.Response):
        return caller
    if store is None:
        return error_response(
            "Client secrets need the database, which this server runs without.",
            code="unavailable",
            status=503,
        )
    return caller, store


async def json_object_body(request: web.Request) -> dict[str, Any] | web.Response:
    """The request body as a JSON object (``{}`` when empty), or the 400 response to send."""
    try:
        body = await request.json() if request.can_read_body else {}
    except json.JSONDecodeError:
        return error_response("The body is not valid JSON.", code="invalid_json")
    if not isinstance(body, dict):
        return error_response("The body must be a JSON object.", code="invalid_json")
    return body


async def mint_secret(
    store: Store, caller: Caller, session: dict[str, Any], ttl_s: int
) -> tuple[ClientSecret, str]:
    """Store a secret that opens sessions starting as ``session`` (GA shape, ``type`` included):
    its record and its value."""
    key_id = caller.key.id if caller.key is not None else None
    secret, value = await store.run(store.secrets.create, session, key_id=key_id, ttl_s=ttl_s)
    log.info("client secret %s minted (expires in %d s, pid %d)", secret.id, ttl_s, os.getpid())
    return secret, value


async def create_client_secret(request: web.Request) -> web.Response:
    minting = await minting_caller(request)
    if isinstance(minting, web.Response):
        return minting
    caller, store = minting
    body = await json_object_body(request)
    if isinstance(body, web.Response):
        return body
    ttl = ttl_seconds(body.get("expires_after"), "expires_after")
    if isinstance(ttl, web.Response):
        return ttl
    session = body.get("session") or {}
    if not isinstance(session, dict):
        return error_response("'session' must be an object.", param="session")
    session = {"type": "realtime", **session}  # stored as the session it starts, type and all
    try:
        wire = effective_session(request.app[SETTINGS], session)
    except ProtocolError as exc:
        return error_response(exc.message, param=exc.param, code=exc.code)
    secret, value = await mint_secret(store, caller, session, ttl)
    wire["expires_at"] = secret.expires_at_unix
    return web.json_response({"value": value, "expires_at": secret.expires_at_unix, "session": wire})
