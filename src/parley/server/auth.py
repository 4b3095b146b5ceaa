"""API-key authentication for HTTP routes and the WebSocket handshake.

A key may come as ``Authorization: Bearer <key>``, as the browser subprotocol
``openai-insecure-api-key.<key>``, as an ``api-key`` header (Azure style) or an ``api-key`` query
parameter. With no keys configured the server is in dev mode and accepts any key, or none.
"""

from __future__ import annotations

import hmac

from aiohttp import web

from parley.config import Settings

SUBPROTOCOL_KEY_PREFIX = "openai-insecure-api-key."


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


def check_key(request: web.Request, settings: Settings) -> web.Response | None:
    """None when the request may go on, else the 401 response to send."""
    if settings.dev_mode:
        return None
    key = presented_key(request)
    if key is None:
        return web.json_response(
            error_body(
                "You didn't provide an API key. Provide it as 'Authorization: Bearer <key>'.",
                type_="invalid_request_error",
                code="missing_api_key",
            ),
            status=401,
        )
    if not any(hmac.compare_digest(key.encode(), known.encode()) for known in settings.api_keys):
        return web.json_response(
            error_body("Incorrect API key provided.", type_="invalid_request_error", code="invalid_api_key"),
            status=401,
        )
    return None
