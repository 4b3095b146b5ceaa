"""The espeak-ng TTS engine, with real synthesis (espeak-ng output varies slightly run to run)."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import numpy.typing as npt
import pytest

from parley.config import Settings
from parley.engines import registry
from parley.engines.base import EngineError, TextToSpeech
from parley.engines.tts import espeak
from parley.engines.tts.espeak import EspeakTTS, create, words_per_minute
from parley.engines.tts.pieces import split_text

PCM = npt.NDArray[np.int16]
API_VOICES = ["alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"]
SENTENCE = "The quick brown fox jumps over the lazy dog."


@pytest.fixture(scope="module")
def tts() -> EspeakTTS:
    return EspeakTTS()


async def speak(tts: EspeakTTS, text: str, voice: str = "marin", speed: float = 1.0) -> list[PCM]:
    return [chunk async for chunk in tts.synthesize(text, voice=voice, speed=speed)]


def seconds(chunks: list[PCM], rate: int = espeak.NATIVE_RATE) -> float:
    return sum(c.size for c in chunks) / rate


def pitch_hz(pcm: PCM, rate: int = espeak.NATIVE_RATE) -> float:
    """Median autocorrelation pitch over voiced frames."""
    x = pcm.astype(np.float64)
    found: list[float] = []
    frame, lo, hi = 1024, rate // 400, rate // 60
    for start in range(0, x.size - frame, frame):
        w = x[start : start + frame] - x[start : start + frame].mean()
        if np.sqrt(np.mean(w**2)) < 500:
            continue
        corr = np.correlate(w, w, "full")[frame - 1 :]
        lag = lo + int(np.argmax(corr[lo:hi]))
        if corr[lag] > 0.3 * corr[0]:
            found.append(rate / lag)
    return float(np.median(found)) if found else 0.0


def test_engine_shape_and_factory() -> None:
    engine = create(Settings())
    assert isinstance(engine, TextToSpeech)
    assert engine.name == "espeak"
    assert engine.sample_rate == 22050
    assert engine.voices() == API_VOICES
    assert isinstance(registry.create("tts", "espeak", Settings()), EspeakTTS)


def test_every_api_voice_maps_to_a_distinct_espeak_voice(tts: EspeakTTS) -> None:
    mapped = [tts.espeak_voice(v).name for v in API_VOICES]
    assert len(set(mapped)) == len(API_VOICES)
    assert all(name.startswith("en-us+") for name in mapped)


def test_unknown_voice_falls_back_to_default(tts: EspeakTTS) -> None:
    assert tts.espeak_voice("{'id': 'voice_123'}") == tts.espeak_voice("marin")
    assert EspeakTTS(default_voice="cedar").espeak_voice("nope") == tts.espeak_voice("cedar")
    assert create(Settings(voice="not-a-voice")).default_voice == "marin"


async def test_warm_up(tts: EspeakTTS) -> None:
    await tts.warm_up()
    await tts.warm_up()  # idempotent


async def test_synthesis_gives_plausible_audio(tts: EspeakTTS) -> None:
    chunks = await speak(tts, SENTENCE)
    assert chunks
    assert all(c.dtype == np.int16 and c.ndim == 1 for c in chunks)
    audio = np.concatenate(chunks)
    # Nine words at 175 wpm is about three seconds, plus a short end pause.
    assert 1.5 < seconds(chunks) < 6.0
    rms = np.sqrt(np.mean(audio.astype(np.float64) ** 2))
    assert 300 < rms < 20000
    assert np.mean(np.abs(audio) > 200) > 0.3  # mostly speech, not silence
    audio[0] = 0  # chunks are writable


async def test_long_text_comes_sentence_by_sentence(tts: EspeakTTS) -> None:
    text = "First sentence here. Second one is a bit longer than the first. Third! And a fourth?"
    chunks = await speak(tts, text)
    assert len(chunks) == 4
    assert chunks[0].size < sum(c.size for c in chunks) / 3


async def test_unknown_voice_still_speaks(tts: EspeakTTS) -> None:
    assert seconds(await speak(tts, "Hello there.", voice="{'id': 'custom'}")) > 0.3


async def test_voices_sound_different(tts: EspeakTTS) -> None:
    audio = {v: np.concatenate(await speak(tts, SENTENCE, voice=v)) for v in API_VOICES}
    for i, a in enumerate(API_VOICES):
        for b in API_VOICES[i + 1 :]:
            x, y = audio[a], audio[b]
            assert x.size != y.size or not np.array_equal(x, y), (a, b)
    # The female-sounding voices are pitched well above the male ones.
    for female in ("coral", "sage", "shimmer", "marin"):
        for male in ("ash", "ballad", "echo", "verse", "cedar"):
            assert pitch_hz(audio[female]) > 1.4 * pitch_hz(audio[male]), (female, male)
    # Per-voice pitch settings apply, and do not leak into the next voice.
    assert pitch_hz(audio["alloy"]) > 1.15 * pitch_hz(audio["ash"])
    assert pitch_hz(audio["cedar"]) < 0.95 * pitch_hz(audio["ash"])


async def test_speed_changes_duration(tts: EspeakTTS) -> None:
    slow = seconds(await speak(tts, SENTENCE, speed=0.5))
    normal = seconds(await speak(tts, SENTENCE, speed=1.0))
    fast = seconds(await speak(tts, SENTENCE, speed=1.5))
    assert fast < normal < slow
    assert fast < 0.6 * slow


def test_words_per_minute_mapping() -> None:
    assert words_per_minute(1.0) == 175
    assert words_per_minute(1.5) == 262
    assert words_per_minute(0.25) == 80  # espeak-ng's minimum
    assert words_per_minute(10) == 450
    assert words_per_minute(float("nan")) == 175


@pytest.mark.parametrize("text", ["", "   ", "\n\t", "...", " - "])
async def test_empty_text_yields_nothing(tts: EspeakTTS, text: str) -> None:
    assert await speak(tts, text) == []


async def test_concurrent_synthesis_from_many_tasks(tts: EspeakTTS) -> None:
    texts = [f"Task number {i} is speaking now. It says a second sentence." for i in range(8)]
    sequential = [seconds(await speak(tts, t, voice=API_VOICES[i])) for i, t in enumerate(texts)]
    results = await asyncio.gather(
        *(speak(tts, t, voice=API_VOICES[i]) for i, t in enumerate(texts)),
    )
    for chunks, expected in zip(results, sequential, strict=True):
        assert len(chunks) == 2
        # Interleaved callbacks would mix samples between tasks and change the durations.
        assert seconds(chunks) == pytest.approx(expected, abs=0.05)


def test_synthesis_from_several_event_loops_in_threads(tts: EspeakTTS) -> None:
    durations: list[float] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            durations.append(seconds(asyncio.run(speak(tts, SENTENCE, voice="ash"))))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert len(durations) == 4
    assert max(durations) - min(durations) < 0.05


async def test_stopping_early_leaves_engine_usable(tts: EspeakTTS) -> None:
    stream = tts.synthesize("One sentence. Two sentences. Three sentences.", voice="echo")
    async for _ in stream:
        break
    await stream.aclose()  # type: ignore[attr-defined]
    task = asyncio.create_task(speak(tts, "Cancel me. Please. Now. Again. More."))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seconds(await speak(tts, "Still working.")) > 0.3


async def test_library_errors_become_engine_errors(tts: EspeakTTS, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(espeak.VOICE_MAP, "alloy", espeak.Voice("no-such-voice+nothing"))
    with pytest.raises(EngineError):
        await speak(tts, "Hello.", voice="alloy")
    monkeypatch.undo()
    assert seconds(await speak(tts, "Hello.", voice="alloy")) > 0.2


def test_split_text() -> None:
    assert split_text("Hello. World! How are you? Fine") == ["Hello.", "World!", "How are you?", "Fine"]
    assert split_text("Dr. Smith met Mr. Jones at 3.5 p.m. today.") == [
        "Dr. Smith met Mr. Jones at 3.5 p.m. today."
    ]
    assert split_text("Line one\nline two") == ["Line one", "line two"]
    assert split_text('He said "stop." Then left.') == ['He said "stop."', "Then left."]
    assert split_text("  \n ") == []
    long = ", ".join(f"clause number {i} of a very long sentence" for i in range(30)) + "."
    pieces = split_text(long)
    assert len(pieces) > 3
    assert all(len(p) <= 240 for p in pieces)
    assert " ".join(pieces).split() == long.split()
    unbroken = "word " * 200
    assert " ".join(split_text(unbroken)).split() == unbroken.split()
