"""Turn taking through the real session engine: end of turn, barge-in and the cost of listening.

Every stimulus (``bench/turn_sounds.py``) goes through a fresh ``RealtimeSession`` in this process (no
socket) with the real Silero VAD and pocketsphinx STT, a language model that streams words until it is
cancelled and a TTS that returns a tone. Audio goes in as ``input_audio_buffer.append`` events of 20 ms
(base64 PCM16, 24 kHz) as fast as the session takes them, with ``await asyncio.sleep(0)`` between
appends. Every emitted event is stamped with the *input position*: the ms of audio appended to the
session so far. All timings below are in that audio time, so they do not depend on the machine's speed.

* **End of turn** (``server_vad`` with its defaults, with a null recogniser unless ``--server-vad-stt``;
  ``semantic_vad`` with eagerness low, medium, high; ``create_response`` off): 42 utterances with 1-2
  pauses of 600-1500 ms where the sentence is clearly unfinished and 10 without, 500 ms before the
  speech and 4 s after it (then more background, up to 10 s, while a turn is still open).
  *Premature*: the first ``speech_stopped`` was emitted before the true end of the speech. *Endpoint
  delay*: position at which the final ``speech_stopped`` was emitted minus the true end, over the
  utterances that were not premature. Also the error of ``audio_end_ms`` against the true end, of
  ``audio_start_ms + prefix_padding_ms`` against the true onset, and how far into the speech
  ``speech_started`` was emitted.
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
import base64
import functools
import json
import math
import multiprocessing
import os
import pickle
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soxr

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import header, machine_info, median, percentile, table
from parley.config import Settings
from parley.engines.base import (
    PCM,
    ChatRequest,
    LLMEvent,
    SpeechToText,
    TextDelta,
    Transcription,
)
from parley.engines.registry import Engines, create
from parley.realtime.session import RealtimeSession
from parley.realtime.turn_detection import ServerVadSegmenter
from turn_sounds import (
    RATE,
    WARM_UP,
    Stimulus,
    barge_in_utterances,
    non_speech_sounds,
    paused_utterances,
    voice_for,
    warm_up_turn,
)

CHUNK_MS = 20
CHUNK_SAMPLES = RATE * CHUNK_MS // 1000
YIELDS_PER_CHUNK = 1
"""``await asyncio.sleep(0)`` calls after each append."""
TRANSCRIPT_WAIT_S = 20.0
"""After a clip, how long (wall clock) to wait for the transcripts of its committed items."""
MAX_EXTRA_MS = 10_000
"""After an end-of-turn clip, background goes on while a turn is still open, for at most this long."""
SNRS: tuple[float | None, ...] = (None, 20.0, 10.0)
QUICK_SNR = 20.0
TRANSCRIPTION = {"model": "whisper-1"}

SERVER_VAD: dict[str, Any] = {
    "type": "server_vad",
    "threshold": 0.5,
    "prefix_padding_ms": 300,
    "silence_duration_ms": 500,
}
TURN_MODES: dict[str, dict[str, Any]] = {
    "server_vad": SERVER_VAD,
    "semantic_low": {"type": "semantic_vad", "eagerness": "low"},
    "semantic_medium": {"type": "semantic_vad", "eagerness": "medium"},
    "semantic_high": {"type": "semantic_vad", "eagerness": "high"},
}
SECTIONS = (*TURN_MODES, "barge_in", "cost")

TARGET_ENDPOINT_EXTRA_MS = 40
TARGET_PREMATURE = 0.02
TARGET_FALSE_BARGE_IN = 0.02
NON_SPEECH_KINDS = ("cough", "click", "burst", "thump")

Event = dict[str, Any]


def log(message: str) -> None:
    print(f"turn_taking: {message}", file=sys.stderr, flush=True)


def snr_label(snr: float | None) -> str:
    return "clean" if snr is None else f"{snr:g} dB"


# -------------------------------------------------------------------------------------- engines


class EndlessLLM:
    """Streams a word every ``interval_s`` (a sentence every eight words) until it is cancelled."""

    name = "bench-endless"
    WORDS = ("the", "weather", "will", "be", "sunny", "with", "light", "wind", "later", "today")

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s

    async def stream(self, request: ChatRequest) -> AsyncIterator[LLMEvent]:
        count = 0
        while True:
            await asyncio.sleep(self.interval_s)
            count += 1
            word = self.WORDS[count % len(self.WORDS)]
            yield TextDelta(f"{word}{'.' if count % 8 == 0 else ''} ")

    async def warm_up(self) -> None:
        pass


class ToneTTS:
    """10 ms of a 440 Hz tone per character, at 24 kHz, in one chunk."""

    name = "bench-tone"
    sample_rate = 24000

    def voices(self) -> list[str]:
        return ["alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"]

    async def synthesize(self, text: str, *, voice: str, speed: float = 1.0) -> AsyncIterator[PCM]:
        samples = int(len(text) * self.sample_rate / 100 / speed)
        t = np.arange(samples) / self.sample_rate
        yield (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)

    async def warm_up(self) -> None:
        pass


class NullRecognition:
    def __init__(self) -> None:
        self.samples = 0

    async def feed(self, pcm: PCM) -> str | None:
        self.samples += len(pcm)
        return None

    async def finish(self) -> Transcription:
        return Transcription(text="", audio_seconds=self.samples / 16000)

    def close(self) -> None:
        pass


class NullSTT:
    """A recogniser that does no work: the session input path without recognition."""

    name = "bench-null"
    sample_rate = 16000

    def start(self, **options: Any) -> NullRecognition:
        """Any keyword the protocol names (language, prompt...) is accepted and ignored."""
        return NullRecognition()

    async def warm_up(self) -> None:
        pass


def make_engines(settings: Settings, stt: SpeechToText) -> Engines:
    return Engines(
        vad=lambda: create("vad", "silero", settings),
        stt=stt,
        llm=EndlessLLM(),
        tts=ToneTTS(),
    )


# -------------------------------------------------------------------------------------- probe


@dataclass
class Seen:
    type: str
    at_ms: float
    """Input position (ms of audio appended to the session) when the event was emitted."""
    fields: dict[str, Any]


KEPT_FIELDS = ("audio_start_ms", "audio_end_ms", "item_id", "transcript")


class Probe:
    """A session with every event it emits stamped with the input position."""

    def __init__(self, settings: Settings, engines: Engines, speed: float = 0.0) -> None:
        self.position_ms = 0.0
        self.seen: list[Seen] = []
        self.audio_deltas = 0
        self.errors: list[str] = []
        self.speed = speed
        self._changed = asyncio.Event()
        self.session = RealtimeSession(
            settings=settings, engines=engines, emit=self._emit, model="gpt-realtime"
        )

    async def _emit(self, event: Event) -> None:
        kind = str(event["type"])
        if kind == "response.output_audio.delta":
            self.audio_deltas += 1
            self._changed.set()
            return
        if kind.endswith(".delta"):
            return
        if kind == "error":
            self.errors.append(str(event["error"].get("message")))
        fields = {k: event[k] for k in KEPT_FIELDS if k in event}
        if kind == "response.done":
            response = event["response"]
            fields.update(id=response["id"], status=response["status"], details=response["status_details"])
        elif kind == "response.created":
            fields["id"] = event["response"]["id"]
        elif kind == "session.updated":
            fields["turn_detection"] = event["session"]["audio"]["input"]["turn_detection"]
        self.seen.append(Seen(kind, self.position_ms, fields))
        self._changed.set()

    async def send(self, event: Event) -> None:
        await self.session.handle_text(json.dumps(event))

    async def start(self, turn_detection: dict[str, Any] | None, transcription: bool = True) -> None:
        await self.session.start()
        update: Event = {
            "type": "realtime",
            "output_modalities": ["audio"],
            "audio": {
                "input": {
                    "turn_detection": turn_detection,
                    "transcription": dict(TRANSCRIPTION) if transcription else None,
                }
            },
        }
        await self.send({"type": "session.update", "session": update})

    async def push(self, pcm: PCM, stop: Callable[[], bool] | None = None) -> None:
        """Append ``pcm`` in 20 ms events; ``stop`` is asked after each one."""
        started = time.perf_counter()
        pushed = 0.0
        for i in range(0, len(pcm), CHUNK_SAMPLES):
            chunk = pcm[i : i + CHUNK_SAMPLES]
            self.position_ms += len(chunk) * 1000 / RATE
            pushed += len(chunk) / RATE
            audio = base64.b64encode(chunk.astype("<i2").tobytes()).decode("ascii")
            await self.send({"type": "input_audio_buffer.append", "audio": audio})
            for _ in range(YIELDS_PER_CHUNK):
                await asyncio.sleep(0)
            if self.speed > 0:
                lag = started + pushed / self.speed - time.perf_counter()
                if lag > 0:
                    await asyncio.sleep(lag)
            if stop is not None and stop():
                return

    async def wait_until(self, condition: Callable[[], bool], timeout_s: float) -> bool:
        async def wait() -> None:
            while not condition():
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def of(self, kind: str) -> list[Seen]:
        return [s for s in self.seen if s.type == kind]

    async def close(self) -> None:
        await self.session.close()


# -------------------------------------------------------------------------------------- results


@dataclass
class TurnResult:
    name: str
    kind: str
    mode: str
    snr: float | None
    onset_ms: float
    end_ms: float
    pauses: list[tuple[float, float]]
    prefix_ms: float
    starts: list[tuple[float, int]] = field(default_factory=list)
    """(emitted at, audio_start_ms) of each speech_started."""
    stops: list[tuple[float, int]] = field(default_factory=list)
    """(emitted at, audio_end_ms) of each speech_stopped."""
    pushed_ms: float = 0.0
    transcripts: list[str] = field(default_factory=list)
    """Final transcript of each committed item, in order."""
    errors: list[str] = field(default_factory=list)
    cpu_s: float = 0.0
    """CPU time the worker process spent on this run (all its threads)."""

    @property
    def premature(self) -> bool:
        return bool(self.stops) and self.stops[0][0] < self.end_ms

    @property
    def premature_in_pause(self) -> bool:
        if not self.premature:
            return False
        at = self.stops[0][0]
        return any(a <= at < b for a, b in self.pauses)

    @property
    def ended(self) -> bool:
        """A speech_stopped came after the true end and no turn was left open."""
        return bool(self.stops) and self.stops[-1][0] >= self.end_ms and len(self.starts) <= len(self.stops)


@dataclass
class BargeResult:
    name: str
    kind: str
    text: str
    snr: float | None
    onset_ms: float
    end_ms: float
    started: list[float] = field(default_factory=list)
    """Input positions at which speech_started was emitted."""
    cancelled_at: float | None = None
    """When the first response's response.done came, cancelled with reason turn_detected."""
    other_end: str | None = None
    """How the first response ended otherwise (status/reason), or None while still running."""
    audio_deltas_before: int = 0
    valid: bool = True
    """The response was active and speaking when the stimulus was pushed."""
    offset_ms: float = 0.0
    """Input position where the stimulus's clip began (after the warm-up turn); onset_ms and end_ms
    are session positions."""
    warm_up_transcript: str | None = None
    transcripts: list[str] = field(default_factory=list)
    """Final transcript of each committed item, in order."""
    errors: list[str] = field(default_factory=list)
    cpu_s: float = 0.0
    """CPU time the worker process spent on this run (all its threads)."""

    @property
    def barged_in(self) -> bool:
        return self.cancelled_at is not None

    @property
    def false_trigger(self) -> bool:
        return self.barged_in or bool(self.started)


