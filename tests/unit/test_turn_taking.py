"""Turn-taking policy: barge-in needs words, backchannels and noise are discarded, semantic end of turn.

The detector is scripted (each frame's probability is written in its first sample) and the
transcript is whatever the test says the recogniser heard so far.
"""

from __future__ import annotations

import numpy as np

from parley.engines.base import PCM
from parley.realtime.turn_detection import SpeechStarted, SpeechStopped
from parley.realtime.turn_taking import STABLE_MS, Discarded, TurnEvent, TurnTaking, is_backchannel
from tests.fakes import ScriptedVAD

FRAME = 512  # 32 ms at 16 kHz
SERVER_VAD = {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 0, "silence_duration_ms": 500}


def _frames(p: float, n: int) -> PCM:
    return np.full(n * FRAME, round(p * 1000), dtype=np.int16)


class _Harness:
    def __init__(self, turn: dict[str, object], *, speaking: bool = False) -> None:
        self.assistant_speaking = speaking
        self.text = ""
        self.final: str | None = None
        """What the recogniser makes of the voice once it ends (None: the last partial)."""
        self.onsets: list[int] = []
        self.position_ms = 0.0
        self.turns = TurnTaking(
            turn,
            ScriptedVAD(),
            buffer_start_ms=0,
            assistant_speaking=lambda: self.assistant_speaking,
            transcript=self._transcript,
            final_transcript=self._final_transcript,
            on_onset=self.onsets.append,
            barge_in_min_ms=400,
            barge_in_max_ms=1200,
        )
        self.log: list[tuple[TurnEvent, float]] = []

    async def _transcript(self) -> str:
        return self.text

    async def _final_transcript(self) -> str:
        return self.text if self.final is None else self.final

    async def push(self, p: float, frames: int, text: str | None = None) -> list[TurnEvent]:
        """``frames`` frames of probability ``p``, one frame per push; ``text`` is heard from the start."""
        if text is not None:
            self.text = text
        out: list[TurnEvent] = []
        for _ in range(frames):
            self.position_ms += 32
            events = await self.turns.push(_frames(p, 1), self.position_ms)
            self.log += [(e, self.position_ms) for e in events]
            out += events
        return out


def _types(events: list[TurnEvent]) -> list[str]:
    return [type(e).__name__ for e in events]


def test_backchannel_words() -> None:
    assert is_backchannel("") and is_backchannel("yeah") and is_backchannel("uh huh okay")
    assert is_backchannel("Mm-hmm.") and is_backchannel("Um-hum") and is_backchannel("uh-huh")
    assert not is_backchannel("wait") and not is_backchannel("yeah but no")


async def test_without_assistant_speech_a_turn_starts_at_once() -> None:
    h = _Harness(SERVER_VAD)
    await h.push(0, 10)
    assert _types(await h.push(0.9, 7)) == ["SpeechStarted"]
    assert h.onsets == [320]
    assert _types(await h.push(0, 20)) == ["SpeechStopped"]


async def test_a_backchannel_during_assistant_speech_is_discarded() -> None:
    h = _Harness(SERVER_VAD, speaking=True)
    await h.push(0, 10)
    events = await h.push(0.9, 20, text="yeah")  # 640 ms of "yeah": past the minimum, still no barge-in
    events += await h.push(0, 20)
    assert _types(events) == ["Discarded"]
    assert h.onsets == [320]
    assert isinstance(events[0], Discarded) and events[0].transcript == "yeah"


async def test_noise_without_words_is_discarded() -> None:
    h = _Harness(SERVER_VAD, speaking=True)
    events = await h.push(0.9, 12, text="") + await h.push(0, 20)
    assert _types(events) == ["Discarded"]


async def test_words_confirm_a_barge_in_at_the_minimum_with_the_onset_position() -> None:
    h = _Harness(SERVER_VAD, speaking=True)
    await h.push(0, 10)
    events = await h.push(0.9, 30, text="wait a moment")
    assert _types(events) == ["SpeechStarted"]
    started = events[0]
    assert isinstance(started, SpeechStarted) and started.audio_start_ms == 320
    emitted_at = next(pos for e, pos in h.log if isinstance(e, SpeechStarted))
    # At the minimum, or once a word has had STABLE_MS to settle in a candidate that began after 200 ms.
    assert 320 + 400 <= emitted_at <= 320 + max(400, 200 + STABLE_MS) + 64
    assert _types(await h.push(0, 20)) == ["SpeechStopped"]


