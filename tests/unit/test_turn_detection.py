"""server_vad segmentation: the state machine with a scripted detector, then Silero on flite speech."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from parley.audio.resample import StreamResampler, resample
from parley.engines.base import PCM
from parley.engines.vad.silero import SileroVAD
from parley.realtime.turn_detection import ServerVadSegmenter, SpeechStarted, SpeechStopped, TurnEvent
from tests.fakes import ScriptedVAD
from tests.speech import flite_speech

RATE = 16
"""Samples per ms at 16 kHz."""
FRAME = 512

Emitted = list[tuple[TurnEvent, float]]


def _run(seg: ServerVadSegmenter, audio: PCM, chunk: int, start_ms: float = 0.0) -> Emitted:
    """Push ``audio`` in chunks of ``chunk`` samples; each event with the position it was emitted at
    (exact when chunks are no longer than a frame)."""
    out: Emitted = []
    for i in range(0, len(audio), chunk):
        piece = audio[i : i + chunk]
        out += [(e, seg.position_ms) for e in seg.push(piece, start_ms + (i + len(piece)) / RATE)]
    return out


def _events(emitted: Emitted) -> list[TurnEvent]:
    return [e for e, _ in emitted]


def _positions(events: list[TurnEvent]) -> list[int]:
    return [e.audio_start_ms if isinstance(e, SpeechStarted) else e.audio_end_ms for e in events]


def _shifted(events: list[TurnEvent], ms: int) -> list[TurnEvent]:
    return [
        SpeechStarted(e.audio_start_ms + ms)
        if isinstance(e, SpeechStarted)
        else SpeechStopped(e.audio_end_ms + ms)
        for e in events
    ]


# --------------------------------------------------------------------------------------------------
# The state machine, with scripted probabilities


class _Scripted(ScriptedVAD):
    end_lag_ms = 64.0  # like Silero

    def __init__(self) -> None:
        self.resets = 0

    def reset(self) -> None:
        self.resets += 1


def _script(*runs: tuple[float, int]) -> PCM:
    """Audio for the scripted detector: (probability, frames) runs; frame k spans [32k, 32k+32) ms."""
    probs = np.concatenate([np.full(n, p) for p, n in runs])
    return np.repeat(np.round(probs * 1000).astype(np.int16), FRAME)


def _scripted(**kwargs: float) -> ServerVadSegmenter:
    return ServerVadSegmenter(_Scripted(), **kwargs)


@pytest.mark.parametrize("voiced_frames", [1, 2, 6])
def test_short_bursts_do_not_start_a_turn(voiced_frames: int) -> None:
    assert _run(_scripted(), _script((0, 10), (0.9, voiced_frames), (0, 30)), FRAME) == []


def test_turn_positions_and_emission_times() -> None:
    # Voiced frames 10-16 (320-544 ms): 224 ms >= min_speech_ms starts the turn at frame 16.
    emitted = _run(_scripted(), _script((0, 10), (0.9, 7), (0, 30)), FRAME)
    assert emitted == [(SpeechStarted(320 - 300), 544.0), (SpeechStopped(544 - 64), 992.0)]
    # The stop comes on the first frame ending silence_duration_ms after the speech end (480 + 500).


def test_prefix_is_clamped_to_the_buffer_start() -> None:
    assert _events(_run(_scripted(), _script((0, 2), (0.9, 10), (0, 20)), FRAME))[0] == SpeechStarted(0)
    seg = _scripted(buffer_start_ms=100)
    assert _events(_run(seg, _script((0, 5), (0.9, 10), (0, 20)), FRAME))[0] == SpeechStarted(100)


def test_silent_dip_breaks_a_candidate_but_ambiguous_one_does_not() -> None:
    dip = _script((0, 5), (0.9, 4), (0.2, 1), (0.9, 4), (0, 30))
    assert _run(_scripted(), dip, FRAME) == []
    ambiguous = _script((0, 5), (0.9, 4), (0.4, 1), (0.9, 4), (0, 30))
    assert _events(_run(_scripted(), ambiguous, FRAME)) == [
        SpeechStarted(0),
        SpeechStopped(13 * 32 + 32 - 64),
    ]


def test_an_ambiguous_frame_before_speech_is_its_onset() -> None:
    events = _events(_run(_scripted(), _script((0, 20), (0.4, 3), (0.9, 10), (0, 30)), FRAME))
    assert events[0] == SpeechStarted(22 * 32 - 300), "one frame back, no further"


def test_ambiguous_frames_hold_a_turn_open_without_moving_its_end() -> None:
    # 960 ms of ambiguous frames inside a turn do not split it (hysteresis) ...
    held = _script((0, 10), (0.9, 10), (0.4, 30), (0.9, 10), (0, 30))
    assert _events(_run(_scripted(), held, FRAME)) == [SpeechStarted(20), SpeechStopped(60 * 32 - 64)]
    # ... and a turn ending in them stops on the first silent frame, where the last voiced frame ended.
    tail = _run(_scripted(), _script((0, 10), (0.9, 10), (0.4, 30), (0, 30)), FRAME)
    assert tail[1] == (SpeechStopped(20 * 32 - 64), 51 * 32.0)


def test_speaking_and_speech_ms() -> None:
    seg = _scripted()
    _run(seg, _script((0, 10), (0.9, 8)), FRAME)
    assert seg.speaking and seg.speech_ms == 8 * 32
    _run(seg, _script((0.4, 2), (0, 3)), FRAME, start_ms=18 * 32)
    assert seg.speaking and seg.speech_ms == 8 * 32, "only voiced frames lengthen the speech"
    _run(seg, _script((0, 20)), FRAME, start_ms=23 * 32)
    assert not seg.speaking and seg.speech_ms == 0


def test_reset_drops_the_turn_and_moves_the_buffer_start() -> None:
    detector = _Scripted()
    seg = ServerVadSegmenter(detector)
    assert detector.resets == 1, "a new segmenter starts the detector afresh"
    assert _events(_run(seg, _script((0, 10), (0.9, 10)), FRAME)) == [SpeechStarted(20)]
    seg.reset(640)
    assert not seg.speaking and detector.resets == 1, "the audio stream goes on: keep its state"
    events = _events(_run(seg, _script((0.9, 10), (0, 20)), FRAME, start_ms=640))
    assert events == [SpeechStarted(640), SpeechStopped(30 * 32 - 64)]


def test_settings_can_change_between_pushes() -> None:
    seg = _scripted()
    seg.threshold = 0.8
    assert seg.release_threshold == pytest.approx(0.65)
    assert _run(seg, _script((0.7, 20)), FRAME) == []
    seg.silence_duration_ms = 0
    events = _events(_run(seg, _script((0.9, 10), (0.6, 1)), FRAME, start_ms=640))
    assert events == [SpeechStarted(608 - 300), SpeechStopped(30 * 32 - 64)]
    assert _scripted(threshold=0.1).release_threshold == pytest.approx(0.05)


def test_end_lag_comes_from_the_detector() -> None:
    audio = _script((0, 10), (0.9, 10), (0, 30))
    assert _events(_run(ServerVadSegmenter(ScriptedVAD()), audio, FRAME))[1] == SpeechStopped(640)
    assert _events(_run(_scripted(), audio, FRAME))[1] == SpeechStopped(640 - 64)
    assert _events(_run(_scripted(end_lag_ms=10), audio, FRAME))[1] == SpeechStopped(630)


class _Confident(_Scripted):
    confident_probability = 0.95


def test_a_slow_decay_moves_the_speech_end_back_to_the_last_confident_frame() -> None:
    # Confident frames 10-19 end at 640 ms; then the probability decays over three voiced frames.
    decay = _script((0, 10), (1.0, 10), (0.9, 1), (0.7, 1), (0.6, 1), (0, 30))
    assert _events(_run(_scripted(), decay, FRAME))[1] == SpeechStopped(736 - 64), "without: the lag alone"
    emitted = _run(ServerVadSegmenter(_Confident()), decay, FRAME)
    assert emitted[1] == (SpeechStopped(640 - 32), 1120.0), "one frame before the last confident one ends"
    kept = ServerVadSegmenter(_Confident(), follow_decay=False)
    assert _events(_run(kept, decay, FRAME))[1] == SpeechStopped(736 - 64), "follow_decay=False: the lag"
    # A quick decay (one voiced frame after the confident ones) changes nothing ...
    quick = _script((0, 10), (1.0, 10), (0.9, 1), (0, 30))
    assert _events(_run(ServerVadSegmenter(_Confident()), quick, FRAME))[1] == SpeechStopped(672 - 64)
    # ... and a long weak stretch moves the end back by two frames at most.
    weak = _script((0, 10), (1.0, 10), (0.8, 20), (0, 30))
    assert _events(_run(ServerVadSegmenter(_Confident()), weak, FRAME))[1] == SpeechStopped(1280 - 64 - 64)
    # A detector naming no confident level (the scripted one, with 0.9 voiced frames elsewhere) keeps the lag.
    assert ServerVadSegmenter(_Scripted()).confident_probability is None


def test_chunking_and_session_offset_do_not_change_events() -> None:
    audio = _script((0, 10), (0.9, 20), (0.2, 5), (0.9, 8), (0, 20), (0.9, 3), (0, 5), (0.9, 9), (0, 20))
    reference = _events(_run(_scripted(), audio, FRAME))
    assert len(reference) == 4
    rng = np.random.default_rng(5)
    for _ in range(20):
        seg, cuts, out = _scripted(), np.sort(rng.integers(0, len(audio), 40)), []
        for piece, end in zip(np.split(audio, cuts), [*cuts, len(audio)], strict=True):
            out += seg.push(piece, 1000 + end / RATE)
        assert out == _shifted(reference, 1000)


def test_audio_held_back_by_a_resampler_does_not_move_positions() -> None:
    audio = _script((0, 10), (0.9, 20), (0, 20), (0.9, 9), (0, 20))
    reference = _events(_run(_scripted(), audio, FRAME))
    seg, out, sent = _scripted(), [], 0
    for n, wire in enumerate(range(320, len(audio) + 320, 320)):  # 20 ms on the wire per push
        ready = max(sent, min(len(audio), wire - [1800, 1200, 600, 0][n % 4]))
        out += seg.push(audio[sent:ready], 5000 + wire / RATE)
        sent = ready
    assert out == _shifted(reference, 5000)


def test_rejects_audio_that_is_not_int16() -> None:
    with pytest.raises(ValueError):
        _scripted().push(np.zeros(FRAME, np.float32), 32)


# --------------------------------------------------------------------------------------------------
# Silero on flite speech

WEATHER = "What is the weather like in Paris tomorrow morning?"
TIMER = "Set a timer for five minutes."


@functools.cache
def _utterance(text: str) -> PCM:
    """``text`` spoken by flite's rms voice at 16 kHz, trimmed to where it is above -50 dBFS (10 ms RMS)."""
    speech = flite_speech(text, 16_000)
    power = np.convolve(speech.astype(np.float64) ** 2, np.ones(10 * RATE) / (10 * RATE), "same")
    loud = np.nonzero(power > (32768 * 10 ** (-50 / 20)) ** 2)[0]
    return speech[loud[0] : loud[-1] + 1]