@dataclass
class Task:
    section: str
    snr: float | None
    indices: list[int]
    speed: float
    transcripts: bool
    """Wait for the final transcripts after each clip (for -v and --json)."""
    stt: str
    """``pocketsphinx``, or ``null`` for a recogniser that does nothing."""
    warm_up: bool
    """Barge-in: the user speaks a turn first (else the session has heard nothing before)."""
    stimuli_path: Path | None = None
    """A pickle of the clean stimulus sets (made once by the parent), else they are made here."""


# -------------------------------------------------------------------------------------- workers

_engines: dict[str, Engines] = {}
_settings = Settings()
_stimuli: dict[str, list[Stimulus]] = {}


def stimuli(kind: str, path: Path | None = None) -> list[Stimulus]:
    """The stimulus sets, made once per process (deterministic, so every process has the same), or
    loaded from the parent's pickle at ``path``."""
    if kind not in _stimuli and path is not None:
        with path.open("rb") as file:
            _stimuli.update(pickle.load(file))
    if kind not in _stimuli:
        if kind == "turns":
            _stimuli[kind] = paused_utterances()
        elif kind == "barge":
            _stimuli[kind] = non_speech_sounds() + barge_in_utterances()
        else:
            raise ValueError(kind)
    return _stimuli[kind]


