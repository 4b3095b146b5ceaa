"""SIP calls: the latency from the caller's end of speech to the agent's first audio packet, and how
evenly the agent's RTP is paced with several calls at once.

A ``parley serve`` process with SIP on (no webhook: calls are answered at once; real Silero VAD,
pocketsphinx and espeak-ng; the tests' scripted LLM, which answers at once) is pinned to core 0.
The callers are a minimal SIP user agent in this process (core 1): INVITE with a PCMU offer, ACK,
RTP of a flite sentence in 20 ms packets in real time, BYE. Measured on the caller's side:

1. turn latency: from the send of the last packet of speech to the first packet of the agent's
   answer with speech energy (the same sentence over a WebSocket, to the first
   ``response.output_audio.delta``, is in bench/webrtc.py);
2. pacing: with N calls open, the gaps between the agent's RTP packets at the caller (20 ms when
   perfect): p50, p99 and max of |gap - 20 ms|, while every call listens to silence.

    .venv/bin/python bench/sip.py [--turns 5] [--calls 1,4,8] [--window 10]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import itertools

from tests.conformance.conftest import free_port
from tests.sip_peer import RtpEar
from tests.speech import flite_speech

from common import percentile, table
from parley import ids
from parley.audio import g711
from parley.transports.sip.message import parse
from parley.transports.sip.rtp import build_rtp
from serve_process import LATENCY_COLUMNS, latency_row, pinned_server, run

SENTENCE = "please check my order status"
SPEECH_RMS = 300.0


class Caller(RtpEar):
    """A SIP caller: its media socket records what it hears and sends what it says."""

    sent = 0

    async def call(self, sip_port: int) -> tuple[asyncio.DatagramTransport, tuple[str, int], str]:
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[bytes] = loop.create_future()

        class Signalling(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                if data.startswith(b"SIP/2.0 200") and not answered.done():
                    answered.set_result(data)

        sip, _ = await loop.create_datagram_endpoint(Signalling, local_addr=("127.0.0.1", 0))
        local = sip.get_extra_info("sockname")[1]
        call_id, tag = ids.new_id("bench-"), ids.new_id("", 8)
        sdp = (
            f"v=0\r\no=b 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {self.port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
        )
        head = (
            f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{ids.new_id('', 10)}\r\n"
            f"From: <sip:bench@127.0.0.1:{local}>;tag={tag}\r\nCall-ID: {call_id}\r\nMax-Forwards: 70\r\n"
        )
        invite = (
            f"INVITE sip:agent@127.0.0.1:{sip_port} SIP/2.0\r\n{head}To: <sip:agent@127.0.0.1>\r\n"
            f"CSeq: 1 INVITE\r\nContact: <sip:bench@127.0.0.1:{local}>\r\nContent-Type: application/sdp\r\n"
            f"Content-Length: {len(sdp)}\r\n\r\n{sdp}"
        )
        sip.sendto(invite.encode(), ("127.0.0.1", sip_port))
        ok = parse(await asyncio.wait_for(answered, 30))
        to = ok.header("to") or ""
        ack = f"ACK sip:agent@127.0.0.1:{sip_port} SIP/2.0\r\n{head}To: {to}\r\nCSeq: 1 ACK\r\n"
        ack += "Content-Length: 0\r\n\r\n"
        sip.sendto(ack.encode(), ("127.0.0.1", sip_port))
        media = ok.body.decode().split("m=audio ", 1)[1].split()[0]
        return sip, ("127.0.0.1", int(media)), f"{head}To: {to}\r\n"

    async def say(self, pcm8k: np.ndarray, to: tuple[str, int]) -> float:
        """Send ``pcm8k`` in real time; the time the last packet left."""
        assert self.transport is not None
        payload = g711.ulaw_encode(pcm8k)
        start = time.monotonic()
        for index in range(0, len(payload), 160):
            self.sent += 1
            packet = build_rtp(0, self.sent, self.sent * 160, 1234, payload[index : index + 160], False)
            self.transport.sendto(packet, to)  # type: ignore[attr-defined]
            await asyncio.sleep(max(0.0, start + (index + 160) / 8000 - time.monotonic()))
        return time.monotonic()


async def hang_up(sip: asyncio.DatagramTransport, sip_port: int, dialog: str) -> None:
    bye = f"BYE sip:agent@127.0.0.1:{sip_port} SIP/2.0\r\n{dialog}CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    sip.sendto(bye.encode(), ("127.0.0.1", sip_port))
    await asyncio.sleep(0.2)
    sip.close()


async def new_caller() -> Caller:
    loop = asyncio.get_running_loop()
    _, caller = await loop.create_datagram_endpoint(Caller, local_addr=("127.0.0.1", 0))
    return caller


async def turn(sip_port: int) -> float:
    caller = await new_caller()
    sip, media, dialog = await caller.call(sip_port)
    silence = np.zeros(8000, dtype=np.int16)
    ended = await caller.say(np.concatenate([silence, flite_speech(SENTENCE, 8000)]), media)
    quiet = caller.say(np.zeros(8000 * 4, dtype=np.int16), media)
    await quiet
    await hang_up(sip, sip_port, dialog)
    caller.close()
    for at, _, payload in caller.packets:
        if at > ended and float(np.sqrt(np.mean(g711.ulaw_decode(payload).astype(float) ** 2))) > SPEECH_RMS:
            return at - ended
    raise RuntimeError("the agent did not answer")


async def pacing(sip_port: int, count: int, window_s: float) -> list[float]:
    callers = [await new_caller() for _ in range(count)]
    calls = [await c.call(sip_port) for c in callers]
    await asyncio.sleep(1.0)
    started = time.monotonic()
    talking = [
        c.say(np.zeros(int(8000 * window_s), dtype=np.int16), call[1])
        for c, call in zip(callers, calls, strict=True)
    ]
    await asyncio.gather(*talking)
    gaps: list[float] = []
    for caller in callers:
        times = [at for at, _, _ in caller.packets if at >= started]
        gaps += [abs(b - a - 0.02) for a, b in itertools.pairwise(times)]
    for caller, (sip, _, dialog) in zip(callers, calls, strict=True):
        await hang_up(sip, sip_port, dialog)
        caller.close()
    return gaps


async def bench(args: argparse.Namespace) -> None:
    sip_port = free_port()
    with pinned_server("sip", "Your order ships today.", args.turns + 2, {"PARLEY_SIP_PORT": str(sip_port)}):
        latencies = [await turn(sip_port) for _ in range(args.turns)]
        print("End of the caller's speech to the agent's first audio packet (PCMU, VAD silence 500 ms):")
        print(table([LATENCY_COLUMNS, latency_row(latencies)]))
        print()
        rows = [["calls", "packets", "|gap - 20 ms| p50", "p99", "max"]]
        for count in args.calls:
            gaps = await pacing(sip_port, count, args.window)
            values = [percentile(gaps, 50), percentile(gaps, 99), max(gaps)]
            rows.append([str(count), str(len(gaps)), *(f"{v * 1000:.2f} ms" for v in values)])
        print("Pacing of the agent's RTP at the caller, every call listening to silence:")
        print(table(rows))


def main() -> None:
    run(__doc__, "SIP calls", "server pinned to core 0, callers on core 1", bench)


if __name__ == "__main__":
    main()
