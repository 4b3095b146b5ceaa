"""A Twilio Media Streams peer, written from Twilio's documented message format (TRANSPORTS.md §3).

It opens the stream WebSocket as Twilio does, sends ``connected`` and ``start`` (string sequence
numbers, ``customParameters``), then a ``media`` frame every 20 ms in real time: 160 bytes of µ-law
at 8 kHz, base64, with string ``chunk`` and ``timestamp``, carrying what the test queued with
:meth:`TwilioSim.say` and silence otherwise, as a phone line does. ``dtmf`` and ``stop`` on demand.

What comes back is recorded with its arrival time. Like Twilio it plays the ``media`` it receives on
its own real-time clock (20 ms per frame, queued behind each other), echoes each ``mark`` once the
audio queued before it has played, and on ``clear`` drops what it has not played and echoes every
pending mark at once.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import numpy as np
import numpy.typing as npt

from parley.audio.pcm import PCMU

PCM = npt.NDArray[np.int16]
RATE = 8000
FRAME = RATE // 50
FRAME_S = 0.02
T = TypeVar("T")
SILENCE = PCMU.encode(np.zeros(FRAME, dtype=np.int16))


@dataclass
class Media:
    at: float
    """``time.monotonic()`` when the frame arrived."""
    payload: bytes
    """µ-law bytes."""

    @property
    def pcm(self) -> PCM:
        return PCMU.decode(self.payload)


@dataclass
class Received:
    at: float
    message: dict[str, Any]

    @property
    def event(self) -> str:
        return str(self.message.get("event"))


@dataclass
class Played:
    """What the simulated phone did with the server's audio."""

    marks: list[tuple[float, str]] = field(default_factory=list)
    """Marks echoed back to the server: (time, name)."""
    until: float = 0.0
    """When the audio received so far will have played out."""
    pending: list[tuple[float, str]] = field(default_factory=list)
    """Marks waiting for the audio before them: (due time, name)."""


