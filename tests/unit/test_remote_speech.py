"""The ``openai`` STT and TTS engines against a local OpenAI-compatible speech server backed by
Parley's own pocketsphinx and espeak engines (``tests/speech_server.py``), and voice resolution."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, cast

import numpy as np
import pytest
from aiohttp import web

from parley.config import Settings
from parley.engines import registry
from parley.engines.base import PCM, EngineError, RecognitionStream, SpeechToText, TextToSpeech
from parley.engines.stt.openai_stt import OpenAISTT
from parley.engines.tts.openai_tts import OpenAITTS, PcmAssembler, text_pieces
from parley.engines.tts.voices import resolve_voice
from parley.protocol.session_config import VOICES
from tests.conformance.conftest import free_port
from tests.speech import flite_speech, silence
from tests.speech_server import SpeechServer

KEY = "sk-speech-test"
DELTA = "conversation.item.input_audio_transcription.delta"
COMPLETED = "conversation.item.input_audio_transcription.completed"
ORDER = "please check the status of my order"
TWO_SENTENCES = "Hello there, this is a test of remote speech. It comes back in several chunks."


@pytest.fixture
async def server() -> AsyncIterator[SpeechServer]:
    async with SpeechServer(api_key=KEY) as srv:
        yield srv


class Engines:
    """Makes engines for a test and closes their connection pools after it."""

    def __init__(self) -> None:
        self.made: list[OpenAISTT | OpenAITTS] = []

    def stt(self, base_url: str, **options: Any) -> OpenAISTT:
        self.made.append(engine := OpenAISTT(base_url, **options))
        return engine

    def tts(self, base_url: str, **options: Any) -> OpenAITTS:
        self.made.append(engine := OpenAITTS(base_url, **options))
        return engine


@pytest.fixture
async def make() -> AsyncIterator[Engines]:
    engines = Engines()
    yield engines
    for engine in engines.made:
        await engine.aclose()


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower()))


def utterance(text: str) -> PCM:
    return np.concatenate([silence(300), flite_speech(text), silence(400)])


async def recognise(stream: RecognitionStream, pcm: PCM, chunk: int = 320) -> list[str]:
    partials = []
    for start in range(0, len(pcm), chunk):
        partial = await stream.feed(pcm[start : start + chunk])
        if partial is not None:
            partials.append(partial)
    return partials


async def speak(tts: OpenAITTS, text: str, voice: str = "marin", speed: float = 1.0) -> list[PCM]:
    return [chunk async for chunk in tts.synthesize(text, voice=voice, speed=speed)]


def rms(pcm: PCM) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))


# ---------------------------------------------------------------------------------------- pieces


def test_resolve_voice_order() -> None:
    def resolve(voice: str, mapped: dict[str, dict[str, str]]) -> str:
        table = {"alloy": "builtin-alloy"}
        return resolve_voice(
            voice, engine="x", settings_map=mapped, builtin=table, available=["v1", "v2"], default="v1"
        )

    assert resolve("alloy", {"x": {"alloy": "v2"}}) == "v2"  # the operator's map first
    assert resolve("alloy", {"other": {"alloy": "v2"}}) == "builtin-alloy"  # maps of other engines
    assert resolve("v2", {}) == "v2"  # an engine voice named directly
    assert resolve("cedar", {}) == "v1"  # else the default


def test_pcm_assembler_keeps_odd_bytes_across_chunks() -> None:
    samples = np.arange(-500, 500, dtype=np.int16) * 37
    data = samples.astype("<i2").tobytes()
    assembler, out, start = PcmAssembler(), [], 0
    for size in [1, 2, 3, 5, 7, 11, 13, 1, 1, 999, 1]:
        out.append(assembler.push(data[start : start + size]))
        start += size
    out.append(assembler.push(data[start:]))
    assert np.array_equal(np.concatenate(out), samples)


def test_text_pieces_respect_the_api_limit() -> None:
    assert text_pieces("  Hello there.  ") == ["Hello there."]
    assert text_pieces("   ") == []
    long = " ".join(["word"] * 3000)
    pieces = text_pieces(long)
    assert len(pieces) > 1 and all(len(piece) <= 4096 for piece in pieces)
    assert " ".join(pieces) == long


def test_create_needs_a_base_url_and_registers() -> None:
    with pytest.raises(EngineError, match="PARLEY_STT_OPENAI_BASE_URL"):
        registry.create("stt", "openai", Settings())
    with pytest.raises(EngineError, match="PARLEY_TTS_OPENAI_BASE_URL"):
        registry.create("tts", "openai", Settings())
    settings = Settings(stt_openai_base_url="http://127.0.0.1:1/v1", tts_openai_base_url="http://h/v1/")
    stt, tts = registry.create("stt", "openai", settings), registry.create("tts", "openai", settings)
    assert isinstance(stt, SpeechToText) and stt.sample_rate == 16000
    assert isinstance(tts, TextToSpeech) and tts.sample_rate == 24000 and tts.voices() == list(VOICES)
    realtime = OpenAISTT("https://api.example.com/v1/", realtime=True)
    assert str(realtime.realtime_url) == "wss://api.example.com/v1/realtime?intent=transcription"


def test_tts_voice_resolution() -> None:
    tts = OpenAITTS("http://h/v1", voice_map={"openai": {"marin": "af_heart", "ash": "am_adam"}})
    assert tts.server_voice("ash") == "am_adam"
    assert tts.server_voice("coral") == "coral"  # API names pass through
    assert tts.server_voice("no-such-voice") == "af_heart"  # the default voice, as mapped
    assert OpenAITTS("http://h/v1", default_voice="cedar").server_voice("nope") == "cedar"


# ---------------------------------------------------------------------------------------- STT


async def test_stt_transcribes_speech_over_http_with_word_timings(
    server: SpeechServer, make: Engines
) -> None:
    stt = make.stt(server.base_url, api_key=KEY, model="whisper-test")
    stream = stt.start(language="en-US", prompt="Orders and refunds.")
    assert await recognise(stream, utterance(ORDER)) == []  # no partials over HTTP
    result = await stream.finish()
    assert {"check", "status", "order"} <= words(result.text), result.text
    assert result.language == "en" and result.audio_seconds == pytest.approx(len(utterance(ORDER)) / 16000)
    assert [w.text for w in result.words] == result.text.split()
    assert all(a.end <= b.start + 1e-6 for a, b in zip(result.words, result.words[1:], strict=False))
    request = server.requests[-1]
    assert request["model"] == "whisper-test" and request["language"] == "en"
    assert request["prompt"] == "Orders and refunds."
    assert request["response_format"] == "verbose_json" and request["timestamp_granularities"] == ["word"]
    assert await stream.finish() is result  # repeatable
    stream.close()
    stream.close()


async def test_stt_falls_back_to_json_when_the_server_refuses_verbose_json(
    server: SpeechServer, make: Engines
) -> None:
    server.verbose_json = False
    stt = make.stt(server.base_url, api_key=KEY)
    for _ in range(2):
        stream = stt.start()
        await recognise(stream, utterance(ORDER), chunk=16000)
        result = await stream.finish()
        assert "order" in words(result.text) and result.words == ()
    formats = [request["response_format"] for request in server.requests]
    assert formats == ["verbose_json", "json", "json"]  # refused once, then not asked again


async def test_stt_empty_and_closed_streams(server: SpeechServer, make: Engines) -> None:
    stt = make.stt(server.base_url, api_key=KEY)
    empty = await stt.start().finish()
    assert empty.text == "" and empty.audio_seconds == 0 and server.requests == []
    stream = stt.start()
    await stream.feed(silence(100))
    stream.close()
    stream.close()
    with pytest.raises(EngineError, match="closed"):
        await stream.finish()
    with pytest.raises(EngineError, match="closed"):
        await stream.feed(silence(100))
    with pytest.raises(TypeError):
        await stt.start().feed(np.zeros(10, dtype=np.float32))


async def test_stt_warm_up_proves_the_server_answers(server: SpeechServer, make: Engines) -> None:
    await make.stt(server.base_url, api_key=KEY).warm_up()
    assert server.requests and server.requests[0]["path"] == "/v1/audio/transcriptions"


async def test_stt_errors_are_clear(server: SpeechServer, make: Engines) -> None:
    with pytest.raises(EngineError, match=r"HTTP 401.*PARLEY_STT_OPENAI_API_KEY"):
        await make.stt(server.base_url, api_key="sk-wrong").warm_up()
    server.fail_status = 500
    with pytest.raises(EngineError, match="answered HTTP 500: The speech server was told to fail"):
        await make.stt(server.base_url, api_key=KEY, max_retries=0).warm_up()
    server.fail_status, server.delay_s = None, 2.0
    with pytest.raises(EngineError, match=r"No answer from .* within 0.3 s"):
        await make.stt(server.base_url, api_key=KEY, timeout_s=0.3, max_retries=0).warm_up()
    nowhere = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(EngineError, match=f"Could not reach the speech-to-text server at {nowhere}"):
        await make.stt(nowhere, max_retries=0).warm_up()
    # The fake server has no realtime endpoint: the handshake fails with advice.
    with pytest.raises(EngineError, match=r"HTTP 404.*PARLEY_STT_OPENAI_REALTIME=false"):
        await make.stt(server.base_url, api_key=KEY, realtime=True).warm_up()
    with pytest.raises(EngineError, match=f"Could not reach the speech-to-text server at {nowhere}"):
        await make.stt(nowhere, realtime=True).warm_up()


async def test_stt_finish_stops_promptly_when_cancelled(server: SpeechServer, make: Engines) -> None:
    server.delay_s = 30.0
    stream = make.stt(server.base_url, api_key=KEY).start()
    await stream.feed(silence(300))
    task = asyncio.ensure_future(stream.finish())
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    stream.close()


class RealtimeStub:
    """A realtime transcription endpoint that records what it gets, sends a delta after each append
    and answers a commit with ``reply`` (nothing by default)."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.reply: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.received.append({"query": dict(request.query), "auth": request.headers.get("Authorization")})
        async for message in ws:
            event = json.loads(message.data)
            self.received.append(event)
            if event["type"] == "input_audio_buffer.append":
                await ws.send_json({"type": DELTA, "item_id": "item_1", "content_index": 0, "delta": "x"})
            elif event["type"] == "input_audio_buffer.commit":
                for reply in self.reply:
                    await ws.send_json(reply)
        return ws


