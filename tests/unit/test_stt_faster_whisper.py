"""The faster-whisper STT engine on a tiny random Whisper model: the real load and decode path.

The model's weights are random, so its text is garbage: the tests assert on the flow (partials while
audio grows, finals with word timings, options reaching faster-whisper, errors, cancellation).
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from parley.config import Settings
from parley.engines import registry
from parley.engines.base import PCM, EngineError, MissingDependencyError, SpeechToText

pytest.importorskip("faster_whisper")

from parley.engines.stt.faster_whisper import (
    SAMPLE_RATE,
    WINDOW_SAMPLES,
    FasterWhisperSTT,
    WhisperOptions,
    WhisperStream,
    create,
    whisper_language,
)
from tests.engine_models.whisper import build_whisper_model

CHUNK = SAMPLE_RATE // 10  # 100 ms
EMPTY = np.zeros(0, dtype=np.int16)


def noise(seconds: float, seed: int = 0) -> PCM:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(seconds * SAMPLE_RATE)) * 3000).astype(np.int16)


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """A guard: the Hugging Face hub client refuses to download (HF_HUB_OFFLINE, read at its import)."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_whisper_model(tmp_path_factory.mktemp("whisper") / "tiny-random")


@pytest.fixture(scope="module")
def english_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_whisper_model(tmp_path_factory.mktemp("whisper") / "tiny-random.en", multilingual=False)


def make_engine(model: Path | str, **options: Any) -> FasterWhisperSTT:
    return FasterWhisperSTT(WhisperOptions(model=str(model), threads=1, **options))


@pytest.fixture(scope="module")
def engine(model_dir: Path) -> FasterWhisperSTT:
    return make_engine(model_dir, partial_ms=300, beam_size=2)


class TranscribeSpy:
    """Records the keyword arguments of every ``WhisperModel.transcribe`` call."""

    def __init__(self, engine: FasterWhisperSTT, monkeypatch: pytest.MonkeyPatch) -> None:
        model = engine.model()
        self.calls: list[dict[str, Any]] = []
        original = model.transcribe

        def transcribe(audio: np.ndarray[Any, Any], **kwargs: Any) -> Any:
            self.calls.append({"samples": len(audio), **kwargs})
            return original(audio, **kwargs)

        monkeypatch.setattr(model, "transcribe", transcribe)

    def partials(self) -> list[dict[str, Any]]:
        return [call for call in self.calls if not call.get("word_timestamps")]

    def finals(self) -> list[dict[str, Any]]:
        return [call for call in self.calls if call.get("word_timestamps")]


async def wait_idle(engine: FasterWhisperSTT) -> None:
    """Wait for every decode of the engine to end (abandoned ones included)."""
    for _ in range(6000):  # a minute at most
        if not engine.in_flight:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{engine.in_flight} decodes still running")


async def settle(engine: FasterWhisperSTT, stream: WhisperStream) -> str | None:
    """Wait for the engine's decodes to end, then collect a partial with an empty feed."""
    await wait_idle(engine)
    return await stream.feed(EMPTY)


async def feed_paced(engine: FasterWhisperSTT, stream: WhisperStream, pcm: PCM) -> list[str]:
    """Feed ``pcm`` in chunks, letting every partial decode end before the next chunk."""
    partials: list[str] = []
    for start in range(0, len(pcm), CHUNK):
        for partial in (await stream.feed(pcm[start : start + CHUNK]), await settle(engine, stream)):
            if partial is not None:
                partials.append(partial)
    return partials


# --------------------------------------------------------------------------------------------------
# Configuration


@pytest.mark.parametrize(
    ("tag", "code"),
    [
        ("en-US", "en"),
        ("EN", "en"),
        ("zh-Hant-TW", "zh"),
        ("fr_CA", "fr"),
        ("yue", "yue"),
        ("nb-NO", "no"),
        ("auto", None),
        ("", None),
        (None, None),
    ],
)
def test_language_tags_become_whisper_codes(tag: str | None, code: str | None) -> None:
    assert whisper_language(tag) == code


def test_create_from_settings_through_the_registry(model_dir: Path) -> None:
    stt = registry.create("stt", "faster-whisper", Settings(stt_whisper_model=str(model_dir)))
    assert isinstance(stt, FasterWhisperSTT)
    assert isinstance(stt, SpeechToText)
    assert stt.sample_rate == 16000
    assert not stt.loaded, "the model loads on first use or warm-up, not at creation"


