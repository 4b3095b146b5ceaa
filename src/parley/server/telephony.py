"""Phone calls through Twilio: the voice webhook ``POST /v1/telephony/twilio/voice`` answers TwiML
that connects the call to the media stream ``GET /v1/telephony/twilio`` (a WebSocket), where the
bridge (``transports/twilio.py``) runs the phone agent.

Twilio signs both requests with the account's auth token (``X-Twilio-Signature``: base64 HMAC-SHA1
over the URL it called, then for a POST each form parameter's name and value, sorted by name). With
``PARLEY_TWILIO_AUTH_TOKEN`` set both routes take only requests it signed; without it they are open
in dev mode only and refused once API keys exist.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit
from xml.etree import ElementTree

from aiohttp import web

from parley.config import Settings, env_name
from parley.server.admin_routes import STORE
from parley.server.auth import error_response, has_database_keys
from parley.server.metrics import METRICS
from parley.server.phone_agent import check_phone_settings, phone_session
from parley.transports.services import CALLS, Services
from parley.transports.twilio import serve_twilio
from parley.transports.websocket import DEFAULT_MODEL, ENGINES, LIMITS, LIVE, SETTINGS

log = logging.getLogger("parley.twilio")

STREAM_PATH = "/v1/telephony/twilio"
VOICE_PATH = "/v1/telephony/twilio/voice"
FORWARDED_PARAMETERS = ("CallSid", "AccountSid", "From", "To", "Direction")
"""Webhook fields passed on to the stream as ``<Parameter>`` (they arrive in ``customParameters``)."""
MAX_STREAM_FRAME = 64 * 1024
"""Twilio's frames are a few hundred bytes."""


def add_telephony_routes(app: web.Application) -> None:
    """The Twilio routes; a bad ``PARLEY_PHONE_SESSION`` stops the start with its message."""
    check_phone_settings(app[SETTINGS])
    app.router.add_post(VOICE_PATH, twilio_voice)
    app.router.add_get(STREAM_PATH, twilio_stream)


# -- signatures -----------------------------------------------------------------------------------


def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]] = ()) -> str:
    """``X-Twilio-Signature`` of a request to ``url`` with form ``params`` (none for a GET or the
    media stream's WebSocket)."""
    data = url + "".join(name + value for name, value in sorted(params))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def _with_and_without_port(url: str) -> list[str]:
    """Twilio signs the URL as configured; a proxy may add or drop the default port on the way."""
    parts = urlsplit(url)
    default = {"https": 443, "wss": 443, "http": 80, "ws": 80}.get(parts.scheme)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    urls = [url]
    if parts.port is not None and parts.port == default:
        urls.append(urlunsplit(parts._replace(netloc=host)))
    elif parts.port is None and default is not None:
        urls.append(urlunsplit(parts._replace(netloc=f"{host}:{default}")))
    return urls


def public_url(
    request: web.Request, settings: Settings, *, path: str | None = None, websocket: bool = False
) -> str:
    """The URL of ``path`` (default: the request's own path and query) as callers reach it:
    ``PARLEY_PUBLIC_URL``, else what a proxy says in ``X-Forwarded-Proto``/``X-Forwarded-Host``,
    else the request's own scheme and ``Host``; ``ws``/``wss`` for ``websocket``."""
    if settings.public_url:
        base = settings.public_url.rstrip("/")
    else:
        proto = _first(request.headers.get("X-Forwarded-Proto")) or request.scheme
        host = _first(request.headers.get("X-Forwarded-Host")) or request.host
        base = f"{proto}://{host}"
    scheme, _, rest = base.partition("://")
    if not rest:  # a host given without its scheme
        scheme, rest = "https", base
    if websocket:
        scheme = "wss" if scheme in ("https", "wss") else "ws"
    return f"{scheme}://{rest}{request.raw_path if path is None else path}"


def _first(header: str | None) -> str:
    return (header or "").split(",")[0].strip()