def _scene(*parts: str | float, snr_db: float | None = None) -> tuple[PCM, list[tuple[float, float]]]:
    """Texts and silences (ms), optionally under white noise; the audio and each utterance's span (ms)."""
    pieces: list[PCM] = []
    spans: list[tuple[float, float]] = []
    at = 0
    for part in parts:
        piece = _utterance(part) if isinstance(part, str) else np.zeros(round(part * RATE), np.int16)
        if isinstance(part, str):
            spans.append((at / RATE, (at + len(piece)) / RATE))
        pieces.append(piece)
        at += len(piece)
    audio = np.concatenate(pieces).astype(np.float64)
    if snr_db is not None:
        speech_power = np.mean(np.concatenate([_utterance(p) for p in parts if isinstance(p, str)]) ** 2.0)
        noise = np.random.default_rng(11).standard_normal(len(audio))
        audio += noise * np.sqrt(speech_power / 10 ** (snr_db / 10))
    return np.clip(np.round(audio), -32768, 32767).astype(np.int16), spans


def _silero(**kwargs: float) -> ServerVadSegmenter:
    return ServerVadSegmenter(SileroVAD(), **kwargs)


def _assert_turn(emitted: Emitted, span: tuple[float, float], silence_ms: float = 500) -> None:
    (start, started_at), (stop, stopped_at) = emitted
    assert isinstance(start, SpeechStarted) and isinstance(stop, SpeechStopped)
    onset, end = span
    assert abs(start.audio_start_ms - (onset - 300)) <= 32, (start, onset)
    assert onset + 100 < started_at < onset + 400, "a turn starts promptly, but not on the first frame"
    assert abs(stop.audio_end_ms - end) <= 64, (stop, end)
    assert stopped_at >= stop.audio_end_ms + silence_ms, "emitted only after silence_duration_ms"
    assert end + silence_ms - 64 <= stopped_at <= end + silence_ms + 96, (stopped_at, end)