def test_an_unset_model_names_the_setting() -> None:
    with pytest.raises(EngineError, match="PARLEY_STT_WHISPER_MODEL"):
        create(Settings(stt_whisper_model=None))


def test_a_missing_model_directory_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "models" / "whisper-small"
    with pytest.raises(EngineError, match="no such model directory") as error:
        create(Settings(stt_whisper_model=str(missing)))
    assert str(missing) in str(error.value)
    with pytest.raises(EngineError, match=r"no model\.bin"):
        create(Settings(stt_whisper_model=str(tmp_path)))


def test_model_names_are_left_to_download() -> None:
    assert create(Settings(stt_whisper_model="tiny.en")).options.model == "tiny.en"
    assert create(Settings(stt_whisper_model="Systran/faster-whisper-small")).options.model


def test_missing_library_names_the_install_command(monkeypatch: pytest.MonkeyPatch, model_dir: Path) -> None:
    monkeypatch.setitem(sys.modules, "faster_whisper", None)
    with pytest.raises(MissingDependencyError, match=r"parley\[faster-whisper\]"):
        create(Settings(stt_whisper_model=str(model_dir)))


async def test_a_download_failure_is_an_engine_error() -> None:
    stt = make_engine("tiny.en")  # HF_HUB_OFFLINE: the download fails at once
    with pytest.raises(EngineError, match="could not download"):
        await stt.warm_up()


async def test_a_bad_compute_type_names_its_setting(model_dir: Path) -> None:
    stt = make_engine(model_dir, compute_type="int9", partial_ms=300)
    with pytest.raises(EngineError, match="PARLEY_STT_WHISPER_COMPUTE_TYPE"):
        await stt.warm_up()
    stream = stt.start()
    await stream.feed(noise(0.5))  # starts a partial decode, which fails to load the model
    with pytest.raises(EngineError, match="PARLEY_STT_WHISPER_COMPUTE_TYPE"):  # from a later feed
        for _ in range(1000):
            await stream.feed(EMPTY)
            await asyncio.sleep(0.01)


# --------------------------------------------------------------------------------------------------
# Recognition


async def test_warm_up_loads_the_model(model_dir: Path) -> None:
    stt = make_engine(model_dir)
    await stt.warm_up()
    assert stt.loaded
    assert stt.in_flight == 0


async def test_final_transcription_with_word_timings(engine: FasterWhisperSTT) -> None:
    stream = engine.start(language="en-US")
    pcm = noise(2.0)
    for start in range(0, len(pcm), CHUNK):
        await stream.feed(pcm[start : start + CHUNK])
    result = await stream.finish()
    assert isinstance(result.text, str) and result.text == result.text.strip()
    assert result.audio_seconds == pytest.approx(2.0)
    assert result.language == "en"
    assert result.words, "the random model says something on noise"
    for word in result.words:
        assert word.text and word.text == word.text.strip() and word.text in result.text
        assert 0.0 <= word.start <= word.end <= result.audio_seconds
    assert [w.start for w in result.words] == sorted(w.start for w in result.words)
    assert await stream.finish() is result, "finish() is repeatable"
    stream.close()
    stream.close()  # idempotent


async def test_partials_come_while_the_audio_grows(engine: FasterWhisperSTT) -> None:
    stream = engine.start(language="en")
    partials = await feed_paced(engine, stream, noise(2.0, seed=1))
    assert len(partials) >= 2, partials
    assert all(isinstance(p, str) and p for p in partials)
    assert all(a != b for a, b in itertools.pairwise(partials)), "a partial repeats"
    await stream.finish()


