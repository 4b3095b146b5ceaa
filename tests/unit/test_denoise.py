"""The RNNoise noise suppressor on real flite speech: it removes noise, keeps speech, and streams."""

from __future__ import annotations

import numpy as np
import pytest

from parley.config import Settings
from parley.engines import registry
from parley.engines.base import PCM, MissingDependencyError, NoiseReductionType, NoiseSuppressor
from parley.engines.denoise import rnnoise
from parley.engines.denoise.rnnoise import RNNoiseSuppressor
from parley.engines.stt.pocketsphinx import CMN_INIT, PocketsphinxSTT
from parley.engines.vad.silero import SileroVAD
from parley.realtime.input_denoise import HeardAudio
from tests.fakes import fake_engines
from tests.speech import flite_speech, mix_at_snr, pink_noise, silence, spectral_snr, white_noise

ORDER = "I would like to check the status of my order"
WEATHER = "The weather in London is cloudy with a chance of rain"
REFUND = "Cancel my subscription and send me a refund"
SENTENCES = {
    ORDER: {"check", "status", "order"},
    WEATHER: {"weather", "london", "rain"},
    REFUND: {"subscription", "refund"},
}
CHUNK = 320  # 20 ms at 16 kHz
KINDS: tuple[NoiseReductionType, ...] = ("near_field", "far_field")


def utterance(text: str) -> PCM:
    return np.concatenate([silence(300), flite_speech(text), silence(500)])


def noisy(clean: PCM, snr_db: float, seed: int) -> PCM:
    return mix_at_snr(clean, white_noise(len(clean) / 16, dbfs=-30, seed=seed), snr_db)


def denoise(pcm: PCM, kind: NoiseReductionType = "near_field", strength: float | None = None) -> PCM:
    """``pcm`` through a fresh suppressor in 20 ms chunks, flushed: as long as ``pcm`` and aligned."""
    suppressor = RNNoiseSuppressor(kind, strength)
    out = [suppressor.process(pcm[i : i + CHUNK]) for i in range(0, len(pcm), CHUNK)]
    return np.concatenate([*out, suppressor.flush()])


def level_db(pcm: PCM) -> float:
    return float(10 * np.log10(np.mean(pcm.astype(np.float64) ** 2) + 1e-9))


# -------------------------------------------------------------------------------------- quality


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("snr_db", "gain_db"), [(10, 3.0), (0, 8.0)])
def test_white_noise_snr_improves(kind: NoiseReductionType, snr_db: float, gain_db: float) -> None:
    gains = []
    for seed, text in enumerate(SENTENCES, start=1):
        clean = utterance(text)
        mixed = noisy(clean, snr_db, seed)
        gains.append(spectral_snr(clean, denoise(mixed, kind)) - spectral_snr(clean, mixed))
    # Measured: +5 to +6.6 dB at 10 dB SNR and +13 to +14 dB at 0 dB, for both kinds.
    assert min(gains) >= gain_db, gains


@pytest.fixture(scope="module")
def stt() -> PocketsphinxSTT:
    return PocketsphinxSTT(max_decoders=1)


async def recognise(stt: PocketsphinxSTT, pcm: PCM) -> set[str]:
    stt.pool.cmn = CMN_INIT  # every utterance starts from the same cepstral mean
    stream = stt.start()
    for start in range(0, len(pcm), 1600):
        await stream.feed(pcm[start : start + 1600])
    return set((await stream.finish()).text.split())


@pytest.mark.parametrize("kind", KINDS)
async def test_clean_speech_is_recognised_after_denoising(
    stt: PocketsphinxSTT, kind: NoiseReductionType
) -> None:
    for text, keywords in SENTENCES.items():
        heard = await recognise(stt, denoise(utterance(text), kind))
        assert keywords <= heard, (text, heard)


async def test_denoising_lets_the_recogniser_hear_noisy_speech(stt: PocketsphinxSTT) -> None:
    raw = cleaned = 0
    for seed, (text, keywords) in enumerate(SENTENCES.items(), start=1):
        mixed = noisy(utterance(text), 10, seed)
        raw += len(keywords & await recognise(stt, mixed))
        cleaned += len(keywords & await recognise(stt, denoise(mixed, "far_field")))
    # Measured at 10 dB SNR: 0 of the 8 keywords heard without suppression, 7 with far_field
    # (4 with near_field).
    assert cleaned >= raw + 4, (raw, cleaned)


