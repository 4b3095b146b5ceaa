"""LiveRecognition: one utterance recognised as its audio arrives; its final result is asked for twice
when a candidate interruption is judged on it and then committed."""

from __future__ import annotations

import numpy as np
import pytest

from parley.engines.base import EngineError
from parley.realtime.transcription import LiveRecognition
from tests.fakes import FakeSTT

AUDIO = np.ones(1600, dtype=np.int16)


async def test_finish_twice_gives_the_one_final_result() -> None:
    stt = FakeSTT(transcripts=["right", "the next utterance"])
    live = LiveRecognition(stt, language=None, prompt=None)
    live.feed(AUDIO)
    assert await live.current() == "right"
    first = await live.finish()
    live.feed(np.zeros(0, dtype=np.int16))  # what a flushed resampler gives after the end
    second = await live.finish()
    assert first.text == second.text == "right"
    assert stt.transcripts == ["the next utterance"]  # the recogniser finished once


async def test_a_failure_is_raised_to_every_caller() -> None:
    stt = FakeSTT(fail=True)
    live = LiveRecognition(stt, language=None, prompt=None)
    live.feed(AUDIO)
    for _ in range(2):
        with pytest.raises(EngineError, match="fake recogniser failure"):
            await live.finish()
