"""Native SIP with sipp as the caller: the incoming-call webhook arrives signed, accept / reject /
refer / hangup do what they say, the caller's speech and DTMF reach the session (seen on the
sideband socket), and the caller hears the agent (RTP sent to the caller's media address)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from openai import AsyncOpenAI

from tests.conformance.conftest import LLMThread, Server, free_port, start_server, stop_server
from tests.conformance.helpers import words
from tests.scripted_llm import ScriptedLLM, last_user_text
from tests.sip_peer import Webhook, rtp_ear, run_sipp, write_g711_wav
from tests.speech import flite_speech, silence
from tests.wire import validate_ga

SECRET = "whsec_" + base64.b64encode(b"parley-test-signing-key-32-bytes").decode()
GREETING = "Thanks for calling. This call may be recorded."


@pytest.fixture(scope="module")
def sip(llm_thread: LLMThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, int, int]]:
    """A server with SIP on a free UDP port and its webhook pointing at the test: (server, SIP
    port, webhook port)."""
    sip_port, hook_port = free_port(), free_port()
    env = {
        "PARLEY_LLM_BASE_URL": llm_thread.llm.base_url,
        "PARLEY_LLM_MODEL": "scripted-model",
        "PARLEY_SIP_PORT": str(sip_port),
        "PARLEY_SIP_WEBHOOK_URL": f"http://127.0.0.1:{hook_port}/hook",
        "PARLEY_SIP_WEBHOOK_SECRET": SECRET,
        "PARLEY_PHONE_GREETING": GREETING,
    }
    server = start_server(tmp_path_factory.mktemp("sip"), env, name="sip")
    yield server, sip_port, hook_port
    stop_server(server)


@pytest.fixture
def api(sip: tuple[Server, int, int]) -> AsyncOpenAI:
    server = sip[0]
    return AsyncOpenAI(api_key="sk-test", base_url=f"{server.http_url}/v1", websocket_base_url=server.ws_base)


@pytest.fixture
async def webhook(sip: tuple[Server, int, int]) -> AsyncIterator[Webhook]:
    async with Webhook(SECRET, sip[2]) as hook:
        yield hook


async def _sideband(api: AsyncOpenAI, call_id: str, seen: list[dict[str, Any]], until: set[str]) -> None:
    async with api.realtime.connect(call_id=call_id) as conn:
        async for event in conn:
            raw = event.model_dump(mode="json", exclude_unset=True)
            validate_ga(raw)
            seen.append(raw)
            if until <= {e["type"] for e in seen}:
                return


def _rms(pcm: np.ndarray[Any, np.dtype[np.int16]]) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if len(pcm) else 0.0


async def test_an_accepted_call_hears_the_caller_and_answers(
    sip: tuple[Server, int, int], api: AsyncOpenAI, webhook: Webhook, scripted: ScriptedLLM, tmp_path: Path
) -> None:
    server, sip_port, _ = sip
    scripted.script("Your order ships today.")
    seen: list[dict[str, Any]] = []
    sideband: list[asyncio.Task[None]] = []

    async def decide(call_id: str) -> None:
        await api.realtime.calls.accept(call_id, type="realtime", instructions="You are the order line.")
        until = {"input_audio_buffer.dtmf_event_received", "response.done"}
        sideband.append(asyncio.ensure_future(_sideband(api, call_id, seen, until)))

    webhook.decide = decide
    said = np.concatenate([silence(3000, 8000), flite_speech("please check my order status", 8000)])
    write_g711_wav(tmp_path / "caller.wav", np.concatenate([said, silence(9000, 8000)]))
    ear = await rtp_ear()
    try:
        keys = {"audio_port": str(ear.port), "codec_pt": "0", "codec_name": "PCMU"}
        keys |= {"speech_wav": str(tmp_path / "caller.wav"), "dtmf_pcap": "pcap/dtmf_2833_1.pcap"}
        keys |= {"dtmf_at_ms": "8000", "talk_ms": "3000"}
        code, output = await run_sipp("uac_call.xml", sip_port, tmp_path, keys)
        assert code == 0, output + server.log()[-3000:]
        await webhook.decisions()
        await asyncio.wait_for(sideband[0], 30)
    finally:
        ear.close()

    [(signed, event)] = webhook.deliveries
    assert signed and event["type"] == "realtime.call.incoming" and event["object"] == "event"
    headers = {h["name"]: h["value"] for h in event["data"]["sip_headers"]}
    assert headers["X-Customer-Id"] == "4242" and "Test caller" in headers["From"]
    kinds = [e["type"] for e in seen]
    dtmf = next(e for e in seen if e["type"] == "input_audio_buffer.dtmf_event_received")
    assert dtmf["event"] == "1"
    assert "order" in words(last_user_text(scripted.requests[-1]))  # the model heard the caller
    assert "output_audio_buffer.started" in kinds
    assert any(
        m["role"] == "system" and "order line" in str(m["content"]) for m in scripted.requests[-1]["messages"]
    )

    # The caller heard the greeting and the answer: PCMU paced at 50 packets a second.
    audio = [p for p in ear.packets if p[1] == 0]
    assert len(audio) > 200
    span = audio[-1][0] - audio[0][0]
    assert 40 < len(audio) / span < 60, (len(audio), span)
    pcm = ear.audio()
    loud = [_rms(pcm[i : i + 1600]) for i in range(0, len(pcm), 1600)]
    assert sum(level > 500 for level in loud) >= 10  # seconds of speech among the silence


async def test_a_pcma_call_with_dtmf(
    sip: tuple[Server, int, int], api: AsyncOpenAI, webhook: Webhook, tmp_path: Path
) -> None:
    """sipp's own uac_pcap scenario: PCMA from its sample capture, then DTMF 1, then BYE."""
    seen: list[dict[str, Any]] = []
    sideband: list[asyncio.Task[None]] = []

    async def decide(call_id: str) -> None:
        await api.realtime.calls.accept(call_id, type="realtime", output_modalities=["text"])
        sideband.append(
            asyncio.ensure_future(_sideband(api, call_id, seen, {"input_audio_buffer.dtmf_event_received"}))
        )

    webhook.decide = decide
    code, output = await run_sipp("uac_pcap", sip[1], tmp_path, {})
    assert code == 0, output
    await webhook.decisions()
    await asyncio.wait_for(sideband[0], 30)
    assert [e["event"] for e in seen if e["type"] == "input_audio_buffer.dtmf_event_received"] == ["1"]


