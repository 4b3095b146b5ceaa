"""WebRTC calls through an independent aiortc client (tests/rtc_client.py) and the real SDK: the
caller's track is heard, the answer comes back as audio on the server's track, events flow on the
``oai-events`` data channel, and the server owns playback (``output_audio_buffer.*``, truncation of
what was not heard). Each call runs in real time, so these tests take seconds each."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import openai
import pytest
from openai import AsyncOpenAI

from tests.conformance.conftest import Server
from tests.conformance.helpers import normalise, types_of, words
from tests.rtc_client import RATE, RtcClient
from tests.scripted_llm import ScriptedLLM
from tests.speech import flite_speech, silence
from tests.wire import validate_beta, validate_ga

QUESTION = "please check my order status"
LONG_REPLY = (
    "Here is the forecast for the whole week. Monday will be sunny and warm with a light breeze. "
    "Tuesday brings clouds in the morning and rain in the afternoon. Wednesday stays wet and cool. "
    "Thursday clears up again, and Friday should be the warmest day of all."
)


@pytest.fixture
async def rtc() -> AsyncIterator[RtcClient]:
    client = RtcClient()
    yield client
    await client.close()


def _said(text: str) -> np.ndarray[Any, np.dtype[np.int16]]:
    return np.concatenate([flite_speech(text, RATE), silence(1200, RATE)])


def _rms(pcm: np.ndarray[Any, np.dtype[np.int16]]) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if len(pcm) else 0.0


async def _call(server: Server, rtc: RtcClient, key: str, **kwargs: Any) -> str:
    offered = await rtc.connect(f"{server.http_url}/v1/realtime/calls", key, **kwargs)
    assert offered.status == 201, offered.body
    assert offered.location is not None and offered.location.startswith("/v1/realtime/calls/rtc_")
    return offered.location.rsplit("/", 1)[-1]


async def test_a_secret_opens_a_call_that_hears_the_caller_and_answers_in_audio(
    server: Server, client: AsyncOpenAI, scripted: ScriptedLLM, rtc: RtcClient
) -> None:
    scripted.script("Your order ships today.")
    secret = await client.realtime.client_secrets.create(
        session={"type": "realtime", "instructions": "You are a weather line."}
    )
    await _call(server, rtc, secret.value)
    created = await rtc.next_event()
    validate_ga(created)
    assert created["type"] == "session.created"
    assert created["session"]["instructions"] == "You are a weather line."

    rtc.microphone.play(_said(QUESTION))  # no input_audio_buffer.append: the track is the input
    events = await rtc.until("response.done")
    events += await rtc.until("output_audio_buffer.stopped")
    for event in events:
        validate_ga(event)
    kinds = types_of(events)
    assert "response.output_audio.delta" not in kinds  # the audio goes on the track
    assert kinds.index("input_audio_buffer.speech_stopped") < kinds.index("response.created")
    assert kinds.index("response.content_part.added") < kinds.index("output_audio_buffer.started")
    assert kinds.index("response.done") < kinds.index("output_audio_buffer.stopped")
    done = next(e for e in events if e["type"] == "response.done")
    assert done["response"]["status"] == "completed"
    started = next(e for e in events if e["type"] == "output_audio_buffer.started")
    assert started["response_id"] == done["response"]["id"]
    assert "order" in words(scripted.requests[-1]["messages"][-1]["content"])

    # The answer was heard: speech energy on the caller's inbound track.
    assert _rms(rtc.heard_since(0)) > 300
    transcript = next(e for e in events if e["type"] == "response.output_audio_transcript.done")
    assert normalise(transcript["transcript"]) == normalise("Your order ships today.")


async def test_a_backend_call_with_its_session_sideband_control_and_hangup(
    server: Server, client: AsyncOpenAI, scripted: ScriptedLLM, rtc: RtcClient
) -> None:
    """The unified interface: the SDK posts the offer and a session as multipart with a key; a
    sideband socket drives the call; the backend hangs up."""
    sdp = await rtc.offer()
    raw = await client.realtime.calls.with_raw_response.create(
        sdp=sdp, session={"type": "realtime", "instructions": "Be brief.", "output_modalities": ["text"]}
    )
    assert raw.status_code == 201
    call_id = raw.headers["location"].rsplit("/", 1)[-1]
    from aiortc import RTCSessionDescription

    await rtc.pc.setRemoteDescription(RTCSessionDescription(sdp=raw.http_response.text, type="answer"))
    first, second = await rtc.next_event(), await rtc.next_event()
    assert (first["type"], second["type"]) == ("session.created", "session.updated")
    assert second["session"]["instructions"] == "Be brief."

    scripted.script("Good morning.")
    async with client.realtime.connect(call_id=call_id) as sideband:
        await sideband.conversation.item.create(
            item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]}
        )
        await sideband.response.create()
        seen: list[dict[str, Any]] = []
        async for event in sideband:
            validate_ga(event.model_dump(mode="json", exclude_unset=True))
            seen.append({"type": event.type})
            if event.type == "response.done":
                assert event.response.status == "completed"
                break
        on_channel = await rtc.until("response.done")
        assert "response.output_text.done" in types_of(on_channel)  # the browser saw it too

        await client.realtime.calls.hangup(call_id)
        await asyncio.wait_for(rtc.channel_closed.wait(), 30)
        with pytest.raises(openai.NotFoundError):
            await client.realtime.calls.hangup(call_id)
    assert "conversation.item.added" in types_of(seen)


async def test_barge_in_stops_playback_and_cuts_what_was_not_heard(
    server: Server, client: AsyncOpenAI, scripted: ScriptedLLM, rtc: RtcClient
) -> None:
    scripted.script(LONG_REPLY, "Okay, I will stop.")
    await _call(server, rtc, "sk-test")
    await rtc.until("session.created")
    rtc.send({"type": "response.create"})
    started = await rtc.until("output_audio_buffer.started")
    response_id = started[-1]["response_id"]
    item_id = next(e for e in started if e["type"] == "response.output_item.added")["item"]["id"]
    await asyncio.sleep(2.0)  # let some of the answer play
    rtc.microphone.play(_said("please stop talking about the weather"))

    events = await rtc.until("conversation.item.truncated")
    for event in events:
        validate_ga(event)
    kinds = types_of(events)
    assert "input_audio_buffer.speech_started" in kinds
    cleared = next(e for e in events if e["type"] == "output_audio_buffer.cleared")
    assert cleared["response_id"] == response_id
    truncated = events[-1]
    assert truncated["item_id"] == item_id and truncated["content_index"] == 0
    heard_ms = truncated["audio_end_ms"]
    assert 1000 < heard_ms < 20000

    # The conversation holds only what was heard: the item's audio is that long now.
    rtc.send({"type": "conversation.item.retrieve", "item_id": item_id})
    retrieved = (await rtc.until("conversation.item.retrieved"))[-1]
    audio = base64.b64decode(retrieved["item"]["content"][0]["audio"])
    assert abs(len(audio) / 48 - heard_ms) <= 1
    transcript = retrieved["item"]["content"][0]["transcript"]
    assert len(transcript) < len(LONG_REPLY)


async def test_output_audio_buffer_clear_cuts_playback(
    server: Server, client: AsyncOpenAI, scripted: ScriptedLLM, rtc: RtcClient
) -> None:
    scripted.script(LONG_REPLY)
    await _call(server, rtc, "sk-test")
    await rtc.until("session.created")
    rtc.send({"type": "response.create"})
    started = (await rtc.until("output_audio_buffer.started"))[-1]
    await rtc.until("response.done")  # all audio made; most of it still to play
    rtc.send({"type": "output_audio_buffer.clear", "event_id": "clear_1"})
    events = await rtc.until("conversation.item.truncated")
    cleared = next(e for e in events if e["type"] == "output_audio_buffer.cleared")
    assert cleared["response_id"] == started["response_id"]
    cut_at = time.monotonic()
    await asyncio.sleep(1.0)
    assert _rms(rtc.heard_since(cut_at + 0.4)) < 100  # silence after the jitter buffers drain
    assert "output_audio_buffer.stopped" not in types_of(events)


async def test_beta_webrtc_speaks_the_beta_dialect(
    server: Server, client: AsyncOpenAI, scripted: ScriptedLLM, rtc: RtcClient
) -> None:
    scripted.script("Hello there.")
    session = await client.beta.realtime.sessions.create(modalities=["text"], instructions="Greet.")
    offered = await rtc.connect(
        f"{server.http_url}/v1/realtime?model=gpt-4o-realtime-preview", session.client_secret.value
    )
    assert offered.status == 201, offered.body
    created = await rtc.next_event()
    validate_beta(created)
    assert created["type"] == "session.created" and created["session"]["instructions"] == "Greet."
    rtc.send({"type": "response.create"})
    events = await rtc.until("response.done")
    for event in events:
        validate_beta(event)
    assert "response.text.delta" in types_of(events)


async def test_bad_offers_and_misuse_get_clear_errors(
    server: Server, client: AsyncOpenAI, rtc: RtcClient
) -> None:
    url = f"{server.http_url}/v1/realtime/calls"
    import aiohttp

    sdp = await rtc.offer()
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer sk-test"}) as http:
        reply = await http.post(url, data="hello", headers={"Content-Type": "text/plain"})
        assert reply.status == 415 and (await reply.json())["error"]["code"] == "unsupported_media_type"
        reply = await http.post(url, data="not sdp", headers={"Content-Type": "application/sdp"})
        assert reply.status == 400 and (await reply.json())["error"]["param"] == "sdp"
        form = aiohttp.FormData()
        form.add_field("sdp", sdp, content_type="application/sdp")
        form.add_field("session", '{"type": "realtime", "output_modalities": ["video"]}')
        reply = await http.post(url, data=form)
        body = await reply.json()
        assert reply.status == 400 and body["error"]["param"].startswith("session.output_modalities"), body
        reply = await http.post(f"{url}/rtc_nobody/hangup")
        assert reply.status == 404 and (await reply.json())["error"]["code"] == "call_not_found"
        reply = await http.post(
            url, data=sdp, headers={"Content-Type": "application/sdp", "Authorization": "Bearer ek_nope"}
        )
        assert reply.status == 401
    with pytest.raises(Exception) as unknown:
        async with client.realtime.connect(call_id="rtc_nobody") as conn:
            await conn.recv()
    assert "404" in str(unknown.value)
