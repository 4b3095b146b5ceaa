"""Server overhead per turn: commit -> first ``response.output_audio.delta`` with instant fake engines.

Over a real loopback WebSocket to an in-process server, with ``turn_detection: null``, each turn
appends 1 s of audio in 100 ms appends, then sends ``input_audio_buffer.commit`` and at once
``response.create``, and times from sending the commit to receiving the first audio delta. The
engines answer instantly (a fixed transcript, one short sentence, a tone for speech), so the figure
is Parley's own plumbing: event parsing, items, tasks, the sentence chunker, JSON and the socket.

Client and server share one thread, so besides wall-clock time the table shows the CPU time the
process spent over the same interval (``time.thread_time``): on a busy machine wall time also holds
the waits for a core, CPU time does not.

    .venv/bin/python bench/turn_overhead.py [-n 200] [--warmup 20] [--burst] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Run as a script: the benchmarks (common) and the repository root (tests) on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tests.fakes import FakeLLM, FakeSTT, FakeTTS, fake_engines, text_reply

from common import (
    WIRE_RATE,
    RealtimeClient,
    counted_parser,
    header,
    ms,
    pcm_chunks,
    percentile,
    run_and_report,
    running_server,
    table,
)
from parley.config import Settings

TRANSCRIPT = "What is the weather like today?"
REPLY = "It is sunny and warm today."
TARGET_P50_MS = 5.0
TARGET_P95_MS = 15.0
FIRST_AUDIO = "response.output_audio.delta"
MILESTONES = (
    "input_audio_buffer.committed",
    "response.created",
    "response.output_audio_transcript.delta",
    FIRST_AUDIO,
    "response.done",
)


@dataclass
class Results:
    """Seconds from sending the commit to each milestone event, one entry per measured turn."""

    wall: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in MILESTONES})
    cpu: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in MILESTONES})
    drain: list[float] = field(default_factory=list)
    """Seconds from the last append sent until the server had handled all ten."""


@dataclass
class Turn:
    wall: dict[str, float]
    cpu: dict[str, float]
    drain: float | None


def one_second_of_audio() -> bytes:
    t = np.arange(WIRE_RATE) / WIRE_RATE
    return (np.sin(2 * np.pi * 220 * t) * 6000).astype("<i2").tobytes()


async def run_turn(client: RealtimeClient, chunks: list[bytes], burst: bool) -> Turn:
    for chunk in chunks:
        await client.append_audio(chunk)
    drain = None
    if not burst:
        # A client streaming at real time sends its last append ~100 ms before the commit, by when
        # the server has handled every append; wait until it has, so the figure is the turn's own
        # overhead and not a backlog of appends sent faster than real time.
        drain = await client.barrier()
    since = client.mark()
    commit = await client.send({"type": "input_audio_buffer.commit"})
    await client.send({"type": "response.create"})
    done = await client.wait_for("response.done", since)
    status = done.event["response"]["status"]
    if status != "completed":
        raise RuntimeError(f"response ended {status}: {done.event['response'].get('status_details')}")
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for received in client.events[since:]:
        if received.type in MILESTONES and received.type not in wall:
            wall[received.type] = received.at - commit.at
            cpu[received.type] = received.cpu - commit.cpu
    missing = [m for m in MILESTONES if m not in wall]
    if missing:
        raise RuntimeError(f"turn without {missing}")
    return Turn(wall, cpu, drain)


async def bench(args: argparse.Namespace) -> Results:
    total = args.iterations + args.warmup
    engines = fake_engines(
        stt=FakeSTT(transcripts=[TRANSCRIPT] * total),
        llm=FakeLLM(replies=[text_reply(REPLY) for _ in range(total)]),
        tts=FakeTTS(),
    )
    chunks = pcm_chunks(one_second_of_audio(), 100)
    results = Results()
    profiler = cProfile.Profile() if args.profile else None
    # Budgets high enough that hundreds of turns a minute are never refused.
    settings = Settings(requests_per_minute=1_000_000, tokens_per_minute=1_000_000_000)
    done = 0
    async with running_server(settings, engines) as server:
        while done < total:
            async with RealtimeClient.connect(server.ws_url) as client:
                await client.wait_for("session.created")
                await client.session_update({"audio": {"input": {"turn_detection": None}}})
                in_session = 0
                while done < total and (args.turns_per_session <= 0 or in_session < args.turns_per_session):
                    measured = done >= args.warmup
                    if measured and profiler is not None:
                        profiler.enable()
                    turn = await run_turn(client, chunks, args.burst)
                    if measured and profiler is not None:
                        profiler.disable()
                    if measured:
                        for name in MILESTONES:
                            results.wall[name].append(turn.wall[name])
                            results.cpu[name].append(turn.cpu[name])
                        if turn.drain is not None:
                            results.drain.append(turn.drain)
                    done += 1
                    in_session += 1
                    client.events.clear()  # keep the client's record (and its scans) small
    if profiler is not None:
        print_profile(profiler)
    return results


def print_profile(profiler: cProfile.Profile) -> None:
    for sort in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(sort).print_stats(30)
        print(f"-- cProfile of the measured turns (client and server share the process), by {sort} --")
        print(out.getvalue())


def report(results: Results, args: argparse.Namespace) -> None:
    per_session = "all" if args.turns_per_session <= 0 else str(args.turns_per_session)
    appends = "sent in a burst, commit right after" if args.burst else "drained before the commit"
    header(
        "turn overhead: commit -> first response.output_audio.delta (fake instant engines)",
        f"turns: {args.iterations} measured after {args.warmup} warm-up | turns per session: {per_session}\n"
        f"1 s of 24 kHz PCM in 100 ms appends ({appends}), turn_detection null, "
        "loopback WebSocket, client and server in one process",
    )
    rows = [["from commit sent to (ms)", "p50", "p95", "p99", "max", "cpu p50", "cpu p95"]]
    for name in MILESTONES:
        wall, cpu = results.wall[name], results.cpu[name]
        rows.append(
            [
                name + (" (*)" if name == FIRST_AUDIO else ""),
                ms(percentile(wall, 50)),
                ms(percentile(wall, 95)),
                ms(percentile(wall, 99)),
                ms(max(wall)),
                ms(percentile(cpu, 50)),
                ms(percentile(cpu, 95)),
            ]
        )
    if results.drain:
        drain = results.drain
        rows.append(
            [
                "(last append sent -> appends handled)",
                ms(percentile(drain, 50)),
                ms(percentile(drain, 95)),
                ms(percentile(drain, 99)),
                ms(max(drain)),
                "",
                "",
            ]
        )
    print(table(rows))
    wall = results.wall[FIRST_AUDIO]
    p50, p95 = percentile(wall, 50) * 1000, percentile(wall, 95) * 1000
    print(
        f"(*) the figure, wall clock: p50 {p50:.2f} ms (target <= {TARGET_P50_MS:g}), "
        f"p95 {p95:.2f} ms (target <= {TARGET_P95_MS:g})"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = counted_parser(__doc__, "iterations", "turns", 200, 20, "turns run first and not measured")
    parser.add_argument(
        "--turns-per-session",
        type=int,
        default=0,
        help="open a new session after this many turns; 0 keeps one session for all (default 0)",
    )
    parser.add_argument(
        "--burst",
        action="store_true",
        help="commit right after the appends instead of waiting until the server has handled them "
        "(the figure then includes the backlog of ten appends)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the measured turns and print the top"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    run_and_report(bench, report, parse_args(argv))


if __name__ == "__main__":
    main()
