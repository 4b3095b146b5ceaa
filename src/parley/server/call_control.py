"""SIP call control, as OpenAI's SIP interface has it: ``POST /v1/realtime/calls/{call_id}/accept``
(a GA session), ``/reject`` (``{"status_code": 486}``, default 603) and ``/refer``
(``{"target_uri": "tel:+1…" | "sip:…"}``); ``/hangup`` is shared with WebRTC (``calls.py``). The SIP
server itself starts with the application when ``PARLEY_SIP_PORT`` is set."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from parley.config import Settings
from parley.protocol.errors import ProtocolError
from parley.server.admin_routes import STORE
from parley.server.auth import authenticate, error_response, has_database_keys
from parley.server.client_secrets import effective_session
from parley.server.metrics import METRICS
from parley.server.phone_agent import phone_session
from parley.transports.services import CALLS
from parley.transports.sip.call import SipCall
from parley.transports.sip.uas import SipServer
from parley.transports.websocket import ENGINES, LIVE, SETTINGS

log = logging.getLogger("parley.sip")

SIP = web.AppKey("sip", SipServer)

ControlHandler = Callable[[web.Request, SipCall, dict[str, Any]], Awaitable[web.Response]]
"""A call-control route's own work, given the call and the request's JSON body."""


def add_call_control(app: web.Application) -> None:
    app.router.add_post("/v1/realtime/calls/{call_id}/accept", accept_call)
    app.router.add_post("/v1/realtime/calls/{call_id}/reject", reject_call)
    app.router.add_post("/v1/realtime/calls/{call_id}/refer", refer_call)
    if app[SETTINGS].sip_port is not None:
        app.on_startup.append(_start_sip)
        app.on_cleanup.append(_stop_sip)


async def _start_sip(app: web.Application) -> None:
    settings = app[SETTINGS]
    store = app.get(STORE)
    open_to_all = settings.dev_mode and not await has_database_keys(store)
    app[SIP] = sip = SipServer(
        settings=settings,
        engines=app[ENGINES],
        calls=app[CALLS],
        open_to_all=open_to_all,
        metrics=app.get(METRICS),
        live=app.get(LIVE),
        store=store,
    )
    await sip.listen()
    if not open_to_all and not settings.sip_allowed_networks:
        log.warning("SIP: API keys exist and PARLEY_SIP_ALLOWED_NETWORKS is empty, so every call is refused")


async def _stop_sip(app: web.Application) -> None:
    if SIP in app:
        app[SIP].close()


async def _sip_call(request: web.Request) -> SipCall | web.Response:
    caller = await authenticate(request, request.app[SETTINGS], request.app.get(STORE))
    if isinstance(caller, web.Response):
        return caller
    call_id = request.match_info["call_id"]
    call = request.app[CALLS].get(call_id, caller.key.id if caller.key else None)
    if call is None:
        return error_response(
            f"No call with id '{call_id}' is in progress.", code="call_not_found", status=404
        )
    if not isinstance(call, SipCall):
        return error_response("Only SIP calls can be accepted, rejected or referred.", code="invalid_call")
    return call


def _call_control(handle: ControlHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The route for ``handle``: it gets the SIP call the request names (the caller's key must
    control it) and the JSON body; a request without them gets the error instead."""

    @functools.wraps(handle)
    async def route(request: web.Request) -> web.Response:
        call = await _sip_call(request)
        if isinstance(call, web.Response):
            return call
        body = await _body(request)
        if isinstance(body, web.Response):
            return body
        return await handle(request, call, body)

    return route


async def _body(request: web.Request) -> dict[str, Any] | web.Response:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except json.JSONDecodeError:
        return error_response("The body is not valid JSON.", code="invalid_json")
    if not isinstance(body, dict):
        return error_response("The body must be a JSON object.", code="invalid_json")
    return body


def _while_ringing(answer: Callable[[], None]) -> web.Response:
    """200 once ``answer`` (accepting or rejecting the call) is done; 409 if the call no longer rings."""
    try:
        answer()
    except RuntimeError as exc:
        return error_response(str(exc), code="call_not_ringing", status=409)
    return web.Response(status=200)


@_call_control
async def accept_call(request: web.Request, call: SipCall, body: dict[str, Any]) -> web.Response:
    if body.get("type") != "realtime":
        return error_response("The session must have type 'realtime'.", param="type")
    try:
        effective_session(_settings(request), phone_session(_settings(request), call.codec, body))
    except ProtocolError as exc:
        return error_response(exc.message, code=exc.code, param=(exc.param or "").removeprefix("session."))
    return _while_ringing(lambda: call.accept(body))


@_call_control
async def reject_call(request: web.Request, call: SipCall, body: dict[str, Any]) -> web.Response:
    status = body.get("status_code", 603)
    if not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 699:
        return error_response(
            "'status_code' must be a SIP error status from 400 to 699.", param="status_code"
        )
    return _while_ringing(lambda: call.reject(status))


@_call_control
async def refer_call(request: web.Request, call: SipCall, body: dict[str, Any]) -> web.Response:
    target = body.get("target_uri")
    if not isinstance(target, str) or not target.startswith(("tel:", "sip:", "sips:")):
        return error_response("'target_uri' must be a tel: or sip: URI.", param="target_uri")
    try:
        status = await call.refer(target)
    except RuntimeError as exc:
        return error_response(str(exc), code="call_not_answered", status=409)
    if not 200 <= status < 300:
        message = f"The caller's phone refused the transfer (SIP {status})."
        return error_response(message, code="refer_failed", status=502, type_="server_error")
    return web.Response(status=200)


def _settings(request: web.Request) -> Settings:
    return request.app[SETTINGS]
