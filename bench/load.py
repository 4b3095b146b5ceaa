"""Load: how many sessions streaming real-time audio one server core holds, and what each costs.

The server runs in a child process pinned to one CPU (every thread of it, so helper threads of
native code share that core too) with the real input path: the real Silero VAD (``vad`` default),
resampling and ``server_vad`` turn detection with its defaults, and fake instant STT, LLM and TTS
from ``tests/fakes.py`` (``--engines real``: pocketsphinx, espeak and the ``echo`` language model),
so what is measured is Parley's own cost of listening, not a speech engine's. This process, pinned to
the other CPUs, is the load: N WebSocket sessions, each appending ``--chunk-ms`` of 24 kHz PCM16 in
real time on an absolute schedule (chunk k is due at start + k x chunk, whatever the previous sends
took), starting at a random point of a loop of speech and pauses (flite sentences, or vowel-like
bursts without flite, or ``--wav``), so that VAD opens and closes turns and every turn is committed
and answered with audio.

The sweep adds sessions step by step (10, 25, 50, 75, 100, 125, 150, 200, ... up to ``--max``); each
step has a warm-up, then ``--seconds`` measured. Its row: the server process's CPU (and the core's,
other processes included), the **event-loop lag** of the server (a task inside it sleeps 10 ms again
and again; lag is how late it wakes up), p50/p99/max over the window, the server's RSS and RSS per
session (over the RSS before any session), how fast it grows per session, turns answered, the
client-observed time from ``input_audio_buffer.speech_stopped`` to the first
``response.output_audio.delta``, how late the client's sends were, and errors (``error`` events,
failed responses, disconnects, failed connects). The sweep stops after the first step whose lag p99
is above ``--target-ms`` (50 ms), then bisects (``--refine``, 2 steps) between it and the last step
under the target, closing or opening sessions. ``--engines real`` sweeps 2, 4, 6, 8, 10, 12, 15, 20, ...
``--quick``: 10, 25, 50 sessions (real: 2, 5, 10), 5 s each.

    .venv/bin/python bench/load.py [--seconds 20] [--max 300] [--chunk-ms 20] [--engines fake|real]
        [--quick] [--steps 10,25,50] [--warmup 5] [--target-ms 50] [--refine 2] [--core N] [--wav PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Run as a script: the benchmarks (common) and the repository root (tests) on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import load_server
from common import WIRE_RATE, header, percentile, table
from load_server import ServerProcess, core_ticks, cpu_seconds, pin_process
from load_sessions import Load, Window, append_events, speech_loop

TARGET_P99_MS = 50.0
DEFAULT_STEPS = (10, 25, 50, 75, 100, 125, 150, 200, 250, 300, 400, 500, 600, 800, 1000)
QUICK_STEPS = (10, 25, 50)
REAL_STEPS = (2, 4, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 75, 100)
"""With pocketsphinx listening to every turn a core holds far fewer sessions."""
QUICK_REAL_STEPS = (2, 5, 10)


# -------------------------------------------------------------------------------------- the sweep


@dataclass
class Row:
    sessions: int
    server: dict[str, Any]
    core_pct: float
    window: Window
    client_cpu_pct: float
    errors: int
    rss0_kib: int
    open_kib: float
    """RSS added per session by opening the sessions of this step, before they had streamed much."""
    after_shrink: bool
    """Measured after sessions were closed (a refinement step): the memory figures are not shown."""
    refine: bool = False

    @property
    def lag_p99_ms(self) -> float:
        return float(self.server["lag_p99"]) * 1000


def fmt(value: float, digits: int = 1) -> str:
    return "-" if value != value else f"{value:.{digits}f}"  # NaN: nothing measured


COLUMNS = (
    "sessions",
    "server CPU %",
    "core %",
    "lag p50",
    "p99",
    "max",
    "RSS MiB",
    "MiB/sess",
    "open MiB/sess",
    "KiB/s/sess",
    "turns",
    "answer p50",
    "p99",
    "send late p99",
    "client CPU %",
    "errors",
)
LEGEND = """\
server CPU %: the server process, all threads | core %: every process on the server's CPU
lag: how late the server's event loop woke from a 10 ms sleep, ms (p50, p99, max)
RSS: the server process's resident memory at the end of the window; MiB/sess: (RSS - RSS with no
  session) / sessions; open MiB/sess: RSS added per session by opening this step's sessions (before
  they had streamed); KiB/s/sess: RSS growth over the window / sessions / seconds
turns: responses completed in the window; answer: speech_stopped -> first response.output_audio.delta,
  received by the client, ms (p50, p99)
send late: how late the client's sends left against their schedule, ms; client CPU %: this process"""
REFINED = """\
*: a refinement step between the last step that met the lag target and the first that did not,
  reached by closing sessions (memory figures not shown: RSS keeps what closed sessions freed)"""


