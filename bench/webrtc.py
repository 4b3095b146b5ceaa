"""WebRTC against WebSocket on loopback: the latency WebRTC adds to a turn, CPU and memory per call.

A ``parley serve`` process (real engines: Silero VAD, pocketsphinx, espeak-ng; the tests' scripted
LLM, which answers at once) is pinned to core 0; the clients run in this process on core 1.

1. Turn latency, end of speech to first response audio, for the same flite sentence:
   - WebSocket: speech appended in real time (20 ms chunks, then silence); from the send of the last
     speech chunk to the arrival of the first ``response.output_audio.delta`` (a real client adds
     its own playback buffer on top);
   - WebRTC (tests/rtc_client.py, aiortc): speech on the microphone track; from the send of the last
     speech frame to the first frame with speech energy on the inbound track, i.e. through Opus both
     ways, both jitter buffers and the server's real-time pacing.
   The difference of the medians is what WebRTC adds.
2. Idle calls: N calls at once, each sending silence on its track in real time and receiving the
   server's track (50 frames/s, silence); the server's CPU (% of one core) and RSS over a window.

    .venv/bin/python bench/webrtc.py [--turns 5] [--calls 1,4,8] [--window 10]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
import time
from pathlib import Path

import aiohttp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tests.conformance.conftest import Server
from tests.rtc_client import RATE, RtcClient
from tests.speech import flite_speech

from common import percentile, table
from serve_process import LATENCY_COLUMNS, latency_row, pinned_server, run

SENTENCE = "please check my order status"
REPLY = "Your order ships today."
SPEECH_RMS = 300.0


def _rms(pcm: np.ndarray) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if len(pcm) else 0.0


def server_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def server_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def websocket_turn(server: Server) -> float:
    speech = flite_speech(SENTENCE, 24000)
    chunk = 480  # 20 ms
    url = f"{server.ws_base}/realtime?model=gpt-realtime"
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        await ws.receive_json()  # session.created
        start = time.monotonic()
        sent_speech_at = 0.0
        for index in range(0, len(speech) + 24000 * 3, chunk):
            piece = speech[index : index + chunk] if index < len(speech) else np.zeros(0, np.int16)
            piece = np.concatenate([piece, np.zeros(chunk - len(piece), np.int16)])
            await ws.send_str(
                json.dumps(
                    {"type": "input_audio_buffer.append", "audio": base64.b64encode(piece.tobytes()).decode()}
                )
            )
            if index < len(speech):
                sent_speech_at = time.monotonic()
            await asyncio.sleep(max(0.0, start + (index + chunk) / 24000 - time.monotonic()))
            while True:
                try:
                    message = await ws.receive_json(timeout=0.001)
                except TimeoutError:
                    break
                if message["type"] == "response.output_audio.delta":
                    return time.monotonic() - sent_speech_at
    raise RuntimeError("no response audio within 3 s of the end of speech")


async def webrtc_turn(server: Server) -> float:
    rtc = RtcClient()
    try:
        offered = await rtc.connect(f"{server.http_url}/v1/realtime/calls", "sk-bench")
        assert offered.status == 201, offered.body
        await rtc.until("session.created")
        rtc.microphone.play(flite_speech(SENTENCE, RATE))
        await rtc.until("output_audio_buffer.stopped", 60)
        assert rtc.microphone.sent_until is not None
        end = rtc.microphone.sent_until
        for at, pcm in rtc.heard:
            if at > end and _rms(pcm) > SPEECH_RMS:
                return at - end
        raise RuntimeError("no response audio heard")
    finally:
        await rtc.close()


async def idle_calls(server: Server, count: int, window_s: float) -> tuple[float, float]:
    """Server CPU (% of one core) and RSS (MiB) with ``count`` calls open and silent."""
    calls = [RtcClient() for _ in range(count)]
    try:
        for rtc in calls:
            offered = await rtc.connect(f"{server.http_url}/v1/realtime/calls", "sk-bench")
            assert offered.status == 201, offered.body
        for rtc in calls:
            await rtc.until("session.created")
        await asyncio.sleep(2.0)  # settle: every track flowing
        pid = server.process.pid
        ticks, started = server_ticks(pid), time.monotonic()
        await asyncio.sleep(window_s)
        used = (server_ticks(pid) - ticks) / os.sysconf("SC_CLK_TCK")
        return 100 * used / (time.monotonic() - started), server_rss_mib(pid)
    finally:
        for rtc in calls:
            await rtc.close()
        await asyncio.sleep(1.0)


async def bench(args: argparse.Namespace) -> None:
    env = {"PARLEY_WEBRTC_HOST_ADDRESSES": "127.0.0.1"}
    with pinned_server("webrtc", REPLY, args.turns * 2 + 2, env) as server:
        ws: list[float] = []
        rtc: list[float] = []
        for _ in range(args.turns):
            ws.append(await websocket_turn(server))
            rtc.append(await webrtc_turn(server))
        rows = [["path", *LATENCY_COLUMNS], ["websocket", *latency_row(ws)], ["webrtc", *latency_row(rtc)]]
        print("End of speech to first response audio (VAD silence 500 ms + STT + LLM + first TTS chunk):")
        print(table(rows))
        added = (percentile(rtc, 50) - percentile(ws, 50)) * 1000
        print(f"WebRTC adds {added:.0f} ms (median against median)")
        print()
        base_rss = server_rss_mib(server.process.pid)
        rows = [["calls", "server CPU % of a core", "per call %", "server RSS MiB", "per call MiB"]]
        for count in args.calls:
            cpu, rss = await idle_calls(server, count, args.window)
            rows.append(
                [
                    str(count),
                    f"{cpu:.1f}",
                    f"{cpu / count:.1f}",
                    f"{rss:.0f}",
                    f"{(rss - base_rss) / count:.1f}",
                ]
            )
        print(f"Idle calls (silence both ways, real time; server RSS before calls {base_rss:.0f} MiB):")
        print(table(rows))
        per_call = [float(r[2]) for r in rows[1:]]
        print(f"=> about {100 / max(per_call):.0f} idle calls per core (at the most expensive measured size)")


def main() -> None:
    run(__doc__, "WebRTC against WebSocket", "server pinned to core 0, clients on core 1", bench)


if __name__ == "__main__":
    main()
