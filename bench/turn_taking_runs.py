"""The worker side of ``bench/turn_taking.py``: one stimulus through a fresh session (end of turn or
barge-in), what each run found, and :class:`Task`, the batch of stimuli a worker process runs.

``Task`` goes to the worker processes and the results come back pickled, so these classes live here
(not in the ``__main__`` script), where both sides import them from."""

from __future__ import annotations

import asyncio
import math
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path

from parley.config import Settings
from parley.engines.registry import Engines, create
from turn_sounds import (
    Stimulus,
    barge_in_utterances,
    non_speech_sounds,
    paused_utterances,
    voice_for,
    warm_up_turn,
)
from turn_taking_probe import SERVER_VAD, TURN_MODES, NullSTT, Probe, make_engines

TRANSCRIPT_WAIT_S = 20.0
"""After a clip, how long (wall clock) to wait for the transcripts of its committed items."""
MAX_EXTRA_MS = 10_000
"""After an end-of-turn clip, background goes on while a turn is still open, for at most this long."""
WORKER_ENV = {"OMP_THREAD_LIMIT": "1", "OMP_WAIT_POLICY": "passive"}
"""Set (unless already set) for the worker processes: it changes no audio-time figure, only how much CPU
Silero burns in its helper threads."""


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

    def stop_delays(self) -> list[float]:
        """For each silence after speech (each inner pause, and the end), where the first
        ``speech_stopped`` within it was emitted, less the silence's start; silences with none are left
        out. What ``server_vad`` must do at every silence longer than ``silence_duration_ms``."""
        silences = [*self.pauses, (self.end_ms, math.inf)]
        delays = []
        for start, end in silences:
            within = [at for at, _ in self.stops if start <= at < end]
            if within:
                delays.append(within[0] - start)
        return delays

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
    held: list[tuple[float, float]] = field(default_factory=list)
    """(from, to) input positions over which the session judged voice as a candidate interruption:
    where the server plays the audio out (WebRTC, SIP, Twilio) the reply pauses over these."""
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

    @property
    def held_ms(self) -> float:
        """How long server-played audio would have paused in all."""
        return sum(end - start for start, end in self.held)

    @property
    def quiet_at(self) -> float | None:
        """Where server-played audio would have gone quiet: the first pause, or the barge-in."""
        times = [t for t in (self.held[0][0] if self.held else None, self.cancelled_at) if t is not None]
        return min(times) if times else None


@dataclass
class Task:
    section: str
    snr: float | None
    indices: list[int]
    speed: float
    transcripts: bool
    """Wait for the final transcripts after each clip (for -v and --json)."""
    stt: str
    """An STT engine name (``pocketsphinx``...), or ``null`` for a recogniser that does nothing."""
    warm_up: bool
    """Barge-in: the user speaks a turn first (else the session has heard nothing before)."""
    stimuli_path: Path | None = None
    """A pickle of the clean stimulus sets (made once by the parent), else they are made here."""
    noise_reduction: str | None = None
    """``audio.input.noise_reduction`` type of every session (None: off)."""


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
    """This process's engines with the recogniser ``stt`` (or the ``null`` one), made once."""
    if stt not in _engines:
        recogniser = NullSTT() if stt == "null" else create("stt", stt, _settings)
        _engines[stt] = make_engines(_settings, recogniser)
        await _engines[stt].warm_up()
    return _engines[stt]


async def run_turn(
    settings: Settings,
    engines: Engines,
    mode: str,
    stim: Stimulus,
    speed: float,
    wait_transcripts: bool,
    noise_reduction: str | None = None,
) -> TurnResult:
    probe = Probe(settings, engines, speed, noise_reduction)
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
            await probe.wait_transcribed(TRANSCRIPT_WAIT_S)
    finally:
        await probe.close()
    result.starts = [
        (s.at_ms, int(s.fields["audio_start_ms"])) for s in probe.of("input_audio_buffer.speech_started")
    ]
    result.stops = [
        (s.at_ms, int(s.fields["audio_end_ms"])) for s in probe.of("input_audio_buffer.speech_stopped")
    ]
    result.pushed_ms = probe.position_ms
    result.transcripts = probe.transcripts()
    result.errors = probe.errors
    return result


async def run_barge(
    settings: Settings,
    engines: Engines,
    stim: Stimulus,
    speed: float,
    wait_transcripts: bool,
    warm_up: Stimulus | None,
    noise_reduction: str | None = None,
) -> BargeResult:
    """With ``warm_up``, the user first says something and the response is the one server_vad creates
    for it; else the response comes from ``response.create`` on a session that heard nothing yet."""
    probe = Probe(settings, engines, speed, noise_reduction)
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

        def note_hold() -> bool:
            judging = probe.session.audio.judging_interruption
            open_hold = bool(result.held) and result.held[-1][1] == math.inf
            if judging and not open_hold:
                result.held.append((probe.position_ms, math.inf))
            elif open_hold and not judging:
                result.held[-1] = (result.held[-1][0], probe.position_ms)
            return False

        await probe.push(stim.pcm, stop=note_hold)
        if result.held and result.held[-1][1] == math.inf:
            result.held[-1] = (result.held[-1][0], probe.position_ms)
        if wait_transcripts:
            await probe.wait_transcribed(TRANSCRIPT_WAIT_S)
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
    heard = probe.transcripts()
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
            result = await run_barge(
                settings, engines, stim, task.speed, task.transcripts, warm_up, task.noise_reduction
            )
        else:
            stim = stimuli("turns", task.stimuli_path)[index].at_snr(task.snr)
            result = await run_turn(
                settings, engines, task.section, stim, task.speed, task.transcripts, task.noise_reduction
            )
        result.cpu_s = time.process_time() - started
        out.append(result)
    return out


def run_task_blocking(task: Task) -> list[TurnResult | BargeResult]:
    return asyncio.run(run_task(task))