class TwilioSim:
    """``async with TwilioSim(url) as sim: await sim.start(); sim.say(pcm8k)...``"""

    def __init__(
        self,
        url: str,
        *,
        call_sid: str = "CA" + "0" * 32,
        stream_sid: str = "MZ" + "0" * 32,
        account_sid: str = "AC" + "0" * 32,
        parameters: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.url = url
        self.call_sid, self.stream_sid, self.account_sid = call_sid, stream_sid, account_sid
        self.parameters = parameters or {}
        self.headers = headers or {}
        self.received: list[Received] = []
        self.media: list[Media] = []
        self.clears: list[float] = []
        self.played = Played()
        self.closed = asyncio.Event()
        self.sent_until: float | None = None
        """When the last sample queued with :meth:`say` was sent."""
        self.said = asyncio.Event()
        """Set once everything queued with :meth:`say` has been sent."""
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._queue = np.zeros(0, dtype=np.int16)
        self._sequence = 0
        self._chunk = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._new = asyncio.Event()

    async def __aenter__(self) -> TwilioSim:
        self._http = aiohttp.ClientSession()
        self._ws = await self._http.ws_connect(self.url, headers=self.headers, autoping=True)
        self._tasks.append(asyncio.create_task(self._read(), name="twilio sim reader"))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._ws is not None:
            await self._ws.close()
        if self._http is not None:
            await self._http.close()

    # -- Twilio -> server -------------------------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        """Send ``message`` with the next sequence number (a string, as Twilio's are)."""
        self._sequence += 1
        await self.send_raw(json.dumps({**message, "sequenceNumber": str(self._sequence)}))

    async def send_raw(self, text: str) -> None:
        assert self._ws is not None
        await self._ws.send_str(text)

    async def start(self, *, connected: bool = True, microphone: bool = True) -> None:
        """``connected`` and ``start``, then media frames every 20 ms (with ``microphone``)."""
        if connected:
            await self.send_raw(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        start = {
            "accountSid": self.account_sid,
            "streamSid": self.stream_sid,
            "callSid": self.call_sid,
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": RATE, "channels": 1},
            "customParameters": self.parameters,
        }
        await self.send({"event": "start", "start": start, "streamSid": self.stream_sid})
        if microphone:
            self._tasks.append(asyncio.create_task(self._microphone(), name="twilio sim microphone"))

    def say(self, pcm: PCM) -> None:
        """Queue 8 kHz speech: the microphone sends it after what is already queued."""
        self._queue = np.concatenate([self._queue, np.asarray(pcm, dtype=np.int16)])
        self.said.clear()

    @property
    def queued_s(self) -> float:
        return len(self._queue) / RATE

    async def media_frame(self, payload: bytes) -> None:
        self._chunk += 1
        media = {
            "track": "inbound",
            "chunk": str(self._chunk),
            "timestamp": str(self._chunk * 20),
            "payload": base64.b64encode(payload).decode("ascii"),
        }
        await self.send({"event": "media", "media": media, "streamSid": self.stream_sid})

    async def dtmf(self, digit: str) -> None:
        await self.send(
            {
                "event": "dtmf",
                "streamSid": self.stream_sid,
                "dtmf": {"track": "inbound_track", "digit": digit},
            }
        )

    async def stop(self) -> None:
        stop = {"accountSid": self.account_sid, "callSid": self.call_sid}
        await self.send({"event": "stop", "stop": stop, "streamSid": self.stream_sid})

    async def _microphone(self) -> None:
        start = time.monotonic()
        sent = 0
        while self._ws is not None and not self._ws.closed:
            speech = len(self._queue) > 0
            chunk, self._queue = self._queue[:FRAME], self._queue[FRAME:]
            chunk = np.concatenate([chunk, np.zeros(FRAME - len(chunk), dtype=np.int16)])
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.media_frame(PCMU.encode(chunk) if speech else SILENCE)
            if speech and not len(self._queue):
                self.sent_until = time.monotonic()
                self.said.set()
            sent += 1
            await asyncio.sleep(max(0.0, start + sent * FRAME_S - time.monotonic()))

    # -- server -> Twilio -------------------------------------------------------------------------

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for message in self._ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                now = time.monotonic()
                data = json.loads(message.data)
                self.received.append(Received(now, data))
                self._on_message(now, data)
                self._new.set()
        finally:
            self.closed.set()
            self._new.set()

    def _on_message(self, now: float, data: dict[str, Any]) -> None:
        kind = data.get("event")
        if kind == "media":
            self.media.append(Media(now, base64.b64decode(data["media"]["payload"])))
            self.played.until = max(now, self.played.until) + FRAME_S
        elif kind == "mark":
            name = data["mark"]["name"]
            if self.played.until <= now:
                self._echo(name)
            else:
                self.played.pending.append((self.played.until, name))
                delay = self.played.until - now
                asyncio.get_running_loop().call_later(delay, self._echo_due)
        elif kind == "clear":
            self.clears.append(now)
            self.played.until = now
            for _, name in self.played.pending:
                self._echo(name)
            self.played.pending.clear()

    def _echo_due(self) -> None:
        now = time.monotonic()
        due = [(at, name) for at, name in self.played.pending if at <= now + 0.001]
        for entry in due:
            self.played.pending.remove(entry)
            self._echo(entry[1])

    def _echo(self, name: str) -> None:
        self.played.marks.append((time.monotonic(), name))
        self._new.set()
        if self._ws is not None and not self._ws.closed:
            self._sequence += 1
            echo = {"event": "mark", "sequenceNumber": str(self._sequence), "streamSid": self.stream_sid}
            self._tasks.append(
                asyncio.create_task(self.send_raw(json.dumps({**echo, "mark": {"name": name}})))
            )

    # -- waiting ----------------------------------------------------------------------------------

    async def until(self, event: str, since: int = 0, timeout: float = 60.0) -> Received:
        """The first message of ``event`` received at or after index ``since``."""

        async def wait() -> Received:
            index = since
            while True:
                while index < len(self.received):
                    index += 1
                    if self.received[index - 1].event == event:
                        return self.received[index - 1]
                if self.closed.is_set():
                    raise ConnectionError(f"the stream closed before {event!r}")
                self._new.clear()
                await self._new.wait()

        return await asyncio.wait_for(wait(), timeout)

    async def until_echoed(self, name: str, timeout: float = 60.0) -> float:
        """When the mark ``name`` was echoed (it has played)."""

        def echoed() -> float | None:
            return next((at for at, echoed in self.played.marks if echoed == name), None)

        return await self._until(echoed, timeout)

    async def until_media(self, count: int, timeout: float = 60.0) -> Media:
        """The ``count``-th media frame received (1-based)."""
        return await self._until(lambda: self.media[count - 1] if len(self.media) >= count else None, timeout)

    async def _until(self, found: Callable[[], T | None], timeout: float) -> T:
        async def wait() -> T:
            while (value := found()) is None:
                if self.closed.is_set():
                    raise ConnectionError("the stream closed")
                self._new.clear()
                await self._new.wait()
            return value

        return await asyncio.wait_for(wait(), timeout)

    def media_between(self, start: float, end: float) -> list[Media]:
        return [m for m in self.media if start <= m.at <= end]
