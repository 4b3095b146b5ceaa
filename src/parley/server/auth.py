"""API-key authentication for HTTP routes and the WebSocket handshake.

A key may come as ``Authorization: Bearer <key>``, as the browser subprotocol
``openai-insecure-api-key.<key>``, as an ``api-key`` header (Azure style) or an ``api-key`` query
parameter. Keys are those of ``PARLEY_API_KEYS`` (operator keys) and the database's (``parley keys
create``, each with its limits). With no key anywhere the server is in dev mode and accepts any key,
or none.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from aiohttp import web

from parley.config import Settings
from parley.store import ApiKey, ClientSecret, Store

SUBPROTOCOL_KEY_PREFIX = "openai-insecure-api-key."
SECRET_PREFIX = "ek_"


def offered_subprotocols(request: web.Request) -> list[str]:
    header = request.headers.get("Sec-WebSocket-Protocol", "")
    return [p.strip() for p in header.split(",") if p.strip()]


def presented_key(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    for protocol in offered_subprotocols(request):
        if protocol.startswith(SUBPROTOCOL_KEY_PREFIX):
            return protocol[len(SUBPROTOCOL_KEY_PREFIX) :] or None
    return request.headers.get("api-key") or request.query.get("api-key") or None


def error_body(message: str, *, type_: str, code: str, param: str | None = None) -> dict[str, object]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_response(
    message: str,
    *,
    code: str = "invalid_value",
    status: int = 400,
    param: str | None = None,
    type_: str = "invalid_request_error",
) -> web.Response:
    """An HTTP error with an OpenAI-style JSON body, as every route answers one."""
    return web.json_response(error_body(message, type_=type_, code=code, param=param), status=status)


@dataclass(frozen=True)
class Caller:
    """Who is calling: a database key (with its limits), or ``key=None`` for an operator key from
    ``PARLEY_API_KEYS`` or any caller in dev mode."""

    key: ApiKey | None = None
    secret: ClientSecret | None = None
    """The ephemeral client secret (``ek_…``) the caller came with; its session config starts the
    session."""


def _refuse(message: str, code: str) -> web.Response:
    return error_response(message, code=code, status=401)


async def authenticate(
    request: web.Request, settings: Settings, store: Store | None, *, allow_secret: bool = False
) -> Caller | web.Response:
    """The caller, or the 401 response to send. Once any key exists (``PARLEY_API_KEYS`` or an
    active database key) every request needs a valid one; with none the server is in dev mode.
    With ``allow_secret`` an ephemeral client secret (``ek_…``) is accepted too, until it expires."""
    key = presented_key(request)
    if key is not None and key.startswith(SECRET_PREFIX):
        if not allow_secret or store is None:
            return _refuse("A client secret (ek_…) cannot be used here; use an API key.", "invalid_api_key")
        secret = await store.run(store.secrets.consume, key)
        if secret is None:
            return _refuse(
                "This client secret has expired or is not valid; mint a new one with "
                "POST /v1/realtime/client_secrets.",
                "invalid_api_key",
            )
        owner = await store.run(store.keys.get, secret.key_id) if secret.key_id else None
        if owner is not None and owner.revoked:
            return _refuse("The API key that minted this client secret was revoked.", "invalid_api_key")
        return Caller(owner, secret)
    if key is not None and any(hmac.compare_digest(key.encode(), k.encode()) for k in settings.api_keys):
        return Caller()
    if key is not None and store is not None:
        record = await store.run(store.keys.verify, key)
        if record is not None:
            return Caller(record)
    if not settings.api_keys and not await has_database_keys(store):
        return Caller()  # dev mode
    if key is None:
        return _refuse(
            "You didn't provide an API key. Provide it as 'Authorization: Bearer <key>'.", "missing_api_key"
        )
    return _refuse("Incorrect API key provided.", "invalid_api_key")


async def has_database_keys(store: Store | None) -> bool:
    if store is None:
        return False
    return await store.run(store.keys.any_active)