async def test_a_rejected_call_gets_the_status_asked_for(
    sip: tuple[Server, int, int], api: AsyncOpenAI, webhook: Webhook, tmp_path: Path
) -> None:
    async def decide(call_id: str) -> None:
        await api.realtime.calls.reject(call_id, status_code=486)

    webhook.decide = decide
    code, output = await run_sipp(
        "uac_rejected.xml",
        sip[1],
        tmp_path,
        {"expected_status": "486", "audio_port": "9", "codec_pt": "0", "codec_name": "PCMU"},
    )
    assert code == 0, output
    await webhook.decisions()


async def test_hangup_sends_bye(
    sip: tuple[Server, int, int], api: AsyncOpenAI, webhook: Webhook, tmp_path: Path
) -> None:
    async def decide(call_id: str) -> None:
        await api.realtime.calls.accept(call_id, type="realtime")
        await asyncio.sleep(1.0)
        await api.realtime.calls.hangup(call_id)

    webhook.decide = decide
    ear = await rtp_ear()
    with contextlib.closing(ear):
        keys = {"audio_port": str(ear.port), "codec_pt": "8", "codec_name": "PCMA"}
        code, output = await run_sipp("uac_wait_bye.xml", sip[1], tmp_path, keys)
    assert code == 0, output
    await webhook.decisions()
    assert any(pt == 8 for _, pt, _ in ear.packets)  # PCMA both ways


async def test_refer_hands_the_caller_over_then_leaves(
    sip: tuple[Server, int, int], api: AsyncOpenAI, webhook: Webhook, tmp_path: Path
) -> None:
    async def decide(call_id: str) -> None:
        await api.realtime.calls.accept(call_id, type="realtime")
        await asyncio.sleep(1.0)
        await api.realtime.calls.refer(call_id, target_uri="tel:+15551234567")

    webhook.decide = decide
    keys = {"audio_port": "9", "codec_pt": "0", "codec_name": "PCMU"}
    code, output = await run_sipp("uac_transfer.xml", sip[1], tmp_path, keys)
    assert code == 0, output + sip[0].log()[-2000:]
    await webhook.decisions()
    assert "ended (transferred)" in sip[0].log()


LONG_REPLY = (
    "Here is everything about your order. It left our warehouse on Monday morning and went to the "
    "sorting centre in the afternoon. On Tuesday it was loaded on a truck, and on Wednesday it reached "
    "your town. It should arrive at your door on Thursday before noon."
)


async def test_barge_in_stops_the_agent_and_cuts_what_was_not_heard(
    sip: tuple[Server, int, int], api: AsyncOpenAI, webhook: Webhook, scripted: ScriptedLLM, tmp_path: Path
) -> None:
    scripted.script(LONG_REPLY, "Sure, I will stop.")
    seen: list[dict[str, Any]] = []
    sideband: list[asyncio.Task[None]] = []

    async def decide(call_id: str) -> None:
        await api.realtime.calls.accept(call_id, type="realtime")
        until = {"output_audio_buffer.cleared", "conversation.item.truncated"}
        sideband.append(asyncio.ensure_future(_sideband(api, call_id, seen, until)))

    webhook.decide = decide
    parts = [
        silence(3000, 8000),  # the greeting plays
        flite_speech("please check my order status", 8000),
        silence(4000, 8000),  # the long answer starts
        flite_speech("wait please stop talking", 8000),
        silence(3000, 8000),
    ]
    write_g711_wav(tmp_path / "caller.wav", np.concatenate(parts))
    ear = await rtp_ear()
    with contextlib.closing(ear):
        keys = {"audio_port": str(ear.port), "codec_pt": "0", "codec_name": "PCMU"}
        keys |= {"speech_wav": str(tmp_path / "caller.wav"), "dtmf_pcap": "pcap/dtmf_2833_5.pcap"}
        keys |= {"dtmf_at_ms": "13000", "talk_ms": "500"}
        code, output = await run_sipp("uac_call.xml", sip[1], tmp_path, keys)
        assert code == 0, output
        await webhook.decisions()
        await asyncio.wait_for(sideband[0], 30)
    kinds = [e["type"] for e in seen]
    assert kinds.index("input_audio_buffer.speech_started") < kinds.index("output_audio_buffer.cleared")
    truncated = next(e for e in seen if e["type"] == "conversation.item.truncated")
    assert 0 < truncated["audio_end_ms"] < 15000  # cut at what was played, well before its end