async def worker_engines(stt: str) -> Engines:
    """This process's engines with the ``pocketsphinx`` or the ``null`` recogniser, made once."""
    if stt not in _engines:
        recogniser = NullSTT() if stt == "null" else create("stt", stt, _settings)
        _engines[stt] = make_engines(_settings, recogniser)
        await _engines[stt].warm_up()
    return _engines[stt]


def transcribed(probe: Probe) -> bool:
    """Every committed item has its transcript (or its failure)."""
    done = len(probe.of("conversation.item.input_audio_transcription.completed")) + len(
        probe.of("conversation.item.input_audio_transcription.failed")
    )
    return done >= len(probe.of("input_audio_buffer.committed"))


def transcripts(probe: Probe) -> list[str]:
    return [
        str(s.fields.get("transcript", ""))
        for s in probe.of("conversation.item.input_audio_transcription.completed")
    ]


async def run_turn(
    settings: Settings, engines: Engines, mode: str, stim: Stimulus, speed: float, wait_transcripts: bool
) -> TurnResult:
    probe = Probe(settings, engines, speed)
    await probe.start({**TURN_MODES[mode], "create_response": False})
    updated = probe.of("session.updated")
    turn = updated[-1].fields["turn_detection"] if updated else {}
    result = TurnResult(
        stim.name,
        stim.kind,
        mode,
        stim.snr_db,
        stim.onset_ms,
        stim.end_ms,
        list(stim.pauses),
        float((turn or {}).get("prefix_padding_ms", 300)),
    )

    def open_turn() -> bool:
        return len(probe.of("input_audio_buffer.speech_started")) > len(
            probe.of("input_audio_buffer.speech_stopped")
        )

    try:
        await probe.push(stim.pcm)
        extra, part = 0.0, 1
        while open_turn() and extra < MAX_EXTRA_MS:
            await probe.push(stim.background(1000, part), stop=lambda: not open_turn())
            extra += 1000
            part += 1
        if wait_transcripts:
            await probe.wait_until(functools.partial(transcribed, probe), timeout_s=TRANSCRIPT_WAIT_S)
    finally:
        await probe.close()
    result.starts = [
        (s.at_ms, int(s.fields["audio_start_ms"])) for s in probe.of("input_audio_buffer.speech_started")
    ]
    result.stops = [
        (s.at_ms, int(s.fields["audio_end_ms"])) for s in probe.of("input_audio_buffer.speech_stopped")
    ]
    result.pushed_ms = probe.position_ms
    result.transcripts = transcripts(probe)
    result.errors = probe.errors
    return result


