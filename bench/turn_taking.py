"""Turn taking through the real session engine: end of turn, barge-in and the cost of listening.

Every stimulus (``bench/turn_sounds.py``) goes through a fresh ``RealtimeSession`` in this process (no
socket) with the real Silero VAD and pocketsphinx STT (``--stt`` picks another recogniser, with
``--noise-reduction`` the sessions clean their input with RNNoise), a language model that streams
words until it is cancelled and a TTS that returns a tone. Audio goes in as
``input_audio_buffer.append`` events of 20 ms (base64 PCM16, 24 kHz) as fast as the session takes
them, with ``await asyncio.sleep(0)`` between appends. Every emitted event is stamped with the
*input position*: the ms of audio appended to the session so far. All timings below are in that audio
time, so they do not depend on the machine's speed.

* **End of turn** (``server_vad`` with its defaults, with a null recogniser unless ``--server-vad-stt``;
  ``semantic_vad`` with eagerness low, medium, high; ``create_response`` off): 42 utterances with 1-2
  pauses of 600-1500 ms where the sentence is clearly unfinished and 10 without, 500 ms before the
  speech and 4 s after it (then more background, up to 10 s, while a turn is still open).
  *Premature*: the first ``speech_stopped`` was emitted before the true end of the speech. *Endpoint
  delay*: position at which the final ``speech_stopped`` was emitted minus the true end, over the
  utterances that were not premature; for ``server_vad`` also at every silence after speech (the 48
  inner pauses and the 52 ends), from its start to the first ``speech_stopped`` within it. Also the
  error of ``audio_end_ms`` against the true end, of ``audio_start_ms + prefix_padding_ms`` against
  the true onset, and how far into the speech ``speech_started`` was emitted.
* **Barge-in** (``server_vad`` defaults, ``interrupt_response`` on): a response is started and has
  produced audio, then 300 ms of background, the stimulus, 1.5 s of background. A *false barge-in* is
  a cough, click, knock, noise burst, thump or backchannel that led to ``response.done`` cancelled with
  reason ``turn_detected`` or to ``speech_started``; a *missed barge-in* is a real interruption of at
  least 0.5 s of speech that did not cancel the response. *Barge-in delay*: position at which the
  cancelled ``response.done`` was emitted minus the true onset.
* **Cost**: CPU ms per second of audio of Silero through ``ServerVadSegmenter`` (16 kHz, pushed
  directly), and of the whole session input path (decode, resampling, VAD, buffer, events; with a null
  recogniser, then with pocketsphinx), and how many sessions one core keeps up with in real time.

Every condition runs at each SNR (clean, 20 dB, 10 dB; white plus babble-like noise through the whole
clip). Figures, never pass/fail: the targets are printed next to them.

    .venv/bin/python bench/turn_taking.py [--quick] [--json PATH] [--modes server_vad,barge_in,...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import pickle
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import header, machine_info
from turn_sounds import WARM_UP
from turn_taking_cost import Cost, measure_costs
from turn_taking_figures import describe, figures_by_condition, print_barge, print_costs, print_turns
from turn_taking_probe import CHUNK_MS, TURN_MODES, log, snr_label
from turn_taking_runs import WORKER_ENV, BargeResult, Task, TurnResult, run_task_blocking, stimuli

SNRS: tuple[float | None, ...] = (None, 20.0, 10.0)
QUICK_SNR = 20.0
SECTIONS = (*TURN_MODES, "barge_in", "cost")


def subset(n: int, quick: bool) -> list[int]:
    return list(range(0, n, 3)) if quick else list(range(n))


def batches(indices: Sequence[int], size: int) -> Iterable[list[int]]:
    for i in range(0, len(indices), size):
        yield list(indices[i : i + size])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a third of the stimuli, one SNR ({QUICK_SNR:g} dB), fewer cost clips",
    )
    parser.add_argument("--json", type=Path, help="also write the figures (and every stimulus's result) here")
    parser.add_argument(
        "--modes",
        default=",".join(SECTIONS),
        help=f"comma-separated, from: {', '.join(SECTIONS)} (default all)",
    )
    parser.add_argument(
        "--snr",
        default=None,
        help="comma-separated SNRs in dB, 'clean' for none (default clean,20,10; --quick: 20)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=max(1, min(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2)),
        help="worker processes (default: up to 2)",
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=0.0,
        help="append at this multiple of real time (default 0: as fast as the session takes it)",
    )
    parser.add_argument(
        "--server-vad-stt",
        action="store_true",
        help="recognise speech in the server_vad end-of-turn runs too (default: a null recogniser there, "
        "as server_vad decides on voice alone; three times slower)",
    )
    parser.add_argument(
        "--warm-barge-in",
        action="store_true",
        help="barge-in: the user speaks a turn first and the response is the one server_vad makes for it "
        "(the recogniser has adapted to the voice; slower). Default: response.create on a fresh session",
    )
    parser.add_argument(
        "--stt",
        choices=("pocketsphinx", "faster-whisper", "openai"),
        default="pocketsphinx",
        help="the recogniser the sessions use (default pocketsphinx); faster-whisper and openai take "
        "their model and server from the PARLEY_STT_* settings, as the server does",
    )
    parser.add_argument(
        "--noise-reduction",
        choices=("near_field", "far_field"),
        default=None,
        help="every session sets audio.input.noise_reduction to this type (default: none, the API's "
        "default): the VAD and the recogniser hear the RNNoise-cleaned audio",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print every stimulus's events")
    args = parser.parse_args(argv)
    args.sections = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in args.sections if m not in SECTIONS]
    if unknown:
        parser.error(f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    if args.snr is None:
        args.snrs = [QUICK_SNR] if args.quick else list(SNRS)
    else:
        args.snrs = [None if s.strip() == "clean" else float(s) for s in args.snr.split(",") if s.strip()]
    return args


def source_state() -> str:
    """The commit the engine ran from, and how many of its source files differed from it."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = ["git", "status", "--porcelain", "--", "src"]
        done = subprocess.run(status, cwd=root, capture_output=True, text=True, check=True)
        changed = done.stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"
    return f"git {head}" + (f" with {len(changed)} changed or new file(s) under src/" if changed else "")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    begun = time.monotonic()
    source = source_state()  # now: the workers load the engine as they start
    turns = stimuli("turns")
    barge = stimuli("barge")
    log(
        f"stimuli ready: {len(turns)} end-of-turn utterances, {len(barge)} barge-in stimuli "
        f"({time.monotonic() - begun:.1f} s)"
    )
    costs: list[Cost] = []
    if "cost" in args.sections:
        clips = [turns[i].at_snr(20.0) for i in range(0, len(turns), 18 if args.quick else 6)]
        costs = asyncio.run(measure_costs(clips))

    scratch = tempfile.TemporaryDirectory(prefix="parley-turn-taking-")
    stimuli_path = Path(scratch.name) / "stimuli.pickle"
    with stimuli_path.open("wb") as file:
        pickle.dump({"turns": turns, "barge": barge}, file)
    tasks: list[Task] = []
    for section in args.sections:
        if section == "cost":
            continue
        n = len(barge) if section == "barge_in" else len(turns)
        for snr in args.snrs:
            for indices in batches(subset(n, args.quick), 4):
                want = args.verbose or args.json is not None
                stt = "null" if section == "server_vad" and not args.server_vad_stt else args.stt
                warm, denoise = args.warm_barge_in, args.noise_reduction
                tasks.append(Task(section, snr, indices, args.speed, want, stt, warm, stimuli_path, denoise))
    results: list[TurnResult | BargeResult] = []
    if tasks:
        log(f"{len(tasks)} batches on {args.jobs} worker process(es)")
        total = sum(len(t.indices) for t in tasks)
        # ggml's OpenMP team (Silero) wakes helper threads for every frame; in the workers that only
        # burns CPU the recogniser needs, and changes no audio-time figure (the probabilities are the
        # same). The cost section above ran with the environment as it was, like a server.
        for key, value in WORKER_ENV.items():
            os.environ.setdefault(key, value)
        context = multiprocessing.get_context("spawn")
        with scratch, ProcessPoolExecutor(max_workers=args.jobs, mp_context=context) as pool:
            pending: set[Future[list[TurnResult | BargeResult]]] = {
                pool.submit(run_task_blocking, t) for t in tasks
            }
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    results.extend(future.result())
                log(f"{len(results)}/{total} runs done ({time.monotonic() - begun:.0f} s)")
    else:
        scratch.cleanup()

    turn_figs, barge_figs = figures_by_condition(results, args.snrs)

    header(
        "turn taking: end of turn, barge-in, cost (audio-time figures through RealtimeSession)",
        f"stimuli: {len(subset(len(turns), args.quick))} utterances (42 with inner pauses of 600-1500 ms, "
        f"10 without; every third with --quick), {len(subset(len(barge), args.quick))} barge-in stimuli; "
        f"SNR {', '.join(snr_label(s) for s in args.snrs)}\n"
        f"engines: silero VAD, {args.stt} STT ("
        + ("also" if args.server_vad_stt else "a null recogniser")
        + " in the server_vad end-of-turn runs), endless LLM, tone TTS; one fresh session per stimulus; "
        f"{CHUNK_MS} ms appends, "
        + ("as fast as possible" if args.speed <= 0 else f"at {args.speed:g}x real time")
        + "; positions are ms of input audio appended when the event was emitted\n"
        + "barge-in: "
        + (
            f"after a user turn ({WARM_UP!r}, same voice and noise) and during the response it got"
            if args.warm_barge_in
            else "response.create on a fresh session, stimulus once it speaks"
        )
        + f"\nnoise_reduction: {args.noise_reduction or 'none'}"
        + f"\nsource: {source}",
    )
    print_turns(turn_figs, args.snrs)
    print_barge(barge_figs, args.snrs)
    print_costs(costs)

    errors = sorted({e for r in results for e in r.errors})
    if errors:
        print()
        print(f"!! the session sent {len(errors)} distinct error event(s): " + " | ".join(errors[:5]))
    if args.verbose:
        print()
        for r in sorted(results, key=lambda r: (getattr(r, "mode", "barge_in"), str(r.snr), r.name)):
            print(describe(r))
    spent = {
        section: sum(r.cpu_s for r in results if getattr(r, "mode", "barge_in") == section)
        for section in args.sections
        if section != "cost"
    }
    log("worker CPU: " + ", ".join(f"{k} {v:.0f} s" for k, v in spent.items()))
    print(f"\n(took {time.monotonic() - begun:.0f} s)")

    if args.json:
        document = {
            "machine": machine_info(),
            "args": {k: v for k, v in vars(args).items() if k != "json"},
            "end_of_turn": [{"mode": m, "snr": s, **f} for (m, s), f in turn_figs.items()],
            "barge_in": [{"snr": s, **f} for s, f in barge_figs.items()],
            "cost": [
                {**asdict(c), "ms_per_audio_s": c.ms_per_s, "sessions_per_core": c.sessions_per_core}
                for c in costs
            ],
            "results": [{"type": type(r).__name__, **asdict(r)} for r in results],
        }
        args.json.write_text(json.dumps(document, indent=1, default=str, allow_nan=True) + "\n")
        log(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
