"""The pocketsphinx STT engine on real flite speech: recognition, streaming, the decoder pool."""

from __future__ import annotations

import asyncio
import gc
import itertools

import numpy as np
import pytest

from parley.config import Settings
from parley.engines import registry
from parley.engines.base import PCM, EngineError, RecognitionStream, SpeechToText, Transcription
from parley.engines.stt.pocketsphinx import CMN_INIT, DecoderPool, PocketsphinxSTT, _Slot, _Stale, is_english
from tests.speech import flite_speech, mix_at_snr, silence, white_noise

ORDER = "I would like to check the status of my order"
WEATHER = "The weather in London is cloudy with a chance of rain"
REFUND = "Cancel my subscription and send me a refund"
CHUNK = 320  # 20 ms at 16 kHz


def utterance(text: str) -> PCM:
    return np.concatenate([silence(300), flite_speech(text), silence(500)])


async def recognise(stream: RecognitionStream, pcm: PCM, chunk: int = CHUNK) -> tuple[str, list[str]]:
    partials: list[str] = []
    for start in range(0, len(pcm), chunk):
        partial = await stream.feed(pcm[start : start + chunk])
        if partial is not None:
            partials.append(partial)
    result = await stream.finish()
    return result.text, partials


@pytest.fixture(scope="module")
def stt() -> PocketsphinxSTT:
    return PocketsphinxSTT(max_decoders=2)


@pytest.mark.parametrize(
    ("text", "keywords"),
    [
        (ORDER, {"check", "status", "order"}),
        (WEATHER, {"weather", "london", "rain"}),
        (REFUND, {"subscription", "refund"}),
    ],
)
async def test_recognises_flite_sentences(stt: PocketsphinxSTT, text: str, keywords: set[str]) -> None:
    heard, _ = await recognise(stt.start(language="en"), utterance(text))
    assert keywords <= set(heard.split()), heard


async def test_partials_stream_before_finish(stt: PocketsphinxSTT) -> None:
    stream = stt.start()
    partials: list[str] = []
    pcm = utterance(ORDER)
    for start in range(0, len(pcm), CHUNK):
        partial = await stream.feed(pcm[start : start + CHUNK])
        if partial is not None:
            partials.append(partial)
    assert partials, "no partial hypothesis before finish()"
    assert all(a != b for a, b in itertools.pairwise(partials)), "partials repeat"
    assert "status" in partials[-1].split()
    result = await stream.finish()
    assert isinstance(result, Transcription)
    assert "order" in result.text.split()
    assert result.language == "en"
    assert result.audio_seconds == pytest.approx(len(pcm) / 16000)


async def test_one_big_chunk_gives_the_same_text_as_small_chunks() -> None:
    stt = PocketsphinxSTT(max_decoders=1)
    pcm = utterance(WEATHER)
    small, _ = await recognise(stt.start(), pcm)  # each on a new channel: the same cepstral mean
    big, _ = await recognise(stt.start(), pcm, chunk=len(pcm))
    assert big == small
    assert "london" in big.split()


async def test_two_concurrent_streams_on_one_engine() -> None:
    stt = PocketsphinxSTT(max_decoders=2)
    first, second = await asyncio.gather(
        recognise(stt.start(), utterance(ORDER)), recognise(stt.start(), utterance(WEATHER), chunk=480)
    )
    assert {"status", "order"} <= set(first[0].split()), first[0]
    assert {"weather", "rain"} <= set(second[0].split()), second[0]
    assert "weather" not in first[0] and "order" not in second[0]
    assert stt.pool.built == 2
    assert stt.pool.idle == 2


async def test_more_streams_than_decoders_wait_and_reuse() -> None:
    stt = PocketsphinxSTT(max_decoders=2)
    texts = [ORDER, WEATHER, REFUND]
    results = await asyncio.gather(*(recognise(stt.start(), utterance(t), chunk=1600) for t in texts))
    heard = [set(text.split()) for text, _ in results]
    assert {"status", "order"} <= heard[0]
    assert {"weather", "rain"} <= heard[1]
    assert "refund" in heard[2]
    assert stt.pool.built == 2, "the pool grew past its bound"
    assert stt.pool.live == 2


async def test_decoders_are_reused_across_utterances() -> None:
    stt = PocketsphinxSTT(max_decoders=1)
    channel: dict[str, object] = {}
    for text, word in [(ORDER, "status"), (REFUND, "refund"), (WEATHER, "london")]:
        heard, _ = await recognise(stt.start(channel=channel), utterance(text), chunk=1600)
        assert word in heard.split(), heard
    assert stt.pool.built == 1
    assert stt.pool.idle == 1
    assert channel["cmn"] != CMN_INIT, "the cepstral mean is carried from one utterance to the next"
    other: dict[str, object] = {}
    await recognise(stt.start(channel=other), utterance(ORDER), chunk=1600)
    assert other["cmn"] != channel["cmn"], "each channel adapts on its own"


async def test_empty_utterance_is_empty_text(stt: PocketsphinxSTT) -> None:
    result = await stt.start().finish()
    assert result.text == ""
    assert result.audio_seconds == 0.0
    heard, partials = await recognise(stt.start(), silence(1000))
    assert heard == ""
    assert partials == []


async def test_closed_stream_does_not_leak_into_the_next_utterance() -> None:
    stt = PocketsphinxSTT(max_decoders=1)
    abandoned = stt.start()
    await abandoned.feed(utterance(WEATHER)[:24000])
    abandoned.close()
    abandoned.close()  # idempotent
    with pytest.raises(EngineError):
        await abandoned.finish()
    heard, _ = await recognise(stt.start(), utterance(ORDER))
    assert heard.startswith("i would") and {"status", "order"} <= set(heard.split()), heard
    assert stt.pool.built == 1