@pytest.mark.parametrize("snr_db", [None, 20.0])
def test_one_utterance_gives_one_turn(snr_db: float | None) -> None:
    audio, spans = _scene(1007.0, WEATHER, 1500.0, snr_db=snr_db)
    _assert_turn(_run(_silero(), audio, 20 * RATE), spans[0])


def test_a_short_pause_does_not_split_an_utterance() -> None:
    audio, spans = _scene(1000.0, WEATHER, 300.0, TIMER, 1500.0)
    _assert_turn(_run(_silero(), audio, 20 * RATE), (spans[0][0], spans[1][1]))


def test_a_long_pause_gives_two_turns() -> None:
    audio, spans = _scene(1000.0, WEATHER, 1500.0, TIMER, 1500.0, snr_db=20.0)
    emitted = _run(_silero(), audio, 20 * RATE)
    assert len(emitted) == 4
    _assert_turn(emitted[:2], spans[0])
    _assert_turn(emitted[2:], spans[1])


def test_positions_survive_the_sessions_streaming_resampler() -> None:
    audio, _ = _scene(1000.0, WEATHER, 1500.0, TIMER, 1500.0)
    reference = _events(_run(_silero(), audio, 320))
    wire = resample(audio, 16_000, 24_000)
    stream, seg, out = StreamResampler(24_000, 16_000), _silero(), []
    for i in range(0, len(wire), 480):  # 20 ms chunks of 24 kHz audio, as a client sends them
        out += seg.push(stream.process(wire[i : i + 480]), min(i + 480, len(wire)) / 24)
    assert len(out) == len(reference) == 4
    for got, want in zip(_positions(out), _positions(reference), strict=True):
        assert abs(got - want) <= 8, (out, reference)


