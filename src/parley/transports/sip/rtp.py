"""RTP (RFC 3550) for one G.711 call: receive with a small reordering jitter buffer and RFC 4733
telephone events, send 20 ms frames on an absolute real-time schedule."""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

log = logging.getLogger("parley.sip")

FRAME_SAMPLES = 160
"""20 ms at 8 kHz: one G.711 packet."""
JITTER_PACKETS = 3
"""Packets held to put late ones back in order (60 ms at most); a gap older than that is skipped."""
MAX_GAP = 50
"""A jump of more sequence numbers than this is a new stream, not loss to fill with silence."""
DTMF_DIGITS = "0123456789*#ABCD"


@dataclass(frozen=True)
class RtpPacket:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    marker: bool
    payload: bytes


def parse_rtp(data: bytes) -> RtpPacket | None:
    if len(data) < 12 or data[0] >> 6 != 2:
        return None
    csrc = data[0] & 0x0F
    offset = 12 + 4 * csrc
    if data[0] & 0x10 and len(data) >= offset + 4:  # header extension
        offset += 4 + 4 * struct.unpack_from("!H", data, offset + 2)[0]
    end = len(data)
    if data[0] & 0x20 and end > offset:  # padding
        end -= data[-1]
    sequence, timestamp, ssrc = struct.unpack_from("!HII", data, 2)
    return RtpPacket(data[1] & 0x7F, sequence, timestamp, ssrc, bool(data[1] & 0x80), data[offset:end])


def build_rtp(
    payload_type: int, sequence: int, timestamp: int, ssrc: int, payload: bytes, marker: bool
) -> bytes:
    second = (0x80 if marker else 0) | payload_type
    return struct.pack("!BBHII", 0x80, second, sequence & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc) + payload


class RtpSession(asyncio.DatagramProtocol):
    """One call's media socket. ``on_audio`` gets G.711 payloads in order (a lost packet becomes
    one frame of silence, so the audio clock holds); ``on_digit`` each telephone event once."""

    def __init__(
        self,
        audio_payload_type: int,
        dtmf_payload_type: int | None,
        silence_byte: int,
        on_audio: Callable[[bytes], Awaitable[None]],
        on_digit: Callable[[str], Awaitable[None]],
    ) -> None:
        self.audio_pt = audio_payload_type
        self.dtmf_pt = dtmf_payload_type
        self._silence = bytes([silence_byte]) * FRAME_SAMPLES
        self._on_audio = on_audio
        self._on_digit = on_digit
        self.transport: asyncio.DatagramTransport | None = None
        self.remote: tuple[str, int] | None = None
        self.last_packet_at: float | None = None
        self.packets_in = 0
        self._held: dict[int, bytes] = {}
        self._next: int | None = None
        self._source: int | None = None
        self._digits_seen: set[int] = set()
        self._queue: asyncio.Queue[bytes | str] = asyncio.Queue(500)
        self._ssrc = int.from_bytes(os.urandom(4), "big")
        self._sequence = int.from_bytes(os.urandom(2), "big")
        self._timestamp = int.from_bytes(os.urandom(4), "big")
        self.packets_out = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    # -- receiving --------------------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        packet = parse_rtp(data)
        if packet is None:
            return
        self.last_packet_at = time.monotonic()
        self.packets_in += 1
        if packet.payload_type == self.audio_pt:
            self._hold(packet)
        elif packet.payload_type == self.dtmf_pt and len(packet.payload) >= 4:
            self._telephone_event(packet)

    def _hold(self, packet: RtpPacket) -> None:
        if packet.ssrc != self._source:  # a new stream (the caller's media moved): start over
            self._source = packet.ssrc
            for sequence in sorted(self._held, key=lambda s: (s - (self._next or 0)) & 0xFFFF):
                self._put(self._held.pop(sequence))
            self._next = None
        if self._next is None:
            self._next = packet.sequence
        gap = (packet.sequence - self._next) & 0xFFFF
        if gap > 0x8000:
            return  # older than what was already played out: too late
        if gap > MAX_GAP:  # a new stream (or a long outage): start over from this packet
            for sequence in sorted(self._held, key=lambda s: (s - (self._next or 0)) & 0xFFFF):
                self._put(self._held.pop(sequence))
            self._next = packet.sequence
        self._held[packet.sequence] = packet.payload
        while self._next in self._held or len(self._held) > JITTER_PACKETS:
            payload = self._held.pop(self._next, None)
            self._put(payload if payload is not None else self._silence)
            self._next = (self._next + 1) & 0xFFFF

    def _telephone_event(self, packet: RtpPacket) -> None:
        event = packet.payload[0]
        if event < len(DTMF_DIGITS) and packet.timestamp not in self._digits_seen:
            self._digits_seen.add(packet.timestamp)  # one press: many packets, one timestamp
            self._put(DTMF_DIGITS[event])

    def _put(self, item: bytes | str) -> None:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            log.warning("RTP input is not keeping up; a frame was dropped")

    async def deliver(self) -> None:
        """Hand received audio and digits to the call, in order (runs as the call's task)."""
        while True:
            item = await self._queue.get()
            if isinstance(item, str):
                await self._on_digit(item)
            else:
                await self._on_audio(item)

    # -- sending ----------------------------------------------------------------------------------

    async def send(self, next_frame: Callable[[], bytes]) -> None:
        """Send ``next_frame()`` every 20 ms on an absolute schedule (a late tick does not shift
        the ones after it), to the address the answer named."""
        start = time.monotonic()
        tick = 0
        while True:
            tick += 1
            delay = start + tick * 0.02 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.2:  # the loop stalled: resume from now rather than burst
                start, tick = time.monotonic(), 0
            payload = next_frame()
            if self.transport is None or self.remote is None:
                continue
            data = build_rtp(self.audio_pt, self._sequence, self._timestamp, self._ssrc, payload, False)
            self.transport.sendto(data, self.remote)
            self.packets_out += 1
            self._sequence = (self._sequence + 1) & 0xFFFF
            self._timestamp = (self._timestamp + FRAME_SAMPLES) & 0xFFFFFFFF

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
