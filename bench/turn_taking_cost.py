"""The cost of listening for ``bench/turn_taking.py``: process CPU time per second of input audio of
Silero through ``ServerVadSegmenter`` (also with ggml on one thread, in a child process) and of the
whole session input path, with a null recogniser and with pocketsphinx."""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import soxr

from parley.config import Settings
from parley.engines.base import SpeechToText
from parley.engines.registry import create
from parley.realtime.turn_detection import ServerVadSegmenter
from turn_sounds import RATE, Stimulus
from turn_taking_probe import CHUNK_MS, SERVER_VAD, NullSTT, Probe, log, make_engines

ONE_THREAD = {"OMP_THREAD_LIMIT": "1"}
"""Caps ggml's OpenMP team (Silero's runtime) at the calling thread; the probabilities are bit-identical."""
COST_REPEATS = 3
"""The cheap cost rows keep the best of this many passes: on a busy machine, Silero's helper threads
wait for a core, and CPU time measured then is inflated."""


@dataclass
class Cost:
    label: str
    cpu_s: float
    audio_s: float
    note: str = ""

    @property
    def ms_per_s(self) -> float:
        return self.cpu_s * 1000 / self.audio_s if self.audio_s else math.nan

    @property
    def sessions_per_core(self) -> float:
        return self.audio_s / self.cpu_s if self.cpu_s else math.inf


def best_of(passes: Sequence[Cost]) -> Cost:
    """The pass that took the least CPU, its note saying it was the best of several."""
    best = min(passes, key=lambda c: c.cpu_s)
    best.note = "; ".join(note for note in (best.note, f"best of {len(passes)}") if note)
    return best


def segmenter_cost(clips: Sequence[Stimulus], settings: Settings) -> Cost:
    audio_s = cpu_s = thread_s = 0.0
    frames = 0
    for stim in clips:
        pcm16k = np.asarray(soxr.resample(stim.pcm, RATE, 16000), dtype=np.int16)
        segmenter = ServerVadSegmenter(create("vad", "silero", settings))
        step = 16000 * CHUNK_MS // 1000
        started, thread = time.process_time(), time.thread_time()
        for i in range(0, len(pcm16k), step):
            segmenter.push(pcm16k[i : i + step], (i + step) * 1000 / 16000)
        cpu_s += time.process_time() - started
        thread_s += time.thread_time() - thread
        audio_s += len(pcm16k) / 16000
        frames += len(pcm16k) // 512
    note = f"{cpu_s / frames * 1e6:.0f} us/frame; calling thread alone {thread_s * 1000 / audio_s:.1f} ms/s"
    return Cost("Silero through ServerVadSegmenter (16 kHz, 20 ms pushes)", cpu_s, audio_s, note)


def best_segmenter_cost(clips: Sequence[Stimulus]) -> Cost:
    settings = Settings()
    return best_of([segmenter_cost(clips, settings) for _ in range(COST_REPEATS)])


async def session_cost(
    label: str, clips: Sequence[Stimulus], settings: Settings, stt: SpeechToText, turn: bool, transcribe: bool
) -> Cost:
    engines = make_engines(settings, stt)
    await engines.warm_up()
    cpu_s = audio_s = 0.0
    for stim in clips:
        probe = Probe(settings, engines)
        await probe.start(
            {**SERVER_VAD, "create_response": False} if turn else None, transcription=transcribe
        )
        started = time.process_time()
        await probe.push(stim.pcm)
        if not isinstance(stt, NullSTT):
            # Recognition runs behind the appends: wait for every transcript, so its whole cost counts.
            await probe.wait_transcribed(timeout_s=60.0)
        await probe.close()
        cpu_s += time.process_time() - started
        audio_s += len(stim.pcm) / RATE
    return Cost(label, cpu_s, audio_s)


def in_child(env: dict[str, str], function: Callable[..., Cost], *args: Any) -> Cost:
    """``function(*args)`` in a fresh process whose environment has ``env`` from the start (libgomp reads
    its settings as it loads)."""
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            return pool.submit(function, *args).result()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


async def measure_costs(clips: Sequence[Stimulus]) -> list[Cost]:
    settings = Settings()
    speech_s = sum(s.speech_ms for s in clips) / 1000
    total_s = sum(s.duration_ms for s in clips) / 1000
    log(f"cost: {len(clips)} clips, {total_s:.0f} s of audio ({speech_s / total_s:.0%} speech)")
    null = NullSTT()
    costs = [best_segmenter_cost(clips)]
    one_thread = in_child(ONE_THREAD, best_segmenter_cost, clips)
    one_thread.label = "  the same, OMP_THREAD_LIMIT=1 (ggml computes on the calling thread)"
    costs.append(one_thread)
    for label, turn in (
        ("session, turn_detection null, no recogniser", False),
        ("session, server_vad, no recogniser", True),
    ):
        passes = [await session_cost(label, clips, settings, null, turn, False) for _ in range(COST_REPEATS)]
        costs.append(best_of(passes))
    pocketsphinx = create("stt", "pocketsphinx", settings)
    costs.append(
        await session_cost(
            "session, server_vad + pocketsphinx transcription", clips, settings, pocketsphinx, True, True
        )
    )
    costs[-1].note = "one pass"
    return costs