def print_table(rows: list[Row]) -> None:
    lines = [list(COLUMNS)]
    for row in rows:
        s, w = row.server, row.window
        n = row.sessions
        rss, mark = s["rss_kib"], s["rss_mark_kib"]
        memory = n > 0 and not row.after_shrink
        lines.append(
            [
                f"{n}*" if row.refine else str(n),
                fmt(s["cpu_pct"]),
                fmt(row.core_pct),
                fmt(s["lag_p50"] * 1000, 2),
                fmt(s["lag_p99"] * 1000, 2),
                fmt(s["lag_max"] * 1000, 1),
                fmt(rss / 1024),
                fmt((rss - row.rss0_kib) / 1024 / n, 2) if memory else "-",
                fmt(row.open_kib / 1024, 2) if memory else "-",
                fmt((rss - mark) / n / s["wall"], 1) if memory else "-",
                str(w.responses["completed"]),
                fmt(percentile(w.answer, 50) * 1000, 1),
                fmt(percentile(w.answer, 99) * 1000, 1),
                fmt(percentile(w.late, 99) * 1000, 1),
                fmt(row.client_cpu_pct),
                str(row.errors),
            ]
        )
    print(table(lines))
    print(LEGEND)
    if any(row.refine for row in rows):
        print(REFINED)


def steps_for(args: argparse.Namespace) -> list[int]:
    if args.steps:
        steps = sorted({int(s) for s in args.steps.split(",") if s.strip()})
    else:
        base: tuple[int, ...]
        if args.engines == "real":
            base = QUICK_REAL_STEPS if args.quick else REAL_STEPS
        else:
            base = QUICK_STEPS if args.quick else DEFAULT_STEPS
        steps = [n for n in base if n <= args.max]
        if not args.quick and args.max < base[-1] and args.max not in steps:
            steps.append(args.max)
    return [n for n in steps if 0 < n <= args.max] or [args.max]


async def measure(
    server: ServerProcess, load: Load, n: int, warmup_s: float, seconds: float, core: int | None, rss0: int
) -> Row:
    errors_before = len(load.errors)
    opened_before = load.open
    rss_before = (await server.command("rss"))["rss_kib"]
    await load.resize(n)
    rss_opened = (await server.command("rss"))["rss_kib"]
    opened = load.open - opened_before
    open_kib = (rss_opened - rss_before) / opened if opened > 0 else float("nan")
    await asyncio.sleep(warmup_s)
    await server.command("mark")
    load.mark()
    ticks = core_ticks(core) if core is not None else (0, 0)
    await asyncio.sleep(seconds)
    stats = await server.command("stats")
    window, load.window = load.window, Window()  # what follows (the next warm-up) is not this step's
    busy, total = core_ticks(core) if core is not None else (0, 0)
    core_pct = 100 * (busy - ticks[0]) / (total - ticks[1]) if total > ticks[1] else float("nan")
    client_cpu = 100 * (cpu_seconds() - window.cpu) / (time.monotonic() - window.wall)
    if stats["sessions"] != load.open:
        load.error(f"{n} sessions opened: the server has {stats['sessions']} open, the client {load.open}")
    errors = len(load.errors) - errors_before
    return Row(n, stats, core_pct, window, client_cpu, errors, rss0, open_kib, load.shrunk)


