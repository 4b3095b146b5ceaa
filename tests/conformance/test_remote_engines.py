"""The ``openai`` speech engines end to end, with real servers on real sockets.

- Realtime STT against a real ``parley serve`` (Parley offers ``/v1/realtime?intent=transcription``,
  recognising with pocketsphinx): transcripts, partials, auth errors, abandoned utterances.
- A ``parley serve`` whose STT and TTS are the ``openai`` engines, pointed at the local speech server
  (``python -m tests.speech_server``): a voice turn through the official SDK is heard and answered.
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from openai import AsyncOpenAI

from parley.engines.base import EngineError
from parley.engines.stt.openai_stt import OpenAISTT
from tests.conformance.conftest import (
    ROOT,
    LLMThread,
    Server,
    collect_until,
    free_port,
    start_server,
    stop_server,
)
from tests.conformance.helpers import (
    append_audio,
    of_type,
    one,
    opened,
    rms,
    silence,
    speech,
    update_session,
    words,
)
from tests.scripted_llm import ScriptedLLM
from tests.speech import flite_speech
from tests.speech import silence as silence16k

pytestmark = pytest.mark.slow

PARLEY_KEY = "sk-parley-remote"
SPEECH_KEY = "sk-speech-remote"


@pytest.fixture(scope="module")
def parley(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A Parley server recognising with pocketsphinx, that wants an API key."""
    server = start_server(
        tmp_path_factory.mktemp("parley-stt"), {"PARLEY_API_KEYS": PARLEY_KEY, "PARLEY_LLM": "echo"}
    )
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def speech_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m tests.speech_server`` in its own process; its base URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("speech-server") / "speech.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.speech_server", "--port", str(port), "--api-key", SPEECH_KEY],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=log.open("wb"),
        text=True,
    )
    assert process.stdout is not None
    ready = process.stdout.readline()  # printed once its engines are warm
    assert "speech server on" in ready, Path(log).read_text()
    yield f"http://127.0.0.1:{port}/v1"
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="module")
def remote_parley(
    speech_server: str, llm_thread: LLMThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A Parley server whose speech engines are remote: the ``openai`` STT and TTS."""
    env = {
        "PARLEY_LLM_BASE_URL": llm_thread.llm.base_url,
        "PARLEY_LLM_MODEL": "scripted-model",
        "PARLEY_STT": "openai",
        "PARLEY_STT_OPENAI_BASE_URL": speech_server,
        "PARLEY_STT_OPENAI_API_KEY": SPEECH_KEY,
        "PARLEY_TTS": "openai",
        "PARLEY_TTS_OPENAI_BASE_URL": speech_server,
        "PARLEY_TTS_OPENAI_API_KEY": SPEECH_KEY,
    }
    server = start_server(tmp_path_factory.mktemp("parley-remote"), env, name="remote")
    yield server
    stop_server(server)


def utterance(text: str) -> np.ndarray:
    return np.concatenate([silence16k(300), flite_speech(text), silence16k(400)])


async def test_realtime_stt_against_parley(parley: Server) -> None:
    stt = OpenAISTT(f"{parley.http_url}/v1", api_key=PARLEY_KEY, realtime=True)
    await stt.warm_up()
    for text, expected in [
        ("please check my order status", {"check", "order", "status"}),
        ("the weather in london is cloudy", {"weather", "london", "cloudy"}),
    ]:
        stream = stt.start(language="en-US", prompt="An order line.")
        pcm, partials = utterance(text), []
        for start in range(0, len(pcm), 1600):  # 100 ms at a time, 2.5 times real time
            partial = await stream.feed(pcm[start : start + 1600])
            if partial is not None:
                partials.append(partial)
            await asyncio.sleep(0.04)
        result = await stream.finish()
        stream.close()
        assert expected <= words(result.text), result.text
        assert result.language == "en" and result.audio_seconds == pytest.approx(len(pcm) / 16000)
        assert partials, "the transcript deltas came back as partials"
        # Parley's deltas are settled words, but the final pass may still revise one.
        assert words(partials[-1]) & words(result.text), (partials, result.text)


async def test_realtime_stt_abandoned_utterance_and_errors(parley: Server) -> None:
    stt = OpenAISTT(f"{parley.http_url}/v1", api_key=PARLEY_KEY, realtime=True)
    abandoned = stt.start()
    await abandoned.feed(utterance("cancel my subscription")[:16000])
    abandoned.close()
    abandoned.close()
    with pytest.raises(EngineError, match="closed"):
        await abandoned.finish()
    stream = stt.start()
    for start in range(0, len(pcm := utterance("send me a refund please")), 1600):
        await stream.feed(pcm[start : start + 1600])
    assert "refund" in words((await stream.finish()).text)
    wrong = OpenAISTT(f"{parley.http_url}/v1", api_key="sk-wrong", realtime=True)
    with pytest.raises(
        EngineError, match=r"refused the realtime connection \(HTTP 401\).*STT_OPENAI_API_KEY"
    ):
        await wrong.warm_up()


async def test_parley_with_remote_speech_engines(remote_parley: Server, scripted: ScriptedLLM) -> None:
    scripted.script("Your order has shipped.")
    client = AsyncOpenAI(api_key="sk-test", base_url=f"{remote_parley.http_url}/v1")
    session = {"type": "realtime", "audio": {"input": {"transcription": {"model": "whisper-1"}}}}
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await opened(conn)
        await update_session(conn, session)
        await append_audio(conn, silence(400) + speech("please check my order status") + silence(1500))
        events = await collect_until(conn, "response.done", timeout=120)
        if "conversation.item.input_audio_transcription.completed" not in [e["type"] for e in events]:
            events += await collect_until(conn, "conversation.item.input_audio_transcription.completed")
    transcript = one(events, "conversation.item.input_audio_transcription.completed")["transcript"]
    assert {"check", "order"} <= words(transcript), transcript
    assert one(events, "response.done")["response"]["status"] == "completed"
    audio = b"".join(base64.b64decode(e["delta"]) for e in of_type(events, "response.output_audio.delta"))
    pcm = np.frombuffer(audio, dtype="<i2")
    assert len(pcm) > 24000 // 2 and rms(pcm) > 300  # the remote voice said the reply
