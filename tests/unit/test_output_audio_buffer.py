"""The output audio buffer of server-played connections: order, started/stopped/cleared, and how
much of each item was heard."""

from __future__ import annotations

import numpy as np

from parley.realtime.output_audio_buffer import OutputAudioBuffer, Played

RATE = 24000
FRAME = 480


def _buffer() -> tuple[OutputAudioBuffer, list[tuple[str, str]]]:
    notes: list[tuple[str, str]] = []
    return OutputAudioBuffer(RATE, lambda kind, rid: notes.append((kind, rid))), notes


def _tone(ms: int, value: int = 1000) -> np.ndarray:
    return np.full(RATE * ms // 1000, value, dtype=np.int16)


def test_audio_plays_in_order_then_silence_and_stops_after_response_done() -> None:
    buffer, notes = _buffer()
    buffer.push("r1", "i1", 0, _tone(30, 7), RATE)
    assert not notes and buffer.playing
    first = buffer.read(FRAME)
    assert notes == [("started", "r1")] and (first == 7).all()
    second = buffer.read(FRAME)
    assert (second[: FRAME // 2] == 7).all() and (second[FRAME // 2 :] == 0).all()
    assert notes == [("started", "r1")]  # drained, but the response may still send audio
    buffer.audio_done("r1", "i1", 0)
    buffer.response_done("r1")
    assert notes == [("started", "r1"), ("stopped", "r1")] and not buffer.playing


def test_stopped_waits_until_the_last_sample_has_played() -> None:
    buffer, notes = _buffer()
    buffer.push("r1", "i1", 0, _tone(40), RATE)
    buffer.response_done("r1")
    buffer.read(FRAME)
    assert notes == [("started", "r1")]
    buffer.read(FRAME)
    assert notes == [("started", "r1"), ("stopped", "r1")]


def test_a_response_without_audio_sends_nothing() -> None:
    buffer, notes = _buffer()
    buffer.response_done("r1")
    buffer.read(FRAME)
    assert notes == []


def test_clear_drops_what_is_queued_and_says_how_much_was_heard() -> None:
    buffer, notes = _buffer()
    buffer.push("r1", "i1", 0, _tone(1000), RATE)
    for _ in range(10):
        buffer.read(FRAME)  # 200 ms played
    audible, cut = buffer.clear()
    assert audible == "r1" and notes == [("started", "r1"), ("cleared", "r1")]
    assert cut == [Played("i1", 0, 200.0)]
    assert (buffer.read(FRAME) == 0).all() and not buffer.playing
    buffer.push("r1", "i1", 0, _tone(100), RATE)  # the cancelled response's late audio is not played
    assert (buffer.read(FRAME) == 0).all()


def test_clear_with_nothing_playing_says_nothing() -> None:
    buffer, notes = _buffer()
    assert buffer.clear() == (None, [])
    assert notes == []


def test_audio_at_another_rate_is_resampled_to_the_playout_rate() -> None:
    buffer, _ = _buffer()
    buffer.push("r1", "i1", 0, _tone(100, 3000)[: 8000 // 10], 8000)  # 100 ms at 8 kHz
    buffer.audio_done("r1", "i1", 0)
    assert abs(buffer.queued_ms - 100) < 2


def test_two_responses_play_one_after_the_other() -> None:
    buffer, notes = _buffer()
    buffer.push("r1", "i1", 0, _tone(20), RATE)
    buffer.response_done("r1")
    buffer.push("r2", "i2", 0, _tone(20), RATE)
    buffer.read(FRAME)
    buffer.read(FRAME)
    buffer.response_done("r2")
    assert notes == [("started", "r1"), ("stopped", "r1"), ("started", "r2"), ("stopped", "r2")]
