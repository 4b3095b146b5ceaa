"""The beta ephemeral-token routes (PROTOCOL.md §1.3): ``POST /v1/realtime/sessions`` and
``POST /v1/realtime/transcription_sessions``.

The body is a flat beta session (plus ``client_secret`` with the secret's lifetime). It is validated
and translated with the beta dialect's own code into the GA session, and the secret minted is the
one ``POST /v1/realtime/client_secrets`` mints: it opens GA or beta sessions that start with that
configuration. The reply is the effective session translated back to beta, with
``client_secret: {value, expires_at}``. Error ``param``s name the body's fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from parley.protocol.beta_events import beta_error, to_ga_client_event
from parley.protocol.beta_session import beta_session, beta_transcription_session
from parley.protocol.errors import ProtocolError
from parley.realtime.session import STORED_TEMPERATURE
from parley.server.auth import error_response
from parley.server.client_secrets import (
    effective_session,
    json_object_body,
    mint_secret,
    minting_caller,
    ttl_seconds,
)
from parley.transports.websocket import SETTINGS

_IN_SESSION = "session."
"""The beta validation names fields as inside a ``session.update``; in these bodies they are at the top."""


@dataclass(frozen=True)
class _Route:
    event_type: str
    """The beta client event whose ``session`` has this body's shape (validated as such)."""
    expires_field: str
    """Where ``client_secret`` keeps the lifetime: the SDK sends ``expires_after`` for realtime
    sessions and ``expires_at`` for transcription sessions."""


_REALTIME = _Route("session.update", "expires_after")
_TRANSCRIPTION = _Route("transcription_session.update", "expires_at")


def _body_error(exc: ProtocolError) -> web.Response:
    """A 400 for a ProtocolError whose ``param`` is a beta ``session.…`` path, named as in the body."""
    param = exc.param
    message = exc.message
    if param is not None and param.startswith(_IN_SESSION):
        message = message.replace(f"'{param}'", f"'{param[len(_IN_SESSION) :]}'")
        param = param[len(_IN_SESSION) :]
    return error_response(message, code=exc.code, param=param)


async def _create(request: web.Request, route: _Route) -> web.Response:
    minting = await minting_caller(request)
    if isinstance(minting, web.Response):
        return minting
    caller, store = minting
    body = await json_object_body(request)
    if isinstance(body, web.Response):
        return body
    try:
        translated = to_ga_client_event({"type": route.event_type, "session": body})
    except ProtocolError as exc:
        return _body_error(exc)
    secret_field = body.get("client_secret") or {}
    ttl = ttl_seconds(secret_field.get(route.expires_field), f"client_secret.{route.expires_field}")
    if isinstance(ttl, web.Response):
        return ttl
    session: dict[str, Any] = translated.event["session"]  # GA shape, ``type`` included
    try:
        wire = effective_session(request.app[SETTINGS], session)
    except ProtocolError as exc:
        return _body_error(beta_error(exc))
    stored = session
    if translated.temperature is not None:
        stored = {**session, STORED_TEMPERATURE: translated.temperature}
    secret, value = await mint_secret(store, caller, stored, ttl)
    wire["expires_at"] = secret.expires_at_unix
    if route is _TRANSCRIPTION:
        reply = beta_transcription_session(wire)
    else:
        reply = beta_session(wire, temperature=translated.temperature)
    reply["client_secret"] = {"value": value, "expires_at": secret.expires_at_unix}
    return web.json_response(reply)


async def create_beta_session(request: web.Request) -> web.Response:
    """``POST /v1/realtime/sessions``: a secret for a realtime session, from a flat beta session."""
    return await _create(request, _REALTIME)


async def create_beta_transcription_session(request: web.Request) -> web.Response:
    """``POST /v1/realtime/transcription_sessions``: a secret for a transcription session."""
    return await _create(request, _TRANSCRIPTION)