async def run_barge(
    settings: Settings,
    engines: Engines,
    stim: Stimulus,
    speed: float,
    wait_transcripts: bool,
    warm_up: Stimulus | None,
) -> BargeResult:
    """With ``warm_up``, the user first says something and the response is the one server_vad creates
    for it; else the response comes from ``response.create`` on a session that heard nothing yet."""
    probe = Probe(settings, engines, speed)
    await probe.start({**SERVER_VAD, "create_response": True, "interrupt_response": True})
    result = BargeResult(stim.name, stim.kind, stim.text, stim.snr_db, stim.onset_ms, stim.end_ms)
    response: str | None = None
    offset = 0.0
    try:
        if warm_up is not None:
            await probe.push(warm_up.pcm)
        else:
            await probe.send({"type": "response.create", "response": {"output_modalities": ["audio"]}})
        speaking = await probe.wait_until(lambda: probe.audio_deltas > 0, timeout_s=10.0)
        created = probe.of("response.created")
        finished = {s.fields["id"] for s in probe.of("response.done")}
        running = [s.fields["id"] for s in created if s.fields["id"] not in finished]
        response = running[-1] if running else None
        offset = probe.position_ms
        result.offset_ms = offset
        result.onset_ms += offset
        result.end_ms += offset
        result.audio_deltas_before = probe.audio_deltas
        result.valid = speaking and response is not None
        await probe.push(stim.pcm)
        if wait_transcripts:
            await probe.wait_until(functools.partial(transcribed, probe), timeout_s=TRANSCRIPT_WAIT_S)
        else:
            await asyncio.sleep(0.02)  # let what the last appends started finish
    finally:
        await probe.close()
    result.started = [s.at_ms for s in probe.of("input_audio_buffer.speech_started") if s.at_ms > offset]
    for done in probe.of("response.done"):
        if done.fields["id"] != response:
            continue
        details = done.fields.get("details") or {}
        if done.fields["status"] == "cancelled" and details.get("reason") == "turn_detected":
            result.cancelled_at = done.at_ms
        elif done.at_ms < probe.position_ms:  # not the close at the end
            result.other_end = f"{done.fields['status']}/{details.get('reason')}"
    heard = transcripts(probe)
    if warm_up is not None and heard:
        result.warm_up_transcript, heard = heard[0], heard[1:]
    result.transcripts = heard
    result.errors = probe.errors
    return result


