"""The Realtime API over WebRTC (aiortc), as a browser or an SDK reaches OpenAI's service.

The caller POSTs an SDP offer and gets the answer (``server/calls.py``); then the caller's audio
track is the session's input (no ``input_audio_buffer.append``), response audio goes back on an
RTP track paced in real time by the server (which therefore knows what was heard), and events flow
as JSON text on the ``oai-events`` data channel, the same events as on a WebSocket except that
response audio is not sent as ``response.output_audio.delta``. Backends may attach sideband
WebSockets (``GET /v1/realtime?call_id=``) that see and send the same events.

A call ends on hangup, when ICE/DTLS fails or closes, when its data channel closes, or when no
audio arrives for ``PARLEY_WEBRTC_MEDIA_TIMEOUT_S`` (also the time it may take to connect).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame

from parley import ids
from parley.audio.resample import StreamResampler
from parley.config import Settings
from parley.engines.registry import Engines
from parley.logging_context import bind_session
from parley.protocol import server_events as ev
from parley.protocol.beta import BetaDialect
from parley.protocol.errors import ProtocolError
from parley.realtime.playback import Playback
from parley.realtime.session import RealtimeSession, SessionType
from parley.transports.aiortc_tuning import apply as tune_aiortc
from parley.transports.call_life import CallEnding, listed_live, start_session
from parley.transports.rtc_audio import FrameClock, mono_frame, received_frames
from parley.transports.services import Services, SessionWatch

log = logging.getLogger("parley.webrtc")

DATA_CHANNEL = "oai-events"
PLAYOUT_RATE = 24000
FRAME_SAMPLES = PLAYOUT_RATE // 50
"""20 ms frames, as browsers send and Opus packs them."""
MAX_PENDING_EVENTS = 1024
"""Events kept until the data channel opens; a call that never opens one keeps the newest."""
MAX_BUFFERED_BYTES = 8 * 1024 * 1024
"""A data channel holding this much unsent data has a peer that stopped reading: the call ends."""
MAX_INBOUND_EVENTS = 1024
WATCHDOG_S = 1.0

Sink = Callable[[str], None]


class PlayoutTrack(MediaStreamTrack):
    """The assistant's voice: 20 ms frames from the output audio buffer, silence in between, sent
    in real time (aiortc encodes them to Opus)."""

    kind = "audio"

    def __init__(self, playback: Playback) -> None:
        super().__init__()
        self._playback = playback
        self._clock = FrameClock(PLAYOUT_RATE, FRAME_SAMPLES, catch_up_after_s=0.2)

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        pts = await self._clock.next_pts()
        return mono_frame(self._playback.read(FRAME_SAMPLES), PLAYOUT_RATE, pts)


class RealtimeCall(CallEnding):
    """One WebRTC call: a peer connection and the realtime session it carries."""

    def __init__(
        self,
        *,
        settings: Settings,
        engines: Engines,
        model: str,
        services: Services,
        session_type: SessionType = "realtime",
        beta: bool = False,
    ) -> None:
        super().__init__()
        tune_aiortc(settings.webrtc_host_addresses)
        self.id = ids.rtc_call_id()
        self.settings = settings
        self.services = services
        self.key_id = services.key.id if services.key is not None else None
        ice = [RTCIceServer(**server) for server in settings.webrtc_ice_servers]
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=ice))
        self.session = RealtimeSession(
            settings=settings,
            engines=engines,
            emit=self._emit,
            model=model,
            playback_rate=PLAYOUT_RATE,
            on_expired=self._expired,
            session_type=session_type,
            max_minutes=services.max_minutes,
        )
        self.dialect = BetaDialect(self.session) if beta else None
        """A beta call (``POST /v1/realtime``) speaks the beta dialect on its data channel."""
        self.sinks: list[Sink] = []
        """Sideband WebSockets attached to the call (always the GA dialect)."""
        self._watch = SessionWatch(self.session, services, settings, transport="webrtc", model=model)
        self._channel: RTCDataChannel | None = None
        self._pending: deque[str] = deque(maxlen=MAX_PENDING_EVENTS)
        self._inbound: asyncio.Queue[str] = asyncio.Queue(MAX_INBOUND_EVENTS)
        self._tasks: set[asyncio.Task[None]] = set()
        self._created = time.monotonic()
        self._last_media: float | None = None
        self.frames_in = 0

    # -- signalling -------------------------------------------------------------------------------

    async def answer(self, offer_sdp: str) -> str:
        """The SDP answer to the caller's offer (with every candidate: aiortc does not trickle)."""
        pc = self.pc
        pc.on("datachannel", self._on_datachannel)
        pc.on("track", self._on_track)
        pc.on("connectionstatechange", self._on_connection_state)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        assert self.session.playback is not None
        pc.addTrack(PlayoutTrack(self.session.playback))
        await pc.setLocalDescription(await pc.createAnswer())
        return pc.localDescription.sdp

    # -- the call's life --------------------------------------------------------------------------

    async def run(self, session_update: dict[str, Any] | None = None) -> None:
        """Run the session until the call ends, then free everything."""
        log.info("call %s (session %s) opened, pid %d", self.id, self.session.id, os.getpid())
        with listed_live(self.services, self.session, self.end), bind_session(self.session.id):
            try:
                await start_session(self.session, self.services, session_update)
                self._spawn(self._handle_events(), "webrtc events")
                await self._watchdog()
            finally:
                await self._close()

    async def abandon(self) -> None:
        """Free a call whose offer could not be answered (it never ran)."""
        self.end_reason = "invalid_offer"
        await self.session.close()
        with contextlib.suppress(Exception):
            await self.pc.close()
        await self._watch.close(self.end_reason)

    async def end(self, reason: str) -> None:
        """End the call (idempotent); ``run`` then frees it."""
        self._end(reason)

    async def _watchdog(self) -> None:
        timeout = self.settings.webrtc_media_timeout_s
        while not self._ended.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ended.wait(), WATCHDOG_S)
            now = time.monotonic()
            if self._last_media is None and now - self._created > timeout:
                await self.end("connect_timeout")
            elif self._last_media is not None and now - self._last_media > timeout:
                await self.end("media_timeout")
            elif self._channel is not None and self._channel.bufferedAmount > MAX_BUFFERED_BYTES:
                await self.end("slow_client")

    async def _close(self) -> None:
        log.info("call %s ended (%s)", self.id, self.end_reason)
        await self.session.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.pc.close()
        await self._watch.close(self.end_reason)

    async def _expired(self) -> None:
        await self.end("session_expired")

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- peer connection events -------------------------------------------------------------------

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        log.info("call %s: connection %s", self.id, state)
        if state == "connected" and self._last_media is None:
            self._last_media = time.monotonic()  # the media timeout counts from here
        if state in ("failed", "closed"):
            self._spawn(self.end(f"connection_{state}"), "webrtc end")

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._spawn(self._listen(track), "webrtc audio in")

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label != DATA_CHANNEL:
            log.info("call %s: ignoring data channel %r", self.id, channel.label)
            return
        self._channel = channel
        channel.on("message", self._on_message)
        channel.on("close", lambda: self._spawn(self.end("data_channel_closed"), "webrtc end"))
        while self._pending:
            channel.send(self._pending.popleft())

    def _on_message(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            error = ProtocolError("invalid_event", "Send JSON events as text messages on the data channel.")
            self._spawn(self.session.emit(ev.error(error)), "webrtc error")
            return
        try:
            self._inbound.put_nowait(message)
        except asyncio.QueueFull:
            error = ProtocolError(
                "rate_limit_exceeded",
                "Too many events are waiting to be handled; this one was dropped. Wait for replies.",
                type="rate_limit_error",
            )
            self._spawn(self.session.emit(ev.error(error)), "webrtc error")

    async def _handle_events(self) -> None:
        handle = self.dialect.handle_text if self.dialect is not None else self.session.handle_text
        while True:
            await handle(await self._inbound.get())

    async def _listen(self, track: MediaStreamTrack) -> None:
        """The caller's audio, decoded by aiortc (48 kHz), into the session's input format."""
        resampler: StreamResampler | None = None
        async for frame in received_frames(track):
            self._last_media = time.monotonic()
            self.frames_in += 1
            channels = len(frame.layout.channels)
            samples = frame.to_ndarray().reshape(-1, channels)
            mono = samples[:, 0] if channels == 1 else samples.mean(axis=1).astype(np.int16)
            fmt = self.session.audio.format
            if resampler is None or (resampler.in_rate, resampler.out_rate) != (
                frame.sample_rate,
                fmt.sample_rate,
            ):
                resampler = StreamResampler(frame.sample_rate, fmt.sample_rate)
            await self.session.append_audio(fmt.encode(resampler.process(mono)))

    # -- events out -------------------------------------------------------------------------------

    async def _emit(self, event: ev.Event) -> None:
        text = _encode(event) if self.sinks or self.dialect is None else ""
        for sink in list(self.sinks):
            sink(text)
        channel = self._channel
        if channel is not None and channel.readyState != "open":
            return
        for out in self.dialect.server_event(event) if self.dialect is not None else (event,):
            encoded = text if out is event and text else _encode(out)
            if channel is None:
                self._pending.append(encoded)
            else:
                channel.send(encoded)


def _encode(event: ev.Event) -> str:
    return json.dumps(event, separators=(",", ":"))