async def test_an_ended_candidate_is_judged_on_the_final_transcript() -> None:
    h = _Harness(SERVER_VAD, speaking=True)
    h.final = "right"  # the partials, taken mid-word, said "bro"
    await h.push(0, 10)
    events = await h.push(0.9, 9, text="bro") + await h.push(0, 20)
    assert _types(events) == ["Discarded"]
    h.final = "stop"  # and the other way round: a real word the partials did not have yet
    events = await h.push(0.9, 9, text="") + await h.push(0, 20)
    assert _types(events) == ["SpeechStarted", "SpeechStopped"]


async def test_long_speech_barges_in_whatever_the_words() -> None:
    h = _Harness(SERVER_VAD, speaking=True)
    events = await h.push(0.9, 45, text="mhm")
    assert _types(events) == ["SpeechStarted"]
    emitted_at = next(pos for e, pos in h.log if isinstance(e, SpeechStarted))
    assert emitted_at >= 1200


async def test_a_short_real_word_is_a_late_barge_in_not_a_missed_one() -> None:
    h = _Harness(SERVER_VAD, speaking=True)
    events = await h.push(0.9, 10, text="stop")  # 320 ms: under the minimum
    assert events == []
    events = await h.push(0, 20)
    assert _types(events) == ["SpeechStarted", "SpeechStopped"]


async def test_interrupt_response_off_never_holds_speech_back() -> None:
    h = _Harness({**SERVER_VAD, "interrupt_response": False}, speaking=True)
    assert _types(await h.push(0.9, 8, text="yeah")) == ["SpeechStarted"]


SEMANTIC = {"type": "semantic_vad", "eagerness": "medium", "prefix_padding_ms": 0}


async def test_semantic_vad_waits_through_an_unfinished_pause() -> None:
    h = _Harness(SEMANTIC)
    await h.push(0.9, 30, text="my number is five five five")
    assert _types(await h.push(0, 60)) == []  # 1.9 s of silence: the number is not finished
    await h.push(0.9, 30, text="my number is five five five one two three four five six seven")
    events = await h.push(0, 60)
    assert _types(events) == ["SpeechStopped"]
    event, at = next((e, pos) for e, pos in h.log if isinstance(e, SpeechStopped))
    assert event.audio_end_ms == 32 * 120  # the end of the second piece: one turn
    assert 1600 <= at - event.audio_end_ms <= 1600 + 32  # a full number, no cue of completion: "unknown"


async def test_semantic_vad_ends_a_finished_question_quickly() -> None:
    h = _Harness(SEMANTIC)
    await h.push(0.9, 30, text="what time do you open tomorrow")
    await h.push(0, 30)
    stopped = [(e, pos) for e, pos in h.log if isinstance(e, SpeechStopped)]
    assert len(stopped) == 1
    event, at = stopped[0]
    assert at - event.audio_end_ms <= 400 + 32


async def test_semantic_vad_gives_up_waiting_at_the_maximum() -> None:
    h = _Harness({**SEMANTIC, "eagerness": "high"})
    await h.push(0.9, 30, text="i would like to book a table for")
    await h.push(0, 80)
    stopped = [(e, pos) for e, pos in h.log if isinstance(e, SpeechStopped)]
    assert len(stopped) == 1
    event, at = stopped[0]
    assert 2000 <= at - event.audio_end_ms <= 2000 + 32


async def test_semantic_vad_judges_a_pause_once_on_the_words_before_the_silence() -> None:
    h = _Harness(SEMANTIC)
    await h.push(0.9, 30, text="my number is five five five")
    assert _types(await h.push(0, 10)) == []  # judged at 250 ms: unfinished, so up to 4 s
    # What the recogniser adds during the silence is noise heard as words; it does not end the turn.
    assert _types(await h.push(0, 60, text="my number is five five five thank you")) == []
    assert _types(await h.push(0, 70)) == ["SpeechStopped"]  # the unfinished phrase's 4 s
    event, at = next((e, pos) for e, pos in h.log if isinstance(e, SpeechStopped))
    assert 4000 <= at - event.audio_end_ms <= 4000 + 32


def test_only_server_vad_follows_a_slow_decay_to_an_earlier_speech_end() -> None:
    class Confident(ScriptedVAD):
        confident_probability = 0.95

    def segmenter_for(kind: str) -> float | None:
        turns = TurnTaking(
            {"type": kind},
            Confident(),
            buffer_start_ms=0,
            assistant_speaking=lambda: False,
            transcript=lambda: _no_words(),
            on_onset=lambda _: None,
        )
        return turns.segmenter.confident_probability

    assert segmenter_for("server_vad") == 0.95
    assert segmenter_for("semantic_vad") is None, "semantic_vad errs towards waiting"


async def _no_words() -> str:
    return ""