async def bench(args: argparse.Namespace) -> int:
    allowed = sorted(os.sched_getaffinity(0))
    core = args.core if args.core is not None else allowed[-1]
    if core not in allowed:
        raise SystemExit(f"--core {core}: this process may only run on CPUs {allowed}")
    others = [c for c in allowed if c != core]
    steps = steps_for(args)
    pcm, source = speech_loop(args.wav)
    messages = append_events(pcm, args.chunk_ms)
    engines = (
        "fake instant STT, LLM and TTS (tests/fakes.py)"
        if args.engines == "fake"
        else "pocketsphinx, espeak, echo LLM"
    )
    header(
        "load: concurrent real-time sessions on one server core",
        f"server: one process pinned to CPU {core}, real Silero VAD and input path (server_vad defaults), "
        f"{engines}\n"
        f"client: this process on CPU {','.join(map(str, others)) or f'{core} (shared!)'}, each session "
        f"appends {args.chunk_ms} ms of 24 kHz PCM16 in real time from a random point of {source}\n"
        f"steps: {', '.join(map(str, steps))} sessions | {args.warmup:g} s warm-up, then {args.seconds:g} s "
        f"measured | lag target p99 <= {args.target_ms:g} ms",
    )
    if others:
        pin_process(set(others))  # after the header, whose core count is this process's affinity
    started = time.monotonic()
    rows: list[Row] = []
    load: Load | None = None
    server = await ServerProcess.start(args.engines, core)
    try:
        async with Load(server.ws_url, messages, args.chunk_ms, args.seed) as load:
            await asyncio.sleep(1.0)
            idle = await server.command("stats")
            rss0 = int(idle["rss_kib"])
            rows.append(await measure(server, load, 0, 0.0, min(args.seconds, 5.0), core, rss0))
            print(f"-- idle server: RSS {rss0 / 1024:.1f} MiB", file=sys.stderr, flush=True)

            async def step(n: int, refine: bool = False) -> Row:
                row = await measure(server, load, n, args.warmup, args.seconds, core, rss0)
                row.refine = refine
                rows.append(row)
                print(
                    f"-- {n} sessions: lag p99 {row.lag_p99_ms:.2f} ms, server CPU "
                    f"{row.server['cpu_pct']:.0f} %, errors {row.errors}",
                    file=sys.stderr,
                    flush=True,
                )
                return row

            good = 0
            for n in steps:
                row = await step(n)
                if load.open < n:
                    return 0  # sessions could not be opened: the errors say why
                if row.lag_p99_ms > args.target_ms:
                    # Bisect between the last step that met the target and this one.
                    bad = n
                    for _ in range(args.refine):
                        middle = round((good + bad) / 2)
                        if bad - good <= max(2, bad // 20):
                            break
                        if (await step(middle, refine=True)).lag_p99_ms > args.target_ms:
                            bad = middle
                        else:
                            good = middle
                    break
                good = n
    finally:
        await server.stop()
        if rows:
            report(rows, load, args, time.monotonic() - started)
    return 0


def report(rows: list[Row], load: Load | None, args: argparse.Namespace, elapsed: float) -> None:
    print()
    print_table(rows)
    measured = [r for r in rows if r.sessions]
    good = [r for r in measured if r.lag_p99_ms <= args.target_ms]
    if good:
        best = max(good, key=lambda r: r.sessions)
        above = [r for r in measured if r.sessions > best.sessions and r.lag_p99_ms > args.target_ms]
        line = (
            f"largest N with lag p99 <= {args.target_ms:g} ms: {best.sessions} sessions "
            f"(p99 {best.lag_p99_ms:.1f} ms, {best.server['cpu_pct']:.0f} % of the core)"
        )
        if above:
            first = min(above, key=lambda r: r.sessions)
            line += f"; {first.sessions} had p99 {first.lag_p99_ms:.1f} ms"
        else:
            line += " (every step met it)"
        print(line)
    elif measured:
        print(f"no step met lag p99 <= {args.target_ms:g} ms (the smallest: {measured[0].lag_p99_ms:.1f} ms)")
    if load is not None:
        errors = load.errors
        print(f"errors: {len(errors)}" + (" (target: none)" if errors else ""))
        for message, count in Counter(errors).most_common(5):
            print(f"  {count} x {message}")
    warnings = rows[-1].server.get("warnings", 0)
    if warnings:
        print(f"server warnings: {warnings}; the first: {rows[-1].server.get('warning_samples')}")
    late = [r for r in measured if r.client_cpu_pct > 90 or percentile(r.window.late, 99) > 0.05]
    if late:
        print(
            f"!! the client fell behind at {', '.join(str(r.sessions) for r in late)} sessions "
            "(sends late or its core busy): those rows understate the load"
        )
    one, five, _ = os.getloadavg()
    print(f"took {elapsed:.0f} s | load average at the end: {one:.2f} (1 min), {five:.2f} (5 min)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seconds", type=float, default=None, help="measured seconds per step (default 20, --quick 5)"
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="seconds after adding sessions before measuring (default 5)",
    )
    parser.add_argument("--max", type=int, default=300, help="most sessions (default 300)")
    parser.add_argument("--steps", help="comma-separated session counts instead of the default sweep")
    parser.add_argument("--chunk-ms", type=int, default=20, help="ms of audio per append (default 20)")
    parser.add_argument("--engines", choices=("fake", "real"), default="fake")
    parser.add_argument("--target-ms", type=float, default=TARGET_P99_MS, help="lag p99 target (default 50)")
    parser.add_argument("--core", type=int, help="the CPU of the server (default: the last one allowed)")
    parser.add_argument("--wav", type=Path, help="a 16-bit WAV of speech to stream instead of flite's")
    parser.add_argument(
        "--refine",
        type=int,
        default=None,
        help="bisection steps between the last step under the target and the first above (default 2, "
        "--quick 0)",
    )
    parser.add_argument("--seed", type=int, default=0, help="where in the loop each session starts")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a sanity run: 10, 25, 50 sessions (real engines: 2, 5, 10), 5 s each, no refinement",
    )
    parser.add_argument(load_server.CHILD_FLAG, action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = 5.0 if args.quick else 20.0
    if args.warmup is None:
        args.warmup = 2.0 if args.quick else 5.0
    if args.refine is None:
        args.refine = 0 if args.quick else 2
    if not 10 <= args.chunk_ms <= 1000 or (WIRE_RATE * args.chunk_ms) % 1000:
        parser.error("--chunk-ms must be 10..1000 ms")
    if args.max < 1:
        parser.error("--max must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_child:
        load_server.serve_child(args.engines, args.core)
        return 0
    if not hasattr(os, "sched_setaffinity"):
        print("load.py needs Linux (CPU affinity, /proc)", file=sys.stderr)
        return 2
    try:
        return asyncio.run(bench(args))
    except load_server.ServerGone as exc:
        print(f"!! {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; the server process was stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
