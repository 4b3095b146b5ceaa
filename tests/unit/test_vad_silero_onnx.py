"""Silero VAD on onnxruntime with one shared model: real flite speech, state kept per detector."""

from __future__ import annotations

import numpy as np
import pytest

from parley.config import Settings
from parley.engines import registry
from parley.engines.base import PCM, VoiceActivityDetector
from parley.engines.vad.silero import SileroVAD
from parley.engines.vad.silero_onnx import SileroOnnxVAD, shared_session
from tests.speech import flite_speech, silence, white_noise

FRAME = 512


def _clip() -> PCM:
    return np.concatenate(
        [silence(500), flite_speech("what time do you open tomorrow morning"), silence(800)]
    ).astype(np.int16)


def _score(vad: VoiceActivityDetector, audio: PCM) -> list[float]:
    return [vad.speech_probability(audio[i : i + FRAME]) for i in range(0, len(audio) - FRAME + 1, FRAME)]


def test_detectors_share_one_model() -> None:
    a = registry._factory("vad", "silero-onnx")(Settings())
    b = registry._factory("vad", "silero-onnx")(Settings())
    assert a is not b and isinstance(a, VoiceActivityDetector)
    assert a._session is b._session is shared_session()


def test_agrees_with_the_default_silero_on_speech() -> None:
    clip = _clip()
    onnx = np.array(_score(SileroOnnxVAD(), clip)) > 0.5
    default = np.array(_score(SileroVAD(), clip)) > 0.5
    assert onnx.mean() > 0.4  # the clip is mostly speech
    assert np.mean(onnx == default) >= 0.9
    assert not onnx[:10].any() and not onnx[-15:].any()  # the leading and trailing silence


def test_noise_is_not_speech() -> None:
    assert max(_score(SileroOnnxVAD(), white_noise(2000, dbfs=-45))) < 0.5


def test_interleaved_sessions_keep_their_own_state() -> None:
    clip, quiet = _clip(), silence(len(_clip()) / 16).astype(np.int16)[: len(_clip())]
    alone = _score(SileroOnnxVAD(), clip)
    talker, listener = SileroOnnxVAD(), SileroOnnxVAD()
    together = []
    for i in range(0, len(clip) - FRAME + 1, FRAME):
        together.append(talker.speech_probability(clip[i : i + FRAME]))
        listener.speech_probability(quiet[i : i + FRAME])
    assert together == pytest.approx(alone, abs=1e-6)


def test_reset_starts_afresh_and_frames_are_checked() -> None:
    vad, clip = SileroOnnxVAD(), _clip()
    first = _score(vad, clip)
    vad.reset()
    assert _score(vad, clip) == pytest.approx(first, abs=1e-6)
    with pytest.raises(ValueError, match="512"):
        vad.speech_probability(np.zeros(100, dtype=np.int16))
