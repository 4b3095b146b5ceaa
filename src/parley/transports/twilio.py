"""Twilio Media Streams: a phone call bridged onto a realtime session (``<Connect><Stream>``).

Twilio sends JSON text frames: ``connected``, ``start`` (call and stream ids, ``customParameters``),
``media`` (20 ms of µ-law at 8 kHz, base64), ``dtmf``, ``mark``, ``stop``; the bridge answers with
``media``, ``mark`` and ``clear``. The session runs the phone agent (``PARLEY_PHONE_SESSION``) in
``audio/pcmu`` both ways: no transcoding. As on WebRTC the server plays the agent's voice itself: a
pacer sends the output audio buffer in 20 ms frames on a real-time schedule while a response plays
(no silence in between) and a ``mark`` named by the response id once it has played out, which Twilio
echoes when the caller has heard it. On barge-in the session cuts the assistant item at what was
played and the bridge sends ``clear``. Backends attach with ``GET /v1/realtime?call_id=twilio_<CallSid>``;
hangup closes the stream, which ends the phone call.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from parley.audio.pcm import PCMU
from parley.config import Settings
from parley.engines.registry import Engines
from parley.logging_context import bind_session
from parley.protocol import server_events as ev
from parley.protocol.errors import ProtocolError
from parley.realtime.session import Direction, RealtimeSession
from parley.transports.call_life import CallEnding, listed_live, start_session
from parley.transports.services import Calls, Services, SessionWatch

log = logging.getLogger("parley.twilio")

TRANSPORT = "twilio"
RATE = 8000
FRAME_SAMPLES = RATE // 50
FRAME_S = FRAME_SAMPLES / RATE
"""20 ms, the frames Twilio sends and plays."""
STALL_S = 0.2
"""The event loop was stalled this long: go on from now rather than send a burst."""
START_TIMEOUT_S = 10.0
"""Twilio sends ``start`` right after ``connected``; a stream without one within this is closed."""
MEDIA_TIMEOUT_S = 20.0
"""Twilio sends media every 20 ms, silence included: a stream quiet this long is dead (call ended)."""
MAX_OUTBOUND = 500
"""Frames waiting for a peer that stopped reading (10 s of audio): past this the call ends."""
_SID = re.compile(r"^[A-Za-z0-9]{1,64}$")


@dataclass(frozen=True)
class StreamStart:
    """What Twilio's ``start`` message says about the stream."""

    call_sid: str
    stream_sid: str
    parameters: dict[str, str] = field(default_factory=dict)
    """``customParameters``: the ``<Parameter>`` entries of the TwiML."""

    @classmethod
    def parse(cls, message: dict[str, Any]) -> StreamStart:
        """Raises ValueError (with what is wrong) for a ``start`` that cannot carry a call."""
        start = message.get("start")
        if not isinstance(start, dict):
            raise ValueError("'start' has no 'start' object")
        sids: dict[str, Any] = {
            "callSid": start.get("callSid"),
            "streamSid": start.get("streamSid") or message.get("streamSid"),
        }
        for name, value in sids.items():
            if not isinstance(value, str) or not _SID.match(value):
                raise ValueError(f"'start.{name}' is missing or not an id: {value!r}")
        media = start.get("mediaFormat") or {}
        media_format = (media.get("encoding"), media.get("sampleRate")) if isinstance(media, dict) else ()
        if media_format not in (("audio/x-mulaw", RATE), (None, None)):
            raise ValueError(f"the stream must be audio/x-mulaw at 8000 Hz, not {media!r}")
        custom = start.get("customParameters") or {}
        parameters = {str(k): str(v) for k, v in custom.items()} if isinstance(custom, dict) else {}
        return cls(sids["callSid"], sids["streamSid"], parameters)


def _decode(text: str) -> dict[str, Any] | None:
    try:
        message = json.loads(text)
    except ValueError:
        log.warning("twilio: a frame that is not JSON was ignored: %.80r", text)
        return None
    if not isinstance(message, dict) or not isinstance(message.get("event"), str):
        log.warning("twilio: a frame without an 'event' was ignored: %.80r", text)
        return None
    return message


async def read_start(ws: web.WebSocketResponse) -> StreamStart | None:
    """Read up to Twilio's ``start``; None when the stream closes or sends none in time."""
    try:
        async with asyncio.timeout(START_TIMEOUT_S):
            async for frame in ws:
                text = frame.data if frame.type == WSMsgType.TEXT else json.dumps({"event": frame.type.name})
                message = _decode(text)
                if message is None:
                    continue
                kind = message["event"]
                if kind == "connected":
                    log.info("twilio: stream connected (protocol %s)", message.get("protocol"))
                elif kind == "start":
                    try:
                        return StreamStart.parse(message)
                    except ValueError as exc:
                        log.warning("twilio: refused a stream: %s", exc)
                        return None
                else:
                    log.warning("twilio: %r before 'start' was ignored", kind)
    except TimeoutError:
        log.warning("twilio: no 'start' within %.0f s; closing the stream", START_TIMEOUT_S)
    return None


