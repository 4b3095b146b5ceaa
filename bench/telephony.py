"""Phone calls through the Twilio bridge: turn latency against the WebSocket path, and the pacing of
the agent's audio with several calls at once.

A ``parley serve`` process (real engines: Silero VAD, pocketsphinx, espeak-ng; the tests' scripted
LLM, which answers at once; a long ``PARLEY_PHONE_GREETING``) is pinned to core 0; the callers run in
this process on core 1. Callers are tests/twilio_sim.py, which speaks Twilio's Media Streams protocol:
20 ms µ-law frames in real time (speech, then the line's silence), and plays what comes back on its
own real-time clock, echoing marks.

1. Turn latency, from the caller's end of speech (the send of the last speech frame) to the first
   agent audio packet on the phone leg, for the same flite sentence, several turns in one call:
   - bridge: the first ``media`` frame Twilio gets after the caller stopped;
   - WebSocket: a client of ``/v1/realtime`` in ``audio/pcmu`` both ways (what a hand-written Twilio
     bridge in front of the Realtime API would do), streaming the same frames; the first
     ``response.output_audio.delta`` (such a bridge forwards it at once).
2. Pacing: N calls at once, each playing the greeting; the inter-arrival time of the ``media`` frames
   at the phone against the 20 ms they each hold (|gap - 20 ms|, p50/p99/max over every frame of
   every call), and the playback rate (audio sent / time taken; 1.0 is real time).

    .venv/bin/python bench/telephony.py [--turns 5] [--calls 1,4,8]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import os
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tests.conformance.conftest import Server
from tests.speech import flite_speech
from tests.twilio_sim import FRAME, RATE, SILENCE, Media, TwilioSim

from common import percentile, table
from parley.audio.pcm import PCMU
from serve_process import LATENCY_COLUMNS, latency_row, pinned_server, run

SENTENCE = "please check my order status"
REPLY = "Your order ships today."
GREETING = (
    "Thank you for calling Acme. This call may be recorded for quality and training. You are speaking "
    "with an automated assistant. Tell us in a few words how we can help you today, and we will do "
    "our best to answer your question right away."
)
STREAM = "/v1/telephony/twilio"


async def bridge_turns(server: Server, turns: int) -> list[float]:
    latencies: list[float] = []
    async with TwilioSim(
        f"ws://{server.host}:{server.port}{STREAM}", call_sid="CA" + os.urandom(16).hex()
    ) as sim:
        await sim.start()
        greeting = await sim.until("mark", timeout=120)
        await sim.until_echoed(greeting.message["mark"]["name"], timeout=120)
        for _ in range(turns):
            since = len(sim.received)
            sim.say(flite_speech(SENTENCE, RATE))
            mark = await sim.until("mark", since=since, timeout=120)
            assert sim.sent_until is not None
            first = next(m for m in sim.media if m.at > sim.sent_until)
            latencies.append(first.at - sim.sent_until)
            await sim.until_echoed(mark.message["mark"]["name"], timeout=120)
            await asyncio.sleep(0.5)
        await sim.stop()
    return latencies


async def websocket_turns(server: Server, turns: int) -> list[float]:
    latencies: list[float] = []
    speech = PCMU.encode(flite_speech(SENTENCE, RATE))
    frames = [speech[i : i + FRAME].ljust(FRAME, SILENCE[:1]) for i in range(0, len(speech), FRAME)]
    pcmu = {"format": {"type": "audio/pcmu"}}
    update = {
        "type": "session.update",
        "session": {"type": "realtime", "audio": {"input": pcmu, "output": pcmu}},
    }
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{server.ws_base}/realtime?model=gpt-realtime") as ws,
    ):
        await ws.send_str(json.dumps(update))
        start, sent = time.monotonic(), 0
        for _ in range(turns):
            queued = list(frames)
            ended_at = 0.0
            first: float | None = None
            done = False
            while not done or time.monotonic() - ended_at < 3.0:  # the reply plays, then a pause
                frame = queued.pop(0) if queued else SILENCE
                payload = base64.b64encode(frame).decode()
                await ws.send_str(json.dumps({"type": "input_audio_buffer.append", "audio": payload}))
                if queued == [] and ended_at == 0.0:
                    ended_at = time.monotonic()
                sent += 1
                while (wait := start + sent * 0.02 - time.monotonic()) > 0:
                    try:
                        message = await ws.receive_json(timeout=wait)
                    except TimeoutError:
                        break
                    if message["type"] == "response.output_audio.delta" and first is None:
                        first = time.monotonic()
                    elif message["type"] == "response.done":
                        done = True
                    elif message["type"] == "error":
                        raise RuntimeError(message["error"])
            assert first is not None
            latencies.append(first - ended_at)
    return latencies


def gaps(media: list[Media]) -> list[float]:
    return [abs(b.at - a.at - 0.02) for a, b in itertools.pairwise(media)]


async def pacing(server: Server, count: int) -> tuple[list[float], list[float]]:
    """Every frame's |gap - 20 ms| and each call's playback rate, ``count`` calls greeting at once."""
    url = f"ws://{server.host}:{server.port}{STREAM}"
    sims = [TwilioSim(url, call_sid="CA" + os.urandom(16).hex()) for _ in range(count)]
    for sim in sims:
        await sim.__aenter__()
    try:
        await asyncio.gather(*(sim.start() for sim in sims))
        marks = await asyncio.gather(*(sim.until("mark", timeout=180) for sim in sims))
        deviations: list[float] = []
        rates: list[float] = []
        for sim, mark in zip(sims, marks, strict=True):
            media = [m for m in sim.media if m.at <= mark.at]
            deviations += gaps(media)
            rates.append(len(media) * 0.02 / (media[-1].at - media[0].at + 0.02))
        await asyncio.gather(*(sim.stop() for sim in sims))
        return deviations, rates
    finally:
        for sim in sims:
            await sim.__aexit__(None, None, None)
        await asyncio.sleep(1.0)


async def bench(args: argparse.Namespace) -> None:
    env = {"PARLEY_PHONE_GREETING": GREETING}
    with pinned_server("telephony", REPLY, args.turns * 2 + 2, env) as server:
        bridge = await bridge_turns(server, args.turns)
        ws = await websocket_turns(server, args.turns)
        rows = [
            ["path", *LATENCY_COLUMNS],
            ["twilio bridge", *latency_row(bridge)],
            ["websocket pcmu", *latency_row(ws)],
        ]
        print(
            "Caller's end of speech to the first agent audio packet (VAD silence 500 ms + STT + LLM + TTS):"
        )
        print(table(rows))
        added = (percentile(bridge, 50) - percentile(ws, 50)) * 1000
        print(f"The bridge adds {added:.0f} ms (median against median)")
        print()
        rows = [["calls", "frames", "|gap-20ms| p50 ms", "p99 ms", "max ms", "rate min", "rate max"]]
        for count in args.calls:
            deviations, rates = await pacing(server, count)
            stats = [percentile(deviations, 50), percentile(deviations, 99), max(deviations)]
            rates_text = [f"{min(rates):.3f}", f"{max(rates):.3f}"]
            rows.append(
                [str(count), str(len(deviations) + count), *(f"{v * 1000:.2f}" for v in stats), *rates_text]
            )
        print("Outbound pacing at the phone (each call plays the greeting; rate 1.000 = real time):")
        print(table(rows))


def main() -> None:
    title = "Twilio bridge against WebSocket"
    run(__doc__, title, "server pinned to core 0, callers on core 1", bench, window=False)


if __name__ == "__main__":
    main()