async def run_task(task: Task) -> list[TurnResult | BargeResult]:
    settings = _settings
    engines = await worker_engines(task.stt)
    out: list[TurnResult | BargeResult] = []
    for index in task.indices:
        started = time.process_time()
        result: TurnResult | BargeResult
        if task.section == "barge_in":
            stim = stimuli("barge", task.stimuli_path)[index].at_snr(task.snr)
            warm_up = warm_up_turn(voice_for(stim)).at_snr(task.snr) if task.warm_up else None
            result = await run_barge(settings, engines, stim, task.speed, task.transcripts, warm_up)
        else:
            stim = stimuli("turns", task.stimuli_path)[index].at_snr(task.snr)
            result = await run_turn(settings, engines, task.section, stim, task.speed, task.transcripts)
        result.cpu_s = time.process_time() - started
        out.append(result)
    return out


def run_task_blocking(task: Task) -> list[TurnResult | BargeResult]:
    return asyncio.run(run_task(task))


# -------------------------------------------------------------------------------------- cost


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
            await probe.wait_until(functools.partial(transcribed, probe), timeout_s=60.0)
        await probe.close()
        cpu_s += time.process_time() - started
        audio_s += len(stim.pcm) / RATE
    return Cost(label, cpu_s, audio_s)


ONE_THREAD = {"OMP_THREAD_LIMIT": "1"}
"""Caps ggml's OpenMP team (Silero's runtime) at the calling thread; the probabilities are bit-identical."""
WORKER_ENV = {"OMP_THREAD_LIMIT": "1", "OMP_WAIT_POLICY": "passive"}
"""Set (unless already set) for the worker processes: it changes no audio-time figure, only how much CPU
Silero burns in its helper threads."""
COST_REPEATS = 3
"""The cheap cost rows keep the best of this many passes: on a busy machine, Silero's helper threads
wait for a core, and CPU time measured then is inflated."""


def best_segmenter_cost(clips: Sequence[Stimulus]) -> Cost:
    best = min((segmenter_cost(clips, _settings) for _ in range(COST_REPEATS)), key=lambda c: c.cpu_s)
    best.note += f"; best of {COST_REPEATS}"
    return best


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
    best = f"best of {COST_REPEATS}"
    costs = [min((segmenter_cost(clips, settings) for _ in range(COST_REPEATS)), key=lambda c: c.cpu_s)]
    costs[-1].note += f"; {best}"
    one_thread = in_child(ONE_THREAD, best_segmenter_cost, clips)
    one_thread.label = "  the same, OMP_THREAD_LIMIT=1 (ggml computes on the calling thread)"
    costs.append(one_thread)
    for label, turn in (
        ("session, turn_detection null, no recogniser", False),
        ("session, server_vad, no recogniser", True),
    ):
        passes = [await session_cost(label, clips, settings, null, turn, False) for _ in range(COST_REPEATS)]
        costs.append(min(passes, key=lambda c: c.cpu_s))
        costs[-1].note = best
    pocketsphinx = create("stt", "pocketsphinx", settings)
    costs.append(
        await session_cost(
            "session, server_vad + pocketsphinx transcription", clips, settings, pocketsphinx, True, True
        )
    )
    costs[-1].note = "one pass"
    return costs