async def test_one_partial_decode_per_stream_at_a_time(
    engine: FasterWhisperSTT, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = TranscribeSpy(engine, monkeypatch)
    stream = engine.start(language="en")
    pcm = noise(3.0, seed=2)
    for start in range(0, len(pcm), CHUNK):  # as fast as possible: decodes are skipped, not queued
        await stream.feed(pcm[start : start + CHUNK])
        assert engine.in_flight <= 1
    await settle(engine, stream)
    assert 1 <= len(spy.partials()) < len(pcm) // engine.partial_samples
    await stream.finish()


async def test_options_reach_faster_whisper(
    engine: FasterWhisperSTT, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = TranscribeSpy(engine, monkeypatch)
    stream = engine.start(language="fr-CA", prompt="  Parley, Realtime API ", channel={"source_rate": 8000})
    await feed_paced(engine, stream, noise(1.0, seed=3))
    result = await stream.finish()
    assert result.language == "fr"
    partial, final = spy.partials()[0], spy.finals()[-1]
    assert partial["language"] == final["language"] == "fr"
    assert partial["initial_prompt"] == final["initial_prompt"] == "Parley, Realtime API"
    assert partial["beam_size"] == 1 and partial["without_timestamps"] and partial["temperature"] == 0.0
    assert final["beam_size"] == 2 and final["word_timestamps"]
    assert final["vad_filter"] is False and final["condition_on_previous_text"] is False
    assert final["samples"] == SAMPLE_RATE


async def test_the_language_is_detected_when_not_given(engine: FasterWhisperSTT) -> None:
    stream = engine.start()
    await stream.feed(noise(1.0, seed=4))
    result = await stream.finish()
    assert result.language in engine.model().supported_languages


async def test_partials_hear_the_last_30_seconds(
    engine: FasterWhisperSTT, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = TranscribeSpy(engine, monkeypatch)
    stream = engine.start(language="en")
    await stream.feed(np.zeros(WINDOW_SAMPLES + SAMPLE_RATE, dtype=np.int16))
    await settle(engine, stream)
    assert [call["samples"] for call in spy.partials()] == [WINDOW_SAMPLES]
    stream.close()


async def test_an_unsupported_language_is_refused(engine: FasterWhisperSTT, english_dir: Path) -> None:
    engine.model()
    with pytest.raises(EngineError, match="cannot recognise 'tlh'") as error:
        engine.start(language="tlh")
    assert error.value.code == "unsupported_language"
    english = make_engine(english_dir)
    stream = english.start(language="de")  # not loaded yet: refused by the decode
    await stream.feed(noise(0.5))
    with pytest.raises(EngineError, match="English-only"):
        await stream.finish()
    english_stream = english.start(language="en-GB")
    await english_stream.feed(noise(0.5))
    assert (await english_stream.finish()).language == "en"


async def test_finishing_without_audio_gives_an_empty_transcript(engine: FasterWhisperSTT) -> None:
    result = await engine.start(language="en").finish()
    assert (result.text, result.audio_seconds, result.words) == ("", 0.0, ())


async def test_two_streams_decode_concurrently(engine: FasterWhisperSTT) -> None:
    async def recognise(seed: int) -> float:
        stream = engine.start(language="en")
        await feed_paced(engine, stream, noise(1.0, seed=seed))
        return (await stream.finish()).audio_seconds

    assert list(await asyncio.gather(recognise(5), recognise(6))) == [1.0, 1.0]


# --------------------------------------------------------------------------------------------------
# Cancellation and closing


async def test_a_cancelled_finish_returns_and_closes_the_stream(engine: FasterWhisperSTT) -> None:
    stream = engine.start(language="en")
    await stream.feed(noise(45.0, seed=7))  # two windows or more: the decode stops between them
    task = asyncio.create_task(stream.finish())
    await asyncio.sleep(0.05)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(EngineError, match="closed"):
        await stream.finish()
    with pytest.raises(EngineError):
        await stream.feed(noise(0.1))
    await wait_idle(engine)  # the abandoned decode ends in the background


async def test_close_during_finish_makes_finish_fail_cleanly(engine: FasterWhisperSTT) -> None:
    stream = engine.start(language="en")
    await stream.feed(noise(5.0, seed=8))
    task = asyncio.create_task(stream.finish())
    await asyncio.sleep(0.01)
    stream.close()
    with pytest.raises(EngineError, match="closed"):
        await task
    await wait_idle(engine)


async def test_close_drops_a_running_partial(engine: FasterWhisperSTT) -> None:
    stream = engine.start(language="en")
    await stream.feed(noise(1.0, seed=9))
    assert engine.in_flight == 1
    stream.close()
    stream.close()
    await wait_idle(engine)
    with pytest.raises(EngineError, match="closed"):
        await stream.finish()