def test_reset_after_a_commit_clamps_the_prefix() -> None:
    audio, spans = _scene(1000.0, WEATHER, 1500.0)
    committed = round((spans[0][0] - 100) * RATE)
    seg = _silero()
    assert seg.push(audio[:committed], committed / RATE) == []
    seg.reset(committed / RATE)
    events = seg.push(audio[committed:], len(audio) / RATE)
    assert events[0] == SpeechStarted(committed // RATE) and len(events) == 2


def test_clicks_give_no_turn() -> None:
    audio = np.zeros(3 * 16_000, np.int16)
    for at in (8_000, 16_100, 24_300):
        audio[at : at + 3 * RATE] = 32767  # 3 ms full-scale impulse
    alternating = np.where(np.arange(3 * RATE) % 2, 32767, -32768)
    audio[32_000 : 32_000 + 3 * RATE] = alternating
    assert _run(_silero(), audio, 20 * RATE) == []


def test_a_cough_like_burst_gives_no_turn() -> None:
    rng = np.random.default_rng(3)
    t = np.arange(100 * RATE) / 16_000
    envelope = np.minimum(1, t / 0.005) * np.exp(-t / 0.03)
    noise = np.convolve(rng.standard_normal(len(t)), np.ones(4) / 4, "same")  # duller than white
    burst = 30_000 * envelope * noise / np.abs(noise).max()
    audio = np.zeros(2 * 16_000, np.int16)
    audio[16_000 : 16_000 + len(burst)] = burst.astype(np.int16)
    assert _run(_silero(), audio, 20 * RATE) == []


def test_a_100_ms_speech_blip_gives_no_turn_unless_min_speech_is_zero() -> None:
    speech = _utterance(WEATHER).astype(np.float64)
    start = int(np.argmax(np.convolve(speech**2, np.ones(100 * RATE), "valid")))  # loudest 100 ms
    blip = speech[start : start + 100 * RATE] * np.minimum(
        1, np.minimum(np.arange(1600), np.arange(1600)[::-1]) / 80
    )
    audio = np.zeros(2 * 16_000, np.int16)
    audio[16_000 : 16_000 + len(blip)] = blip.astype(np.int16)
    assert _run(_silero(), audio, 20 * RATE) == []
    assert len(_run(_silero(min_speech_ms=0), audio, 20 * RATE)) == 2, "Silero does score the blip as speech"


def test_chunk_size_does_not_change_the_events() -> None:
    audio, _ = _scene(1000.0, WEATHER, 300.0, TIMER, 1500.0, "Yes.", 1000.0, snr_db=20.0)
    audio[8_000 : 8_000 + 3 * RATE] = 32767
    runs = {chunk: _events(_run(_silero(), audio, chunk, start_ms=12_345)) for chunk in (320, 1600, 112)}
    runs[len(audio)] = _silero().push(audio, 12_345 + len(audio) / RATE)
    reference = _events(_run(_silero(), audio, 320))
    assert len(reference) == 4
    assert all(events == _shifted(reference, 12_345) for events in runs.values()), runs
