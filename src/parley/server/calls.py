"""WebRTC call routes: ``POST /v1/realtime/calls`` (GA), ``POST /v1/realtime?model=`` (beta) and
``POST /v1/realtime/calls/{call_id}/hangup``.

GA takes either a raw ``application/sdp`` offer (the session comes from the ``ek_`` client secret
the browser holds) or ``multipart/form-data`` with an ``sdp`` part and a ``session`` part (a GA
session object) from a backend with its key; it answers ``201`` with the SDP answer and
``Location: /v1/realtime/calls/<call_id>``. Calls live in the process that answered them: call
control (hangup, sideband) must reach that process.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import BodyPartReader, web

from parley.protocol.errors import ProtocolError
from parley.server.admin_routes import STORE
from parley.server.auth import Caller, authenticate, error_response
from parley.server.client_secrets import effective_session
from parley.server.metrics import METRICS
from parley.server.realtime_route import admit
from parley.transports.services import CALLS, Calls, Services, wants_turn_latency
from parley.transports.webrtc import RealtimeCall
from parley.transports.websocket import DEFAULT_MODEL, ENGINES, LIVE, SETTINGS

log = logging.getLogger("parley.webrtc")

MAX_SDP_BYTES = 64 * 1024


class _Refused(Exception):
    def __init__(self, response: web.Response) -> None:
        self.response = response


def add_call_routes(app: web.Application) -> None:
    app[CALLS] = Calls()
    app.router.add_post("/v1/realtime/calls", create_call)
    app.router.add_post("/v1/realtime", create_call_beta)
    app.router.add_post("/v1/realtime/calls/{call_id}/hangup", hangup_call)
    app.on_cleanup.append(_end_calls)


async def _end_calls(app: web.Application) -> None:
    await app[CALLS].close()


async def create_call(request: web.Request) -> web.Response:
    return await _create(request, beta=False)


async def create_call_beta(request: web.Request) -> web.Response:
    """The beta form: the offer as ``application/sdp`` to ``/v1/realtime?model=``, beta events."""
    return await _create(request, beta=True)


async def _create(request: web.Request, *, beta: bool) -> web.Response:
    settings, store = request.app[SETTINGS], request.app.get(STORE)
    caller = await authenticate(request, settings, store, allow_secret=True)
    if isinstance(caller, web.Response):
        return caller
    try:
        offer, session = await _read_offer(request, beta=beta)
        if session is not None:
            effective_session(settings, {"type": "realtime", **session})
    except _Refused as refused:
        return refused.response
    except ProtocolError as exc:
        return error_response(exc.message, code=exc.code, param=exc.param or "session")
    return await _answer(request, caller, offer, session, beta=beta)


async def _answer(
    request: web.Request, caller: Caller, offer: str, session: dict[str, Any] | None, *, beta: bool
) -> web.Response:
    settings, store = request.app[SETTINGS], request.app.get(STORE)
    admitted = await admit(request, caller)
    if isinstance(admitted, web.Response):
        return admitted
    initial = caller.secret.session_config if caller.secret is not None else None
    transcription = (initial or {}).get("type") == "transcription" or request.query.get(
        "intent"
    ) == "transcription"
    call = RealtimeCall(
        settings=settings,
        engines=request.app[ENGINES],
        model=request.query.get("model") or str((initial or session or {}).get("model") or DEFAULT_MODEL),
        services=Services(
            metrics=request.app.get(METRICS),
            live=request.app.get(LIVE),
            store=store,
            key=caller.key,
            max_minutes=admitted.max_minutes,
            initial_session=initial,
            turn_latency=wants_turn_latency(request),
        ),
        session_type="transcription" if transcription else "realtime",
        beta=beta,
    )
    try:
        answer = await call.answer(offer)
    except Exception as exc:  # aiortc raises ValueError and others on offers it cannot answer
        admitted.release()
        await call.abandon()
        log.info("refused an SDP offer: %s", exc)
        return error_response(f"The SDP offer could not be answered: {exc}", code="invalid_sdp", param="sdp")
    request.app[CALLS].start(call, _update_for(session, initial), release=admitted.release)
    return web.Response(
        status=201,
        body=answer.encode(),
        content_type="application/sdp",
        headers={"Location": f"/v1/realtime/calls/{call.id}"},
    )


def _update_for(session: dict[str, Any] | None, initial: dict[str, Any] | None) -> dict[str, Any] | None:
    """The ``session`` part is applied as a ``session.update`` over the secret's configuration."""
    if session is None:
        return None
    return {"type": (initial or {}).get("type", "realtime"), **session}


async def _read_offer(request: web.Request, *, beta: bool) -> tuple[str, dict[str, Any] | None]:
    """The SDP offer and the ``session`` part (multipart form only)."""
    content_type = request.content_type
    if content_type == "application/sdp" or (content_type == "text/plain" and beta):
        return _sdp(await request.text()), None
    if content_type == "multipart/form-data" and not beta:
        sdp: str | None = None
        session: dict[str, Any] | None = None
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue
            if part.name == "sdp":
                sdp = _sdp(await part.text())
            elif part.name == "session":
                session = _session(await part.text())
        if sdp is None:
            raise _Refused(error_response("The form has no 'sdp' part with the offer.", param="sdp"))
        return sdp, session
    accepted = (
        "application/sdp" if beta else "application/sdp, or multipart/form-data with 'sdp' and 'session'"
    )
    raise _Refused(
        error_response(
            f"Send the SDP offer as {accepted}, not {content_type or 'no content type'}.",
            code="unsupported_media_type",
            status=415,
        )
    )


def _sdp(text: str) -> str:
    if len(text) > MAX_SDP_BYTES:
        raise _Refused(error_response("The SDP offer is too large.", code="invalid_sdp", param="sdp"))
    if not text.lstrip().startswith("v=0") or "m=audio" not in text:
        raise _Refused(
            error_response(
                "The body is not an SDP offer with an audio section (it must start with 'v=0').",
                code="invalid_sdp",
                param="sdp",
            )
        )
    return text


def _session(text: str) -> dict[str, Any]:
    try:
        session = json.loads(text)
    except json.JSONDecodeError:
        raise _Refused(
            error_response("The 'session' part is not valid JSON.", code="invalid_json", param="session")
        ) from None
    if not isinstance(session, dict):
        raise _Refused(error_response("The 'session' part must be a JSON object.", param="session"))
    if session.get("type", "realtime") != "realtime":
        raise _Refused(error_response("A call's session must have type 'realtime'.", param="session.type"))
    return session


async def hangup_call(request: web.Request) -> web.Response:
    caller = await authenticate(request, request.app[SETTINGS], request.app.get(STORE))
    if isinstance(caller, web.Response):
        return caller
    call = request.app[CALLS].get(request.match_info["call_id"], caller.key.id if caller.key else None)
    if call is None:
        message = f"No call with id '{request.match_info['call_id']}' is in progress in this process."
        return error_response(message, code="call_not_found", status=404)
    await call.end("hangup")
    return web.Response(status=200)