# -------------------------------------------------------------------------------------- figures


def rate(count: int, n: int) -> str:
    return f"{100 * count / n:.1f} % ({count}/{n})" if n else "-"


def fmt(value: float, digits: int = 0) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def turn_figures(results: Sequence[TurnResult]) -> dict[str, Any]:
    n = len(results)
    detected = [r for r in results if r.starts]
    premature = [r for r in results if r.premature]
    settled = [r for r in results if not r.premature and r.ended]
    delays = [r.stops[-1][0] - r.end_ms for r in settled]
    end_errors = [r.stops[-1][1] - r.end_ms for r in settled]
    firsts = [r for r in detected if r.starts[0][0] >= r.onset_ms]
    onset_errors = [r.starts[0][1] + r.prefix_ms - r.onset_ms for r in firsts]
    start_delays = [r.starts[0][0] - r.onset_ms for r in firsts]
    return {
        "n": n,
        "no_turn": n - len(detected),
        "started_before_onset": len(detected) - len(firsts),
        "premature": len(premature),
        "premature_in_pause": sum(r.premature_in_pause for r in premature),
        "premature_rate": len(premature) / n if n else math.nan,
        "premature_paused": sum(r.kind == "paused" for r in premature),
        "premature_whole": sum(r.kind == "whole" for r in premature),
        "not_ended": sum(not r.premature and not r.ended for r in results),
        "endpoint_n": len(settled),
        "endpoint_delay_ms_p50": median(delays),
        "endpoint_delay_ms_p95": percentile(delays, 95),
        "endpoint_delay_ms_max": max(delays) if delays else math.nan,
        "audio_end_abs_error_ms_p50": median([abs(e) for e in end_errors]),
        "audio_end_abs_error_ms_p95": percentile([abs(e) for e in end_errors], 95),
        "audio_end_error_ms_p50": median(end_errors),
        "onset_abs_error_ms_p50": median([abs(e) for e in onset_errors]),
        "onset_abs_error_ms_p95": percentile([abs(e) for e in onset_errors], 95),
        "onset_error_ms_p50": median(onset_errors),
        "start_delay_ms_p50": median(start_delays),
        "start_delay_ms_p95": percentile(start_delays, 95),
        "segments_p50": median([len(r.starts) for r in results]),
    }


def barge_figures(results: Sequence[BargeResult]) -> dict[str, Any]:
    valid = [r for r in results if r.valid]
    groups: dict[str, list[BargeResult]] = {
        kind: [r for r in valid if r.kind == kind] for kind in NON_SPEECH_KINDS
    }
    groups["non-speech sounds"] = [r for r in valid if r.kind in NON_SPEECH_KINDS]
    groups["backchannels"] = [r for r in valid if r.kind == "backchannel"]
    groups["all non-speech + backchannels"] = [r for r in valid if r.kind != "barge_in"]
    false: dict[str, Any] = {}
    for label, group in groups.items():
        false[label] = {
            "n": len(group),
            "cancelled": sum(r.barged_in for r in group),
            "speech_started": sum(bool(r.started) for r in group),
            "false_barge_in": sum(r.false_trigger for r in group),
            "false_barge_in_rate": sum(r.false_trigger for r in group) / len(group) if group else math.nan,
        }
    real = [r for r in valid if r.kind == "barge_in"]
    hits = [r for r in real if r.cancelled_at is not None]
    delays = [r.cancelled_at - r.onset_ms for r in hits if r.cancelled_at is not None]
    return {
        "invalid": len(results) - len(valid),
        "false": false,
        "real": {
            "n": len(real),
            "missed": len(real) - len(hits),
            "missed_names": [f"{r.name} ({r.text})" for r in real if r.cancelled_at is None],
            "cancelled_before_onset": sum(d < 0 for d in delays),
            "delay_ms_p50": median(delays),
            "delay_ms_p95": percentile(delays, 95),
            "delay_ms_min": min(delays) if delays else math.nan,
            "delay_ms_max": max(delays) if delays else math.nan,
            "other_end": sorted({r.other_end for r in real if r.other_end}),
        },
    }