def test_vad_scores_fewer_noise_frames_as_speech() -> None:
    """Silero on speech at 0 dB SNR: frames far from any speech that it calls speech, before and after."""
    texts = list(SENTENCES)
    frames = SileroVAD.frame_samples
    raw_false = cleaned_false = cleaned_hits = speech_frames = 0
    for seed, text in enumerate(texts, start=1):
        clean = np.concatenate(
            [silence(1000), flite_speech(text), silence(1500), flite_speech(texts[seed % 3]), silence(1500)]
        )
        energy = np.array(
            [level_db(clean[i : i + frames]) for i in range(0, len(clean) - frames + 1, frames)]
        )
        speech = energy > 20 * np.log10(32768 * 10 ** (-45 / 20))
        quiet = np.convolve(speech, np.ones(7), "same") == 0  # 3 frames (96 ms) or more from speech
        mixed = noisy(clean, 0, seed)
        raw, cleaned = vad_decisions(mixed)[: len(speech)], vad_decisions(denoise(mixed))[: len(speech)]
        raw_false += int(np.sum(raw & quiet))
        cleaned_false += int(np.sum(cleaned & quiet))
        cleaned_hits += int(np.sum(cleaned & speech))
        speech_frames += int(np.sum(speech))
    # Measured: 11 false frames of 401 before, none after; speech recall stays at 0.98.
    assert raw_false >= 6, "the test needs noise Silero is fooled by"
    assert cleaned_false <= raw_false // 3, (raw_false, cleaned_false)
    assert cleaned_hits >= 0.9 * speech_frames, (cleaned_hits, speech_frames)


def vad_decisions(pcm: PCM) -> np.ndarray:
    vad = SileroVAD()
    frames = vad.frame_samples
    return np.array(
        [vad.speech_probability(pcm[i : i + frames]) >= 0.5 for i in range(0, len(pcm) - frames + 1, frames)]
    )


# -------------------------------------------------------------------------------------- settings


def test_near_and_far_field_differ() -> None:
    noise = pink_noise(3000, dbfs=-30, seed=4)
    steady = slice(8000, None)  # after the first 0.5 s
    removed = {kind: level_db(noise[steady]) - level_db(denoise(noise, kind)[steady]) for kind in KINDS}
    # Measured: 29 dB near field (24 dB limit, 6 dB gate), 50 dB far field (40 and 12).
    assert removed["near_field"] >= 22, removed
    assert removed["far_field"] >= removed["near_field"] + 10, removed
    speech = utterance(WEATHER)
    assert not np.array_equal(denoise(speech, "near_field"), denoise(speech, "far_field"))


def test_strength_zero_passes_audio_through() -> None:
    pcm = noisy(utterance(ORDER), 10, seed=2)
    for kind in KINDS:
        assert np.array_equal(denoise(pcm, kind, strength=0.0), pcm)


def test_strength_scales_what_is_removed() -> None:
    noise = white_noise(3000, dbfs=-30, seed=5)
    steady = slice(8000, None)
    removed = [
        level_db(noise[steady]) - level_db(denoise(noise, "near_field", s)[steady]) for s in (0.25, 0.5, 1)
    ]
    assert removed[0] < removed[1] < removed[2], removed
    assert removed[0] == pytest.approx(0.25 * 30, abs=2)  # a quarter of the 24 dB limit and 6 dB gate


@pytest.mark.parametrize("strength", [-0.1, 1.5, float("nan")])
def test_strength_out_of_range_is_refused(strength: float) -> None:
    with pytest.raises(ValueError):
        RNNoiseSuppressor("near_field", strength)


def test_unknown_type_and_rate_are_refused() -> None:
    with pytest.raises(ValueError):
        RNNoiseSuppressor("mid_field")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        RNNoiseSuppressor(sample_rate=96000)


# -------------------------------------------------------------------------------------- streaming


