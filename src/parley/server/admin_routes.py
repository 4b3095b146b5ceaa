"""REST routes over the recorded sessions: ``/v1/parley/sessions`` (list, show, delete).

Authentication is the caller's: an auth middleware (or handler wrapper) puts the resolved
database key, a :class:`parley.store.ApiKey`, in ``request[PARLEY_KEY]`` (a ``web.RequestKey``;
the plain string key ``"parley_key"`` is read too). A database key sees and
deletes only its own sessions (others are "not found"); without one (the operator's configured
keys, or dev mode) every session is visible. Errors are OpenAI-style ``{"error": {...}}`` bodies.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from aiohttp import web

from parley.server.auth import error_response
from parley.store import ApiKey, Store

log = logging.getLogger("parley.server.admin")

STORE = web.AppKey("parley_store", Store)
PARLEY_KEY = web.RequestKey("parley_key", ApiKey)
"""``request[PARLEY_KEY]``: the :class:`ApiKey` the request was authenticated with, if a database key."""
MAX_LIMIT = 100

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_admin_routes(app: web.Application, store: Store | None = None) -> None:
    """Add the session routes; ``store`` is put in ``app[STORE]`` when given (else set it yourself)."""
    if store is not None:
        app[STORE] = store
    app.router.add_get("/v1/parley/sessions", _guard(list_sessions))
    app.router.add_get("/v1/parley/sessions/{session_id}", _guard(get_session))
    app.router.add_delete("/v1/parley/sessions/{session_id}", _guard(delete_session))


def _not_found(session_id: str) -> web.Response:
    message = f"No session found with id '{session_id}'."
    return error_response(message, code="session_not_found", status=404, param="session_id")


def _guard(handler: Handler) -> Handler:
    """Database failures become a 500 with an error body, not a traceback page."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            message = "The server could not read its session store."
            return error_response(message, code="store_error", status=500, type_="server_error")

    return guarded


def _scope(request: web.Request) -> str | None:
    """The key id a request is limited to, or ``None`` for all sessions."""
    key = request.get(PARLEY_KEY) or request.get("parley_key")
    return key.id if isinstance(key, ApiKey) else None


async def list_sessions(request: web.Request) -> web.Response:
    """``GET /v1/parley/sessions?limit=20&since=<unix s>&key_id=<id>``, newest first."""
    store = request.app[STORE]
    try:
        limit = int(request.query.get("limit", "20"))
    except ValueError:
        return error_response("'limit' must be an integer.", param="limit")
    if not 1 <= limit <= MAX_LIMIT:
        return error_response(f"'limit' must be between 1 and {MAX_LIMIT}.", param="limit")
    since = None
    if "since" in request.query:
        try:
            since = datetime.fromtimestamp(float(request.query["since"]), UTC)
        except (ValueError, OverflowError, OSError):
            return error_response("'since' must be a Unix time in seconds.", param="since")
    key_id = _scope(request) or request.query.get("key_id") or None
    found = await store.run(store.sessions.list, key_id=key_id, limit=limit + 1, since=since)
    data = [s.to_dict() for s in found[:limit]]
    return web.json_response({"object": "list", "data": data, "has_more": len(found) > limit})


async def get_session(request: web.Request) -> web.Response:
    """``GET /v1/parley/sessions/{id}``: config, items in order, responses (usage, latency), errors."""
    store = request.app[STORE]
    session_id = request.match_info["session_id"]
    detail = await store.run(store.sessions.get, session_id, key_id=_scope(request))
    if detail is None:
        return _not_found(session_id)
    return web.json_response(detail.to_dict())


async def delete_session(request: web.Request) -> web.Response:
    """``DELETE /v1/parley/sessions/{id}``: the session and everything recorded of it."""
    store = request.app[STORE]
    session_id = request.match_info["session_id"]
    if not await store.run(store.sessions.delete, session_id, key_id=_scope(request)):
        return _not_found(session_id)
    return web.json_response({"id": session_id, "object": "parley.session.deleted", "deleted": True})