def print_turns(figures: dict[tuple[str, str], dict[str, Any]], snrs: Sequence[float | None]) -> None:
    modes = [m for m in TURN_MODES if any((m, snr_label(s)) in figures for s in snrs)]
    if not modes:
        return
    print()
    print("-- end of turn: premature ends and endpoint delay (input-position ms) --")
    rows = [
        [
            "SNR",
            "mode",
            "n",
            "premature",
            "in a pause",
            "target",
            "delay n",
            "p50",
            "p95",
            "max",
            "target p50",
            "never ended",
            "no turn",
        ]
    ]
    for snr in snrs:
        for mode in modes:
            f = figures.get((mode, snr_label(snr)))
            if f is None:
                continue
            target_delay = (
                f"<= {SERVER_VAD['silence_duration_ms'] + TARGET_ENDPOINT_EXTRA_MS}"
                if mode == "server_vad"
                else "-"
            )
            rows.append(
                [
                    snr_label(snr),
                    mode,
                    str(f["n"]),
                    rate(f["premature"], f["n"]),
                    str(f["premature_in_pause"]),
                    "-" if mode == "server_vad" else f"<= {TARGET_PREMATURE:.0%}",
                    str(f["endpoint_n"]),
                    fmt(f["endpoint_delay_ms_p50"]),
                    fmt(f["endpoint_delay_ms_p95"]),
                    fmt(f["endpoint_delay_ms_max"]),
                    target_delay,
                    str(f["not_ended"]),
                    str(f["no_turn"]),
                ]
            )
    print(table(rows, align_right_from=2))
    print()
    print("-- end of turn: timestamps (ms; error = reported - true, |abs| medians and p95) --")
    rows = [
        [
            "SNR",
            "mode",
            "audio_end |err| p50",
            "p95",
            "bias p50",
            "start+prefix |err| p50",
            "p95",
            "bias p50",
            "started after onset p50",
            "p95",
            "started early",
        ]
    ]
    for snr in snrs:
        for mode in modes:
            f = figures.get((mode, snr_label(snr)))
            if f is None:
                continue
            rows.append(
                [
                    snr_label(snr),
                    mode,
                    fmt(f["audio_end_abs_error_ms_p50"]),
                    fmt(f["audio_end_abs_error_ms_p95"]),
                    fmt(f["audio_end_error_ms_p50"]),
                    fmt(f["onset_abs_error_ms_p50"]),
                    fmt(f["onset_abs_error_ms_p95"]),
                    fmt(f["onset_error_ms_p50"]),
                    fmt(f["start_delay_ms_p50"]),
                    fmt(f["start_delay_ms_p95"]),
                    str(f["started_before_onset"]),
                ]
            )
    print(table(rows, align_right_from=2))


def print_barge(figures: dict[str, dict[str, Any]], snrs: Sequence[float | None]) -> None:
    if not figures:
        return
    print()
    print("-- barge-in, server_vad defaults, during a response that is speaking: false barge-ins --")
    rows = [["SNR", "stimuli", "n", "cancelled", "speech_started", "false barge-in", "target"]]
    for snr in snrs:
        f = figures.get(snr_label(snr))
        if f is None:
            continue
        for label, g in f["false"].items():
            target = f"<= {TARGET_FALSE_BARGE_IN:.0%}" if label == "all non-speech + backchannels" else ""
            rows.append(
                [
                    snr_label(snr),
                    label,
                    str(g["n"]),
                    str(g["cancelled"]),
                    str(g["speech_started"]),
                    rate(g["false_barge_in"], g["n"]),
                    target,
                ]
            )
    print(table(rows, align_right_from=2))
    print()
    print("-- barge-in: real interruptions (>= 0.5 s of speech); delay = cancelled response.done - onset --")
    rows = [
        ["SNR", "n", "missed", "target", "delay p50", "p95", "min", "max", "before onset", "invalid runs"]
    ]
    for snr in snrs:
        f = figures.get(snr_label(snr))
        if f is None:
            continue
        real = f["real"]
        rows.append(
            [
                snr_label(snr),
                str(real["n"]),
                rate(real["missed"], real["n"]),
                "0",
                fmt(real["delay_ms_p50"]),
                fmt(real["delay_ms_p95"]),
                fmt(real["delay_ms_min"]),
                fmt(real["delay_ms_max"]),
                str(real["cancelled_before_onset"]),
                str(f["invalid"]),
            ]
        )
    print(table(rows, align_right_from=1))
    for snr in snrs:
        f = figures.get(snr_label(snr))
        if f and f["real"]["missed_names"]:
            print(f"missed at {snr_label(snr)}: {', '.join(f['real']['missed_names'])}")
        if f and f["real"]["other_end"]:
            print(f"first response ended otherwise at {snr_label(snr)}: {', '.join(f['real']['other_end'])}")


