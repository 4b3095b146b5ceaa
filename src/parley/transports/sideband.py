"""Sideband control: ``GET /v1/realtime?call_id=<id>`` attaches a backend's WebSocket to a live call
(WebRTC, SIP, a carrier's media stream).

The backend (holding a real key, unlike the browser) sees every event of the call's session in the
GA dialect, and its events (``session.update`` with tools, ``response.create``, function call
outputs...) go to the same session, as on OpenAI's service. Detaching leaves the call running; the
socket is closed when the call ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import WSMsgType, web

from parley.protocol import server_events as ev
from parley.protocol.errors import ProtocolError
from parley.transports.services import LiveCall

log = logging.getLogger("parley.sideband")

OUTBOUND_QUEUE = 1024
"""Events waiting for the backend; a backend that falls this far behind is disconnected."""


async def serve_sideband(ws: web.WebSocketResponse, call: LiveCall) -> None:
    outbound: asyncio.Queue[str | None] = asyncio.Queue(OUTBOUND_QUEUE)

    def sink(text: str) -> None:
        try:
            outbound.put_nowait(text)
        except asyncio.QueueFull:
            log.warning("call %s: a sideband socket stopped reading; disconnecting it", call.id)
            call.sinks.remove(sink)
            outbound.get_nowait()
            outbound.put_nowait(None)

    async def write() -> None:
        while (text := await outbound.get()) is not None:
            if not ws.closed:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.send_str(text)
        await ws.close(code=1000, message=b"sideband closed")

    async def call_ended() -> None:
        await call.wait_ended()
        await ws.close(code=1000, message=b"call ended")

    call.sinks.append(sink)
    log.info("call %s: sideband socket attached", call.id)
    tasks = [asyncio.create_task(write(), name="sideband writer"), asyncio.create_task(call_ended())]
    try:
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                await call.session.handle_text(message.data)
            elif message.type == WSMsgType.BINARY:
                error = ProtocolError("invalid_event", "Send JSON events as text frames.")
                await call.session.emit(ev.error(error))
    finally:
        if sink in call.sinks:
            call.sinks.remove(sink)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        log.info("call %s: sideband socket detached", call.id)