def test_chunk_sizes_do_not_change_the_output() -> None:
    pcm = noisy(utterance(REFUND), 5, seed=3)
    small = denoise(pcm, "far_field")
    one = RNNoiseSuppressor("far_field")
    big = np.concatenate([one.process(pcm), one.flush()])
    odd = RNNoiseSuppressor("far_field")
    sizes = np.random.default_rng(0).integers(1, 3000, size=len(pcm) // 100)
    edges = np.cumsum(sizes)[np.cumsum(sizes) < len(pcm)]
    uneven = np.concatenate([*(odd.process(part) for part in np.split(pcm, edges)), odd.flush()])
    assert len(small) == len(big) == len(uneven) == len(pcm)
    assert np.abs(small.astype(np.int32) - big).max() <= 1
    assert np.abs(small.astype(np.int32) - uneven).max() <= 1


@pytest.mark.parametrize("rate", [8000, 16000, 24000, 48000])
def test_output_lags_by_the_fixed_latency(rate: int) -> None:
    suppressor = RNNoiseSuppressor("near_field", sample_rate=rate)
    latency = round(suppressor.latency_ms * rate / 1000)
    assert latency == suppressor.latency_samples
    assert 30 <= suppressor.latency_ms <= 40
    pcm = white_noise(1000, rate=rate, dbfs=-30, seed=1)
    taken = given = 0
    for size in (1, 7, 160, rate // 50, 3000, rate // 2, 5):
        given += len(suppressor.process(pcm[taken : taken + size]))
        taken += size
        assert given == max(0, taken - latency), (size, taken, given)
    assert len(suppressor.flush()) == taken - given


def test_output_is_aligned_with_the_input() -> None:
    clean = utterance(ORDER).astype(np.float64)
    out = denoise(utterance(ORDER)).astype(np.float64)
    lags = range(-200, 201)
    correlation = [
        np.dot(clean[max(0, -lag) : len(clean) - max(0, lag)], out[max(0, lag) : len(out) - max(0, -lag)])
        for lag in lags
    ]
    assert lags[int(np.argmax(correlation))] == 0


def test_flush_returns_the_rest_and_starts_a_new_stream() -> None:
    pcm = noisy(utterance(WEATHER), 10, seed=4)
    first = denoise(pcm)
    suppressor = RNNoiseSuppressor()
    assert len(suppressor.flush()) == 0  # nothing held yet
    head = suppressor.process(pcm[:4000])
    assert len(head) == 4000 - suppressor.latency_samples
    rest = suppressor.flush()
    assert len(rest) == suppressor.latency_samples
    assert len(suppressor.flush()) == 0
    again = np.concatenate([suppressor.process(pcm), suppressor.flush()])
    assert np.array_equal(again, first), "after flush the stream starts afresh"


def test_reset_drops_held_audio_and_state() -> None:
    pcm = noisy(utterance(REFUND), 0, seed=5)
    first = denoise(pcm, "far_field")
    suppressor = RNNoiseSuppressor("far_field")
    suppressor.process(white_noise(2000, dbfs=-20, seed=9))
    suppressor.reset()
    again = [suppressor.process(pcm[i : i + CHUNK]) for i in range(0, len(pcm), CHUNK)]
    assert np.array_equal(np.concatenate([*again, suppressor.flush()]), first)


def test_input_format_is_checked() -> None:
    suppressor = RNNoiseSuppressor()
    with pytest.raises(TypeError):
        suppressor.process(np.zeros(320, dtype=np.float32))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        suppressor.process(np.zeros((160, 2), dtype=np.int16))


# -------------------------------------------------------------------------------------- wiring


def test_registry_and_engines_make_suppressors() -> None:
    make = registry.denoise_factory(Settings())
    suppressor = make("far_field", 0.5)
    assert isinstance(suppressor, NoiseSuppressor)
    assert isinstance(suppressor, RNNoiseSuppressor)
    assert (suppressor.name, suppressor.sample_rate, suppressor.kind) == ("rnnoise", 16000, "far_field")
    assert suppressor.strength == 0.5
    assert isinstance(fake_engines().denoise("near_field", None), RNNoiseSuppressor)
    assert "rnnoise" in registry.names("denoise")
    assert Settings().denoise == "rnnoise"
    with pytest.raises(registry.UnknownEngineError):
        registry.denoise_factory(Settings(denoise="nope"))


@pytest.mark.parametrize("rate", [24000, 8000])
async def test_heard_audio_lags_the_input_by_the_fixed_latency_only(rate: int) -> None:
    # Turn detection positions the heard audio at the input position less latency_ms; a resampler in
    # front of the suppressor would hold back a varying few ms more, heard as late speech.
    heard = HeardAudio(fake_engines(), {"type": "far_field"}, rate)
    heard_ms = 0.0
    for fed_ms in range(20, 1020, 20):
        heard_ms += len(await heard.process(white_noise(20, rate, -30, seed=fed_ms))) * 1000 / heard.rate
        assert heard_ms == pytest.approx(max(0.0, fed_ms - heard.latency_ms), abs=1000 / heard.rate)
    assert heard.rate == rate  # the suppressor runs at the input's own rate
    assert heard.latency_ms == pytest.approx(32.0, abs=0.2)


def test_missing_library_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rnnoise.importlib.util, "find_spec", lambda name: None)
    rnnoise.library.cache_clear()
    try:
        with pytest.raises(MissingDependencyError) as info:
            RNNoiseSuppressor()
        assert "pip install pyrnnoise==" in str(info.value)
    finally:
        rnnoise.library.cache_clear()
