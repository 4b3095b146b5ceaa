"""Failover chains: the next engine serves the same request when one fails, and the failed one rests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from parley.config import Settings
from parley.engines import registry
from parley.engines.base import PCM, EngineError, Finish, LLMEvent, TextDelta, Transcription
from parley.engines.failover import FailoverLLM, FailoverSTT, FailoverTTS
from tests.fakes import FakeLLM, FakeSTT, FakeTTS


class BrokenSTT(FakeSTT):
    """Fails on the ``fail_on``-th feed of an utterance (0: at finish)."""

    def __init__(self, fail_on: int = 0) -> None:
        super().__init__(name="broken-stt")
        self.fail_on = fail_on

    def start(self, **options: Any) -> Any:
        return _BrokenStream(self.fail_on)


class _BrokenStream:
    def __init__(self, fail_on: int) -> None:
        self.fail_on, self.feeds, self.closed = fail_on, 0, False

    async def feed(self, pcm: PCM) -> str | None:
        self.feeds += 1
        if self.feeds == self.fail_on:
            raise EngineError("recogniser down")
        return None

    async def finish(self) -> Transcription:
        raise EngineError("recogniser down")

    def close(self) -> None:
        self.closed = True


class HalfTTS(FakeTTS):
    """Speaks one chunk, then fails."""

    async def synthesize(self, text: str, *, voice: str, speed: float = 1.0) -> AsyncIterator[PCM]:
        yield np.full(2400, 1000, dtype=np.int16)
        raise EngineError("synthesiser died mid-sentence")


def chunk(ms: int = 100) -> PCM:
    return np.zeros(16 * ms, dtype=np.int16)


def listen(chain: Any) -> list[tuple[str, str, str]]:
    heard: list[tuple[str, str, str]] = []
    chain.chain.listeners.append(lambda *args: heard.append(args))
    return heard


@pytest.mark.parametrize("fail_on", [0, 1, 3])
async def test_stt_successor_hears_the_whole_utterance(fail_on: int) -> None:
    backup = FakeSTT(name="backup", transcripts=["order four five six"])
    stt = FailoverSTT([BrokenSTT(fail_on), backup], retry_s=60)
    heard = listen(stt)
    stream = stt.start(language="en")
    for _ in range(5):
        await stream.feed(chunk())
    result = await stream.finish()
    assert result.text == "order four five six"
    assert result.audio_seconds == pytest.approx(0.5)  # all five chunks reached the backup
    assert heard == [("stt", "broken-stt", "backup")]


async def test_a_failed_engine_rests_then_is_tried_again() -> None:
    broken = BrokenSTT()
    backup = FakeSTT(name="backup", transcripts=["one", "two", "three"])
    stt = FailoverSTT([broken, backup], retry_s=60)
    heard = listen(stt)
    for expected in ("one", "two"):
        stream = stt.start()
        await stream.feed(chunk())
        assert (await stream.finish()).text == expected
    assert len(heard) == 1  # the second utterance went straight to the backup
    stt.chain.resting_until[0] = 0.0  # the rest is over
    stream = stt.start()
    await stream.feed(chunk())
    assert (await stream.finish()).text == "three"
    assert len(heard) == 2


async def test_stt_error_when_every_engine_fails() -> None:
    stt = FailoverSTT([BrokenSTT(), BrokenSTT(fail_on=1)], retry_s=60)
    stream = stt.start()
    await stream.feed(chunk())
    with pytest.raises(EngineError, match="recogniser down"):
        await stream.finish()


def test_stt_engines_must_share_a_rate() -> None:
    with pytest.raises(EngineError, match="same sample rate"):
        FailoverSTT([FakeSTT(), FakeSTT(name="narrow", sample_rate=8000)], retry_s=1)


async def test_tts_fails_over_before_the_first_audio_and_resamples() -> None:
    primary = FakeTTS(name="primary", fail=True)
    backup = FakeTTS(name="backup", sample_rate=16000)
    tts = FailoverTTS([primary, backup], retry_s=60)
    heard = listen(tts)
    audio = np.concatenate([c async for c in tts.synthesize("hello there", voice="marin")])
    assert backup.spoken == ["hello there"]
    # 11 characters at 10 ms each, made at 16 kHz and delivered at the chain's 24 kHz
    assert len(audio) == pytest.approx(0.11 * 24000, abs=48)
    assert heard == [("tts", "primary", "backup")]


async def test_tts_failure_after_audio_is_the_responses() -> None:
    backup = FakeTTS(name="backup")
    tts = FailoverTTS([HalfTTS(name="half"), backup], retry_s=60)
    heard = listen(tts)
    got: list[PCM] = []
    with pytest.raises(EngineError, match="mid-sentence"):
        async for piece in tts.synthesize("hello", voice="marin"):
            got.append(piece)
    assert got and backup.spoken == [] and heard == []


async def test_llm_fails_over_until_the_first_event() -> None:
    backup = FakeLLM(name="backup", replies=[[TextDelta("hi"), Finish("stop")]])
    llm = FailoverLLM([FakeLLM(name="primary", fail=True), backup], retry_s=60)
    heard = listen(llm)
    events: list[LLMEvent] = [e async for e in llm.stream(_request())]
    assert events == [TextDelta("hi"), Finish("stop")]
    assert heard == [("llm", "primary", "backup")]


async def test_llm_stream_closed_early_closes_the_engine_stream() -> None:
    closed: list[bool] = []

    class Endless(FakeLLM):
        async def stream(self, request: Any) -> AsyncIterator[LLMEvent]:
            try:
                while True:
                    yield TextDelta("la ")
            finally:
                closed.append(True)

    llm = FailoverLLM([Endless(name="endless"), FakeLLM()], retry_s=60)
    stream = llm.stream(_request())
    assert await anext(stream) == TextDelta("la ")
    await stream.aclose()  # type: ignore[attr-defined]
    assert closed == [True]


async def test_warm_up_rests_a_failing_engine_and_needs_one_that_works() -> None:
    class ColdLLM(FakeLLM):
        async def warm_up(self) -> None:
            raise EngineError("model file missing")

    llm = FailoverLLM([ColdLLM(name="cold"), FakeLLM(name="warm")], retry_s=60)
    await llm.warm_up()
    assert llm.chain.order() == [1]
    with pytest.raises(EngineError, match="no llm engine could start: cold: model file missing"):
        await FailoverLLM([ColdLLM(name="cold"), ColdLLM(name="colder")], retry_s=60).warm_up()


def test_settings_name_a_failover_list() -> None:
    settings = Settings(llm="echo, echo2", engine_retry_s=5)
    assert settings.llm == "echo,echo2"
    with pytest.raises(ValueError, match="named twice"):
        Settings(tts="espeak,espeak")
    registry.register("llm", "echo2", lambda s: FakeLLM(name="echo2"))
    try:
        engines = registry.load_engines(Settings(llm="echo2,echo"))
    finally:
        del registry._FACTORIES["llm"]["echo2"]
    assert isinstance(engines.llm, FailoverLLM)
    assert engines.llm.name == "echo2,echo" and engines.llm.chain.retry_s == 30.0
    assert not isinstance(engines.stt, FailoverSTT)  # one engine: no chain around it


def _request() -> Any:
    from parley.engines.base import ChatRequest

    return ChatRequest(messages=[{"role": "user", "content": "hi"}])