async def _refusal(
    request: web.Request, params: Iterable[tuple[str, str]], *, websocket: bool
) -> web.Response | None:
    """None when the request may go on, else the 403 to send."""
    settings = request.app[SETTINGS]
    token = settings.twilio_auth_token
    if not token:
        if settings.dev_mode and not await has_database_keys(request.app.get(STORE)):
            return None
        message = (
            f"Twilio requests are refused: API keys are set but {env_name('twilio_auth_token')} is not. "
            "Set it to the Twilio account's auth token so Parley can check Twilio's signatures."
        )
        return error_response(message, code="twilio_auth_token_missing", status=403)
    signature = request.headers.get("X-Twilio-Signature", "")
    url = public_url(request, settings, websocket=websocket)
    pairs = list(params)
    if signature and any(
        hmac.compare_digest(twilio_signature(token, candidate, pairs), signature)
        for candidate in _with_and_without_port(url)
    ):
        return None
    log.warning("refused a Twilio request to %s: %s signature", url, "bad" if signature else "no")
    message = (
        "The X-Twilio-Signature header is missing or does not match this URL and the auth token "
        f"({url}). Behind a proxy, set {env_name('public_url')} to the URL Twilio is given."
    )
    return error_response(message, code="invalid_signature", status=403)


# -- routes ---------------------------------------------------------------------------------------


async def twilio_voice(request: web.Request) -> web.Response:
    """Twilio's voice webhook: TwiML that connects the call to the media stream."""
    form = await request.post()
    params = [(name, value) for name, value in form.items() if isinstance(value, str)]
    refusal = await _refusal(request, params, websocket=False)
    if refusal is not None:
        return refusal
    settings = request.app[SETTINGS]
    stream_url = public_url(request, settings, path=STREAM_PATH, websocket=True)
    values = dict(params)
    passed = {name: values[name] for name in FORWARDED_PARAMETERS if values.get(name)}
    log.info("twilio: call %s answered, streaming to %s", values.get("CallSid", "?"), stream_url)
    return web.Response(text=twiml(stream_url, passed), content_type="text/xml")


def twiml(stream_url: str, parameters: dict[str, str]) -> str:
    """``<Response><Connect><Stream url=...>`` with a ``<Parameter>`` per entry."""
    response = ElementTree.Element("Response")
    stream = ElementTree.SubElement(ElementTree.SubElement(response, "Connect"), "Stream", url=stream_url)
    for name, value in parameters.items():
        ElementTree.SubElement(stream, "Parameter", name=name, value=value)
    return '<?xml version="1.0" encoding="UTF-8"?>' + ElementTree.tostring(response, encoding="unicode")


async def twilio_stream(request: web.Request) -> web.StreamResponse:
    """The media stream: Twilio's WebSocket, bridged onto a session running the phone agent."""
    refusal = await _refusal(request, (), websocket=True)
    if refusal is not None:
        return refusal
    settings = request.app[SETTINGS]
    limits = request.app[LIMITS]
    ip = request.remote or "unknown"
    limit = limits.open(ip, None, None)
    if limit is not None:
        log.warning("refused a Twilio stream from %s: %s", ip, limit.message)
        return error_response(limit.message, code=limit.code, status=429, type_="rate_limit_error")
    try:
        ws = web.WebSocketResponse(max_msg_size=MAX_STREAM_FRAME, compress=False, heartbeat=None)
        await ws.prepare(request)
        session = phone_session(settings, "audio/pcmu")
        services = Services(
            metrics=request.app.get(METRICS),
            live=request.app.get(LIVE),
            store=request.app.get(STORE),
            max_minutes=settings.session_max_minutes,
            initial_session=session,
        )
        await serve_twilio(
            ws,
            settings=settings,
            engines=request.app[ENGINES],
            services=services,
            calls=request.app[CALLS],
            model=str(session.get("model") or DEFAULT_MODEL),
        )
    finally:
        limits.close(ip, None)
    return ws
