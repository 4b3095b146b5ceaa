"""Failover lists on a real server: a remote speech server that is down, then the next engine serves the
same turn (the recogniser hears the whole utterance, the reply is spoken), and /metrics counts it."""

from __future__ import annotations

import asyncio
import base64
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest
from openai import AsyncOpenAI
from prometheus_client.parser import text_string_to_metric_families

from tests.conformance.conftest import LLMThread, Server, collect_until, free_port, start_server, stop_server
from tests.conformance.helpers import (
    append_audio,
    of_type,
    one,
    opened,
    silence,
    speech,
    update_session,
    words,
)
from tests.scripted_llm import ScriptedLLM

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def failover_server(llm_thread: LLMThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    down = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    env = {
        "PARLEY_LLM_BASE_URL": llm_thread.llm.base_url,
        "PARLEY_LLM_MODEL": "scripted-model",
        "PARLEY_STT": "openai,pocketsphinx",
        "PARLEY_STT_OPENAI_BASE_URL": down,
        "PARLEY_TTS": "openai,espeak",
        "PARLEY_TTS_OPENAI_BASE_URL": down,
        "PARLEY_ENGINE_RETRY_S": "0.1",  # the remote engines are tried again on every turn
    }
    server = start_server(tmp_path_factory.mktemp("failover"), env, name="failover")
    yield server
    stop_server(server)


def _failovers(server: Server) -> dict[tuple[str, str, str], float]:
    with urllib.request.urlopen(f"{server.http_url}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return {
        (s.labels["stage"], s.labels["engine"], s.labels["to"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "parley_engine_failovers_total"
    }


async def test_the_next_engine_serves_the_turn(failover_server: Server, scripted: ScriptedLLM) -> None:
    assert "failed to warm up" in failover_server.log()  # it started anyway, on the engines that work
    await asyncio.sleep(0.2)  # past the rest the failed warm-up gave the remote engines
    scripted.script("We open at nine in the morning.")
    client = AsyncOpenAI(
        api_key="sk-test",
        base_url=f"{failover_server.http_url}/v1",
        websocket_base_url=failover_server.ws_base,
    )
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await opened(conn)
        await update_session(
            conn, {"type": "realtime", "audio": {"input": {"transcription": {"model": "whisper-1"}}}}
        )
        await append_audio(conn, silence(300) + speech("what time do you open tomorrow") + silence(1200))
        events = await collect_until(conn, "response.done", timeout=120)
        if not of_type(events, "conversation.item.input_audio_transcription.completed"):
            events += await collect_until(conn, "conversation.item.input_audio_transcription.completed")
    transcript = one(events, "conversation.item.input_audio_transcription.completed")["transcript"]
    assert {"time", "open", "tomorrow"} <= words(transcript), transcript
    assert one(events, "response.done")["response"]["status"] == "completed"
    audio = b"".join(base64.b64decode(e["delta"]) for e in of_type(events, "response.output_audio.delta"))
    pcm = np.frombuffer(audio, dtype="<i2").astype(np.float64)
    assert len(pcm) > 24000 and np.sqrt(np.mean(pcm**2)) > 300  # a second of audible speech
    counted = await asyncio.to_thread(_failovers, failover_server)
    assert counted.get(("stt", "openai", "pocketsphinx"), 0) >= 1, counted
    assert counted.get(("tts", "openai", "espeak"), 0) >= 1, counted