def print_costs(costs: Sequence[Cost]) -> None:
    if not costs:
        return
    print()
    print("-- cost of listening: CPU per second of input audio (as fast as possible; process CPU time) --")
    rows = [["path", "audio s", "CPU ms per audio s", "real-time sessions per core", "note"]]
    for c in costs:
        rows.append([c.label, f"{c.audio_s:.0f}", f"{c.ms_per_s:.1f}", f"{c.sessions_per_core:.0f}", c.note])
    print(table(rows, align_right_from=1))
    print(
        "Silero and pocketsphinx hold the GIL while they compute, so one process gets at most one core's "
        "worth of them: sessions per core is also the most one server process keeps up with."
    )


# -------------------------------------------------------------------------------------- main


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


def describe(result: TurnResult | BargeResult) -> str:
    if isinstance(result, TurnResult):
        starts = ", ".join(f"@{a:.0f}(start {s})" for a, s in result.starts)
        stops = ", ".join(f"@{a:.0f}(end {e})" for a, e in result.stops)
        flag = " PREMATURE" if result.premature else ""
        return (
            f"{result.mode:16s} {snr_label(result.snr):6s} {result.name:14s} true {result.onset_ms:.0f}-"
            f"{result.end_ms:.0f}{flag} | started {starts or '-'} | stopped {stops or '-'}"
            f" | heard {' / '.join(repr(t) for t in result.transcripts) or '-'}"
        )
    end = f"cancelled @{result.cancelled_at:.0f}" if result.cancelled_at is not None else "not cancelled"
    started = ", ".join(f"@{a:.0f}" for a in result.started) or "-"
    return (
        f"barge_in         {snr_label(result.snr):6s} {result.name:20s} true {result.onset_ms:.0f}-"
        f"{result.end_ms:.0f} {result.text!r} | {end} | speech_started {started}"
        + f" | heard {' / '.join(repr(t) for t in result.transcripts) or '-'}"
        + ("" if result.warm_up_transcript is None else f" (warm-up heard {result.warm_up_transcript!r})")
        + ("" if result.valid else " | INVALID (response not speaking)")
    )


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
                stt = "null" if section == "server_vad" and not args.server_vad_stt else "pocketsphinx"
                warm = args.warm_barge_in
                tasks.append(Task(section, snr, indices, args.speed, want, stt, warm, stimuli_path))
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

    turn_results = [r for r in results if isinstance(r, TurnResult)]
    barge_results = [r for r in results if isinstance(r, BargeResult)]
    turn_figs: dict[tuple[str, str], dict[str, Any]] = {}
    for mode in TURN_MODES:
        for snr in args.snrs:
            group = sorted((r for r in turn_results if r.mode == mode and r.snr == snr), key=lambda r: r.name)
            if group:
                turn_figs[(mode, snr_label(snr))] = turn_figures(group)
    barge_figs: dict[str, dict[str, Any]] = {}
    for snr in args.snrs:
        barges = sorted((r for r in barge_results if r.snr == snr), key=lambda r: r.name)
        if barges:
            barge_figs[snr_label(snr)] = barge_figures(barges)

    header(
        "turn taking: end of turn, barge-in, cost (audio-time figures through RealtimeSession)",
        f"stimuli: {len(subset(len(turns), args.quick))} utterances (42 with inner pauses of 600-1500 ms, "
        f"10 without; every third with --quick), {len(subset(len(barge), args.quick))} barge-in stimuli; "
        f"SNR {', '.join(snr_label(s) for s in args.snrs)}\n"
        f"engines: silero VAD, pocketsphinx STT ("
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
