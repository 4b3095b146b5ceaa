"""An independent WebRTC client made with aiortc, doing what OpenAI's browser sample does: one
microphone track, the ``oai-events`` data channel, an SDP offer POSTed with a bearer key, the
answer applied. The microphone plays what the test queues (in real time, silence otherwise); what
the server sends back on its audio track is recorded, each frame with its arrival time."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
import numpy.typing as npt
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame

from parley.transports.aiortc_tuning import apply as tune_aiortc
from parley.transports.rtc_audio import FrameClock, mono_frame, received_frames

PCM = npt.NDArray[np.int16]
RATE = 48000
FRAME = RATE // 50


class Microphone(MediaStreamTrack):
    """A 48 kHz mono track that plays queued audio in real time, then silence."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._queue = np.zeros(0, dtype=np.int16)
        self._clock = FrameClock(RATE, FRAME)
        self.sent_until: float | None = None
        """Wall time when the last queued sample was sent."""

    def play(self, pcm: PCM) -> None:
        self._queue = np.concatenate([self._queue, np.asarray(pcm, dtype=np.int16)])

    @property
    def queued_s(self) -> float:
        return len(self._queue) / RATE

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        pts = await self._clock.next_pts()
        chunk, self._queue = self._queue[:FRAME], self._queue[FRAME:]
        if len(chunk):
            self.sent_until = time.monotonic()
        pcm = np.zeros(FRAME, dtype=np.int16)
        pcm[: len(chunk)] = chunk
        return mono_frame(pcm, RATE, pts)


@dataclass
class Offered:
    status: int
    body: str
    location: str | None


@dataclass
class RtcClient:
    microphone: Microphone = field(default_factory=Microphone)
    events: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    heard: list[tuple[float, PCM]] = field(default_factory=list)
    """Frames received from the server (48 kHz mono) with their arrival times."""
    channel_closed: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        tune_aiortc(["127.0.0.1"])
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTrack(self.microphone)
        self.channel = self.pc.createDataChannel("oai-events")
        self.channel.on("message", lambda m: self.events.put_nowait(json.loads(m)))
        self.channel.on("close", self.channel_closed.set)
        self.pc.on("track", self._on_track)
        self._tasks: list[asyncio.Task[None]] = []

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._tasks.append(asyncio.ensure_future(self._record(track)))

    async def _record(self, track: MediaStreamTrack) -> None:
        async for frame in received_frames(track):
            channels = len(frame.layout.channels)
            pcm = frame.to_ndarray().reshape(-1, channels)[:, 0].astype(np.int16)
            self.heard.append((time.monotonic(), pcm))

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def connect(self, url: str, key: str, *, session: dict[str, Any] | None = None) -> Offered:
        """POST the offer (raw SDP, or multipart with ``session``); apply the answer on 201."""
        sdp = await self.offer()
        headers = {"Authorization": f"Bearer {key}"}
        async with aiohttp.ClientSession() as http:
            if session is None:
                reply = await http.post(url, data=sdp, headers={**headers, "Content-Type": "application/sdp"})
            else:
                form = aiohttp.FormData()
                form.add_field("sdp", sdp, content_type="application/sdp")
                form.add_field("session", json.dumps(session), content_type="application/json")
                reply = await http.post(url, data=form, headers=headers)
            offered = Offered(reply.status, await reply.text(), reply.headers.get("Location"))
        if offered.status == 201:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offered.body, type="answer"))
        return offered

    def send(self, event: dict[str, Any]) -> None:
        self.channel.send(json.dumps(event))

    async def next_event(self, timeout: float = 30.0) -> dict[str, Any]:
        return await asyncio.wait_for(self.events.get(), timeout)

    async def until(self, type_: str, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Every event up to and including the first of ``type_``."""
        events: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            event = await self.next_event(max(0.1, deadline - time.monotonic()))
            events.append(event)
            if event["type"] == type_:
                return events

    def heard_since(self, since: float) -> PCM:
        frames = [pcm for at, pcm in self.heard if at >= since]
        return np.concatenate(frames) if frames else np.zeros(0, dtype=np.int16)

    async def close(self) -> None:
        await self.pc.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