class TwilioCall(CallEnding):
    """One Twilio media stream (a phone call) and the realtime session it carries."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        start: StreamStart,
        *,
        settings: Settings,
        engines: Engines,
        services: Services,
        model: str,
    ) -> None:
        super().__init__()
        self.id = f"twilio_{start.call_sid}"
        self.key_id: str | None = None
        """No API key opened it: any key of the server may control it."""
        self.ws = ws
        self.start = start
        self.settings = settings
        self.services = services
        self.session = RealtimeSession(
            settings=settings,
            engines=engines,
            emit=self._emit,
            model=model,
            playback_rate=RATE,
            on_expired=self._expired,
            max_minutes=services.max_minutes,
        )
        self.session.observers.append(self._observe)
        self.sinks: list[Callable[[str], None]] = []
        """Sideband WebSockets attached to the call (GA dialect)."""
        self._watch = SessionWatch(self.session, services, settings, transport=TRANSPORT, model=model)
        self._outbound: asyncio.Queue[str] = asyncio.Queue()
        self._audio = asyncio.Event()
        """Set when response audio is queued: the pacer wakes up."""
        self._done = asyncio.Event()
        self._next_frame_at = 0.0
        self.frames_in = 0
        self.frames_out = 0
        self.marks_pending: dict[str, float] = {}
        """Marks sent and not yet echoed: responses Twilio may still be playing (name: sent at)."""
        self.marks_played = 0
        """Marks Twilio echoed: responses the caller heard to their end (or that a clear dropped)."""

    # -- the call's life --------------------------------------------------------------------------

    async def run(self, session_update: dict[str, Any] | None = None) -> None:
        """Run the session until the call ends (``stop``, the socket closes, hangup), then free it."""
        sids = (self.id, self.start.stream_sid, self.session.id, os.getpid())
        log.info("call %s (stream %s, session %s) opened, pid %d", *sids)
        tasks: list[asyncio.Task[None]] = []
        with listed_live(self.services, self.session, self.end), bind_session(self.session.id, self.id):
            try:
                await start_session(self.session, self.services, session_update)
                tasks = [
                    asyncio.create_task(self._write(), name="twilio writer"),
                    asyncio.create_task(self._play(), name="twilio pacer"),
                    asyncio.create_task(self._read(), name="twilio reader"),
                ]
                await self._greet()
                await self._ended.wait()
            except Exception:
                log.exception("call %s failed", self.id)
                self.end_reason = self.end_reason or "server_error"
            finally:
                await self._close(tasks)
                self._done.set()

    async def _greet(self) -> None:
        if self.settings.phone_greeting:
            try:
                await self.session.say(self.settings.phone_greeting)
            except ProtocolError as exc:
                log.warning("call %s: the greeting was not said: %s", self.id, exc.message)

    async def end(self, reason: str) -> None:
        """End the call (idempotent); ``run`` then closes the stream, and Twilio hangs up."""
        self._end(reason)

    async def wait_done(self) -> None:
        """Until ``run`` has freed everything."""
        await self._done.wait()

    async def _expired(self) -> None:
        await self.end("session_expired")

    async def _close(self, tasks: list[asyncio.Task[None]]) -> None:
        counts = (self.frames_in, self.frames_out, len(self.marks_pending))
        log.info(
            "call %s ended (%s): %d frames in, %d out, %d marks unplayed", self.id, self.end_reason, *counts
        )
        await self.session.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.ws.close(code=1000, message=self.end_reason.encode()[:120])
        await self._watch.close(self.end_reason)

    # -- Twilio -> session ------------------------------------------------------------------------

    async def _read(self) -> None:
        while True:
            try:
                frame = await self.ws.receive(timeout=MEDIA_TIMEOUT_S)
            except TimeoutError:
                return self._end("media_timeout")
            if frame.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                break
            if frame.type == WSMsgType.TEXT:
                message = _decode(frame.data)
                if message is not None:
                    await self._handle(message)
            else:
                log.warning("call %s: a %s frame was ignored", self.id, frame.type.name)
            if self._ended.is_set():
                return
        self._end("stream_closed")

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message["event"]
        try:
            if kind == "media":
                await self._media(message["media"])
            elif kind == "dtmf":
                digit = message["dtmf"]["digit"]
                if not isinstance(digit, str) or not digit:
                    raise ValueError(f"not a digit: {digit!r}")
                await self.session.dtmf(digit)
            elif kind == "mark":
                self._mark_played(str(message["mark"]["name"]))
            elif kind == "stop":
                self._end("stop")
            elif kind in ("connected", "start"):
                log.warning("call %s: a second %r was ignored", self.id, kind)
            else:
                log.warning("call %s: unknown event %r ignored", self.id, kind)
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            log.warning(
                "call %s: a malformed %r message was ignored (%s: %s)", self.id, kind, type(exc).__name__, exc
            )

    async def _media(self, media: dict[str, Any]) -> None:
        if media.get("track", "inbound") not in ("inbound", "inbound_track"):
            return  # both_tracks streams also carry what Twilio plays out
        payload = base64.b64decode(media["payload"], validate=True)
        self.frames_in += 1
        await self.session.append_audio(payload)

    def _mark_played(self, name: str) -> None:
        sent = self.marks_pending.pop(name, None)
        if sent is None:
            log.warning("call %s: Twilio echoed a mark that was not sent: %r", self.id, name)
            return
        self.marks_played += 1
        log.debug(
            "call %s: %s played out %.0f ms after its mark", self.id, name, (time.monotonic() - sent) * 1e3
        )

    # -- session -> Twilio ------------------------------------------------------------------------

    def _observe(self, direction: Direction, event: dict[str, Any]) -> None:
        if direction == "server" and event["type"] == "response.output_audio.delta":
            self._audio.set()  # the playback buffer takes it right after the observers

    async def _emit(self, event: ev.Event) -> None:
        if self.sinks:
            text = json.dumps(event, separators=(",", ":"))
            for sink in list(self.sinks):
                sink(text)
        kind = event["type"]
        if kind == "output_audio_buffer.stopped":
            name = str(event["response_id"])
            self.marks_pending[name] = time.monotonic()
            self._send({"event": "mark", "streamSid": self.start.stream_sid, "mark": {"name": name}})
        elif kind == "output_audio_buffer.cleared":
            self._send({"event": "clear", "streamSid": self.start.stream_sid})
        elif kind == "error":
            error = event["error"]
            log.warning("call %s: %s (%s)", self.id, error.get("message"), error.get("code"))
        elif kind == "response.done" and event["response"]["status"] == "failed":
            log.warning("call %s: a response failed: %s", self.id, event["response"].get("status_details"))

    async def _play(self) -> None:
        """The agent's voice: one 20 ms frame per 20 ms while a response plays, on an absolute
        schedule (a late frame does not delay the next ones; a stall does not cause a burst)."""
        playback = self.session.playback
        assert playback is not None
        while True:
            await self._audio.wait()
            self._audio.clear()
            now = time.monotonic()
            due = max(now, self._next_frame_at)  # never closer than 20 ms to the last response's end
            while playback.playing:
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                elif wait < -STALL_S:
                    due = time.monotonic()
                if not playback.playing:
                    break
                pcm = playback.read(FRAME_SAMPLES)
                payload = base64.b64encode(PCMU.encode(pcm)).decode("ascii")
                self._send(
                    {"event": "media", "streamSid": self.start.stream_sid, "media": {"payload": payload}}
                )
                self.frames_out += 1
                due += FRAME_S
            self._next_frame_at = due

    def _send(self, message: dict[str, Any]) -> None:
        """Queue a message for Twilio, in order (media, then the mark or clear that follows it)."""
        if self._outbound.qsize() >= MAX_OUTBOUND:
            log.warning("call %s: Twilio stopped reading; ending the call", self.id)
            self._end("slow_peer")
            return
        self._outbound.put_nowait(json.dumps(message, separators=(",", ":")))

    async def _write(self) -> None:
        while True:
            text = await self._outbound.get()
            try:
                await self.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                self._end("stream_closed")
                return


async def serve_twilio(
    ws: web.WebSocketResponse,
    *,
    settings: Settings,
    engines: Engines,
    services: Services,
    calls: Calls,
    model: str,
) -> None:
    """One Twilio media stream on ``ws``: wait for ``start``, then run the call (registered in
    ``calls`` for hangup and sideband sockets) until it ends."""
    start = await read_start(ws)
    if start is None:
        await ws.close(code=1008, message=b"no valid start message")
        return
    if f"twilio_{start.call_sid}" in calls.live:
        log.warning("call twilio_%s already has a stream; refused %s", start.call_sid, start.stream_sid)
        await ws.close(code=1008, message=b"this call already has a stream")
        return
    call = TwilioCall(ws, start, settings=settings, engines=engines, services=services, model=model)
    calls.start(call, None)
    try:
        await call.wait_done()
    finally:
        await call.end("server_shutting_down")  # only if this handler is cancelled first