@pytest.fixture
async def stub() -> AsyncIterator[tuple[RealtimeStub, str]]:
    endpoint = RealtimeStub()
    app = web.Application()
    app.router.add_get("/v1/realtime", endpoint.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield endpoint, f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    await runner.cleanup()


async def test_realtime_stream_protocol(stub: tuple[RealtimeStub, str]) -> None:
    endpoint, url = stub
    endpoint.reply = [{"type": COMPLETED, "item_id": "item_1", "content_index": 0, "transcript": " final "}]
    stream = OpenAISTT(url, api_key=KEY, model="m1", realtime=True).start(language="fr-CA", prompt="p")
    partials = []
    for _ in range(10):
        partials.append(await stream.feed(silence(100)))
        await asyncio.sleep(0.01)
    result = await stream.finish()
    assert result.text == "final" and result.language == "fr" and result.audio_seconds == pytest.approx(1.0)
    assert "x" in partials and all(p is None or set(p) == {"x"} for p in partials)  # the deltas so far
    hello, update, *appends, commit = endpoint.received
    assert hello == {"query": {"intent": "transcription"}, "auth": f"Bearer {KEY}"}
    assert update["session"] == {
        "type": "transcription",
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": {"model": "m1", "language": "fr", "prompt": "p"},
                "turn_detection": None,
            }
        },
    }
    sent = sum(len(base64.b64decode(event["audio"])) // 2 for event in appends)
    assert sent == 24000 and commit == {"type": "input_audio_buffer.commit"}  # 1 s at 24 kHz


async def test_realtime_stream_failures_and_cancellation(stub: tuple[RealtimeStub, str]) -> None:
    endpoint, url = stub
    engine = OpenAISTT(url, realtime=True, timeout_s=0.3)
    endpoint.reply = [{"type": "error", "error": {"type": "invalid_request_error", "message": "bad model"}}]
    stream = engine.start()
    await stream.feed(silence(200))
    with pytest.raises(EngineError, match="reported an error: bad model"):
        await stream.finish()
    endpoint.reply = []  # no transcript ever comes
    stream = engine.start()
    await stream.feed(silence(200))
    with pytest.raises(EngineError, match=r"No transcript from .* within 0.3 s"):
        await stream.finish()
    stream = OpenAISTT(url, realtime=True).start()
    await stream.feed(silence(200))
    task = asyncio.ensure_future(stream.finish())
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    stream.close()
    stream.close()
    await asyncio.sleep(0.1)  # the connection closes in the background


# ---------------------------------------------------------------------------------------- TTS


async def test_tts_streams_speech_in_chunks(server: SpeechServer, make: Engines) -> None:
    tts = make.tts(server.base_url, api_key=KEY, model="tts-test")
    chunks = await speak(tts, TWO_SENTENCES, voice="coral")
    assert len(chunks) > 1 and all(chunk.dtype == np.int16 for chunk in chunks)
    audio = np.concatenate(chunks)
    assert len(audio) > 24000 * 2 and rms(audio) > 300  # seconds of audible speech at 24 kHz
    request = server.requests[-1]
    assert (
        request["model"] == "tts-test" and request["voice"] == "coral" and request["input"] == TWO_SENTENCES
    )
    assert request["response_format"] == "pcm" and "speed" not in request
    fast = np.concatenate(await speak(tts, TWO_SENTENCES, voice="coral", speed=1.5))
    assert server.requests[-1]["speed"] == 1.5 and len(fast) < 0.85 * len(audio)
    await speak(tts, "Hi.", speed=9.0)
    assert server.requests[-1]["speed"] == 4.0  # clamped to the API's range
    assert await speak(tts, "   ") == [] and len(server.requests) == 3


async def test_tts_sends_mapped_voices_and_warms_up(server: SpeechServer, make: Engines) -> None:
    tts = make.tts(server.base_url, api_key=KEY, voice_map={"openai": {"marin": "shimmer"}})
    await speak(tts, "Testing.", voice="marin")
    assert server.requests[-1]["voice"] == "shimmer"
    await tts.warm_up()
    assert server.requests[-1]["input"] == "Hello." and server.requests[-1]["voice"] == "shimmer"


async def test_tts_stops_when_the_consumer_stops(server: SpeechServer, make: Engines) -> None:
    tts = make.tts(server.base_url, api_key=KEY)
    stream = cast(AsyncGenerator[PCM], tts.synthesize(TWO_SENTENCES * 5, voice="ash"))
    first = await anext(stream)
    assert first.size
    await stream.aclose()  # closes the response mid-body
    assert len(np.concatenate(await speak(tts, "Still working."))) > 0


async def test_tts_errors_are_clear(server: SpeechServer, make: Engines) -> None:
    with pytest.raises(EngineError, match=r"HTTP 401.*PARLEY_TTS_OPENAI_API_KEY"):
        await speak(make.tts(server.base_url, api_key="sk-wrong"), "Hello.")
    server.fail_status = 503
    with pytest.raises(EngineError, match=r"text-to-speech server at .* answered HTTP 503"):
        await make.tts(server.base_url, api_key=KEY, max_retries=0).warm_up()
    server.fail_status, server.delay_s = None, 2.0
    with pytest.raises(EngineError, match=r"No answer from .* within 0.3 s"):
        await speak(make.tts(server.base_url, api_key=KEY, timeout_s=0.3, max_retries=0), "Hello.")
    nowhere = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(EngineError, match=f"Could not reach the text-to-speech server at {nowhere}"):
        await make.tts(nowhere, max_retries=0).warm_up()