async def test_cancelled_feed_then_close_frees_the_decoder() -> None:
    stt = PocketsphinxSTT(max_decoders=1)
    stream = stt.start()
    await stream.feed(silence(100))  # the stream holds the decoder now
    task = asyncio.create_task(stream.feed(np.tile(utterance(REFUND), 3)))
    await asyncio.sleep(0)  # let the feed hand its audio to a worker thread
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    stream.close()
    heard, _ = await recognise(stt.start(), utterance(WEATHER))
    assert heard.startswith("the weather") and "rain" in heard.split(), heard
    assert stt.pool.built == 1


async def test_a_waiting_stream_can_be_cancelled() -> None:
    stt = PocketsphinxSTT(max_decoders=1)
    holder = stt.start()
    await holder.feed(silence(100))
    waiting = asyncio.create_task(stt.start().feed(silence(100)))
    await asyncio.sleep(0.01)
    assert not waiting.done(), "a second stream must wait for the only decoder"
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    holder.close()
    heard, _ = await recognise(stt.start(), utterance(REFUND), chunk=1600)
    assert "refund" in heard.split()
    assert stt.pool.built == 1


def test_work_queued_under_an_ended_lease_is_skipped() -> None:
    slot = _Slot(decoder=None)  # the work below never touches it
    lease = slot.generation
    assert slot.run(lease, lambda s: "ran") == "ran"
    DecoderPool(1).release(slot)
    with pytest.raises(_Stale):
        slot.run(lease, lambda s: "ran")


async def test_a_stream_dropped_without_close_gives_its_decoder_back() -> None:
    stt = PocketsphinxSTT(max_decoders=1)
    stream = stt.start()
    await stream.feed(silence(100))
    assert stt.pool.idle == 0
    del stream
    gc.collect()
    assert stt.pool.idle == 1


async def test_finish_is_repeatable_and_feed_after_finish_fails(stt: PocketsphinxSTT) -> None:
    stream = stt.start()
    await stream.feed(utterance(REFUND))
    first = await stream.finish()
    assert await stream.finish() == first
    with pytest.raises(EngineError):
        await stream.feed(silence(20))
    stream.close()


async def test_feed_checks_the_sample_format(stt: PocketsphinxSTT) -> None:
    stream = stt.start()
    with pytest.raises(TypeError):
        await stream.feed(np.zeros(320, dtype=np.float32))
    with pytest.raises(ValueError):
        await stream.feed(np.zeros((160, 2), dtype=np.int16))
    stream.close()


@pytest.mark.parametrize("language", ["fr", "de-DE", "zh", "es_ES", "eng-x"])
def test_other_languages_are_refused(stt: PocketsphinxSTT, language: str) -> None:
    with pytest.raises(EngineError) as info:
        stt.start(language=language)
    message = str(info.value)
    assert "English" in message and "PARLEY_STT" in message and repr(language) in message


@pytest.mark.parametrize("language", [None, "", "en", "EN", "en-US", "en_gb", "en-Latn-GB"])
def test_english_codes_are_accepted(stt: PocketsphinxSTT, language: str | None) -> None:
    assert is_english(language)
    stt.start(language=language, prompt="order numbers and product names").close()


async def test_prompt_is_accepted_and_ignored(stt: PocketsphinxSTT) -> None:
    heard, _ = await recognise(stt.start(prompt="Talk about the weather."), utterance(REFUND))
    assert "refund" in heard.split()


async def test_warm_up_builds_one_decoder() -> None:
    stt = PocketsphinxSTT(max_decoders=3)
    await stt.warm_up()
    assert stt.pool.built == 1
    assert stt.pool.idle == 1


async def test_slightly_noisy_speech_is_recognised(stt: PocketsphinxSTT) -> None:
    noisy = mix_at_snr(utterance(ORDER), white_noise(1000, dbfs=-30), snr_db=30)
    heard, _ = await recognise(stt.start(), noisy)
    assert {"status", "order"} <= set(heard.split()), heard


def test_registry_creates_the_engine() -> None:
    engine = registry.create("stt", "pocketsphinx", Settings())
    assert isinstance(engine, PocketsphinxSTT)
    assert isinstance(engine, SpeechToText)
    assert engine.name == "pocketsphinx" and engine.sample_rate == 16000
    stream = engine.start()
    assert isinstance(stream, RecognitionStream)
    stream.close()


# The speech helpers other tests rely on.


def test_flite_speech_is_cached_and_resampled() -> None:
    at16 = flite_speech(ORDER)
    assert at16.dtype == np.int16 and at16.ndim == 1
    assert flite_speech(ORDER) is at16
    at24 = flite_speech(ORDER, rate=24000)
    assert len(at24) == pytest.approx(len(at16) * 1.5, abs=2)
    assert np.abs(at16.astype(np.int32)).max() > 3000, "speech should not be near silence"


def test_noise_level_and_snr_mixing() -> None:
    assert len(silence(250, 8000)) == 2000 and not silence(250).any()
    noise = white_noise(2000, dbfs=-20)
    rms = np.sqrt(np.mean(noise.astype(np.float64) ** 2))
    assert 20 * np.log10(rms / 32768) == pytest.approx(-20, abs=0.2)
    speech = flite_speech(WEATHER)
    mixed = mix_at_snr(speech, noise, snr_db=10)
    added = mixed.astype(np.float64) - speech
    snr = 20 * np.log10(np.sqrt(np.mean(speech.astype(np.float64) ** 2)) / np.sqrt(np.mean(added**2)))
    assert snr == pytest.approx(10, abs=0.2)
