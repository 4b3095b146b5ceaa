"""The beta dialect (``OpenAI-Beta: realtime=v1``) through the real SDK's ``client.beta.realtime``.

Every event the beta client receives is validated strictly against the beta server-event union
(``tests.wire.validate_beta``) and must not carry a GA-only name.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import numpy as np
import pytest
import websockets
from openai import AsyncOpenAI

from parley.audio.g711 import ulaw_decode, ulaw_encode
from tests.conformance.conftest import Server
from tests.conformance.helpers import (
    Event,
    b64,
    normalise,
    of_type,
    one,
    rms,
    silence,
    speech,
    types_of,
    words,
)
from tests.scripted_llm import Reply, ScriptedLLM
from tests.speech import flite_speech
from tests.wire import validate_beta

MODEL = "gpt-4o-realtime-preview"
GA_ONLY = (
    "response.output_text.",
    "response.output_audio.",
    "response.output_audio_transcript.",
    "conversation.item.added",
    "conversation.item.done",
    "input_audio_buffer.timeout_triggered",
)
ORDER = "I would like to check the status of my order"
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "name": "get_weather",
    "description": "The current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
TEXT_MANUAL: dict[str, Any] = {"modalities": ["text"], "turn_detection": None}


async def next_beta(conn: Any, timeout: float = 30.0) -> Event:
    """The next server event, validated strictly against the beta models."""
    raw = await asyncio.wait_for(conn.recv_bytes(), timeout)
    event: Event = json.loads(raw)
    validate_beta(event)
    assert not event["type"].startswith(GA_ONLY), event["type"]
    return event


async def until(conn: Any, type_: str, timeout: float = 60.0) -> list[Event]:
    events: list[Event] = []
    deadline = time.monotonic() + timeout
    while True:
        events.append(await next_beta(conn, max(0.1, deadline - time.monotonic())))
        if events[-1]["type"] == type_:
            return events


async def opened(conn: Any) -> tuple[Event, Event]:
    created, conversation = await next_beta(conn), await next_beta(conn)
    assert created["type"] == "session.created", created
    assert conversation["type"] == "conversation.created", conversation
    return created, conversation


async def update(conn: Any, **session: Any) -> dict[str, Any]:
    await conn.session.update(session=session)
    events = await until(conn, "session.updated")
    assert types_of(events) == ["session.updated"], events
    result: dict[str, Any] = events[-1]["session"]
    return result


async def add_user_text(conn: Any, text: str) -> Event:
    await conn.conversation.item.create(
        item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    )
    events = await until(conn, "conversation.item.created")
    assert types_of(events) == ["conversation.item.created"], events
    return events[-1]


async def respond(conn: Any, **response: Any) -> list[Event]:
    if response:
        await conn.response.create(response=response)
    else:
        await conn.response.create()
    return await until(conn, "response.done", timeout=120)


async def expect_error(conn: Any, code: str, param: str | None, event_id: str) -> dict[str, Any]:
    events = await until(conn, "error")
    error: dict[str, Any] = events[-1]["error"]
    assert (error["code"], error["param"], error["event_id"]) == (code, param, event_id), error
    assert error["type"] == "invalid_request_error" and error["message"]
    return error


async def send_raw(conn: Any, text: str) -> None:
    """Send a frame exactly as given (the beta connection has no ``send_raw``)."""
    await conn._connection.send(text)


def sent_temperatures(scripted: ScriptedLLM) -> list[float | None]:
    return [request.get("temperature") for request in scripted.requests]


# -- session --------------------------------------------------------------------------------------


async def test_session_created_and_conversation_created(client: AsyncOpenAI) -> None:
    async with client.beta.realtime.connect(model=MODEL) as conn:
        created, conversation = await opened(conn)
    session = created["session"]
    assert session["object"] == "realtime.session" and session["id"].startswith("sess_")
    assert session["model"] == MODEL
    assert session["modalities"] == ["text", "audio"]
    assert session["input_audio_format"] == "pcm16" and session["output_audio_format"] == "pcm16"
    assert session["turn_detection"]["type"] == "server_vad"
    assert session["input_audio_transcription"] is None
    assert session["temperature"] == 0.8 and session["max_response_output_tokens"] == "inf"
    assert isinstance(session["voice"], str) and session["tools"] == [] and session["tool_choice"] == "auto"
    assert not {"type", "audio", "output_modalities"} & set(session)
    assert conversation["conversation"]["object"] == "realtime.conversation"
    assert conversation["conversation"]["id"].startswith("conv_")


async def test_flat_session_update_with_formats_turn_detection_and_transcription(client: AsyncOpenAI) -> None:
    async with client.beta.realtime.connect(model=MODEL) as conn:
        await opened(conn)
        session = await update(
            conn,
            modalities=["text"],
            instructions="Answer in one sentence.",
            voice="ash",
            input_audio_format="g711_ulaw",
            output_audio_format="g711_alaw",
            turn_detection={"type": "server_vad", "threshold": 0.6, "silence_duration_ms": 400},
            input_audio_transcription={"model": "whisper-1", "language": "en"},
            tools=[WEATHER_TOOL],
            tool_choice="required",
            temperature=0.9,
            max_response_output_tokens=200,
            speed=1.2,
        )
        assert session["modalities"] == ["text"]
        assert session["instructions"] == "Answer in one sentence."
        assert session["voice"] == "ash" and session["speed"] == 1.2
        assert (session["input_audio_format"], session["output_audio_format"]) == ("g711_ulaw", "g711_alaw")
        turn = session["turn_detection"]
        assert (turn["type"], turn["threshold"], turn["silence_duration_ms"]) == ("server_vad", 0.6, 400)
        assert turn["prefix_padding_ms"] == 300, "fields not sent keep their defaults"
        assert session["input_audio_transcription"]["model"] == "whisper-1"
        assert session["tools"][0]["name"] == "get_weather" and session["tool_choice"] == "required"
        assert session["temperature"] == 0.9 and session["max_response_output_tokens"] == 200

        cleared = await update(
            conn, turn_detection=None, input_audio_transcription=None, modalities=["text", "audio"]
        )
        assert cleared["turn_detection"] is None and cleared["input_audio_transcription"] is None
        assert cleared["modalities"] == ["text", "audio"]
        assert cleared["voice"] == "ash" and cleared["temperature"] == 0.9, "what was not sent is kept"


# -- turns ----------------------------------------------------------------------------------------


async def test_text_turn(client: AsyncOpenAI, scripted: ScriptedLLM) -> None:
    scripted.script("Hello there, how can I help?")
    async with client.beta.realtime.connect(model=MODEL) as conn:
        await opened(conn)
        await update(conn, **TEXT_MANUAL)
        user = await add_user_text(conn, "Hi!")
        assert user["item"]["content"] == [{"type": "input_text", "text": "Hi!"}]
        events = await respond(conn)

    assert types_of(events)[:5] == [
        "response.created",
        "rate_limits.updated",
        "response.output_item.added",
        "conversation.item.created",
        "response.content_part.added",
    ]
    assert [t for t in types_of(events)[5:] if t != "response.text.delta"] == [
        "response.text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.done",
    ]
    created = one(events, "response.created")["response"]
    assert created["status"] == "in_progress" and created["modalities"] == ["text"]
    assert created["temperature"] == 0.8 and created["output"] == []
    deltas = "".join(e["delta"] for e in of_type(events, "response.text.delta"))
    assert deltas == one(events, "response.text.done")["text"] == "Hello there, how can I help?"
    assert one(events, "response.content_part.added")["part"] == {"type": "text", "text": ""}
    done = events[-1]["response"]
    assert done["status"] == "completed"
    assert done["output"][0]["content"] == [{"type": "text", "text": "Hello there, how can I help?"}]
    assert done["output"][0]["role"] == "assistant" and done["usage"]["total_tokens"] > 0
    assert one(events, "conversation.item.created")["previous_item_id"] == user["item"]["id"]


async def test_temperature_reaches_the_language_model(client: AsyncOpenAI, scripted: ScriptedLLM) -> None:
    scripted.script("One.", "Two.", "Three.")
    async with client.beta.realtime.connect(model=MODEL) as conn:
        await opened(conn)
        await update(conn, **TEXT_MANUAL)
        await add_user_text(conn, "Count with me.")
        await respond(conn)
        assert (await update(conn, temperature=0.7))["temperature"] == 0.7
        second = await respond(conn)
        third = await respond(conn, temperature=1.1)
        await conn.session.update(session={"temperature": 1.5}, event_id="too_hot")
        await expect_error(conn, "decimal_above_max_value", "session.temperature", "too_hot")
    assert sent_temperatures(scripted) == [None, 0.7, 1.1]
    assert second[-1]["response"]["temperature"] == 0.7
    assert third[-1]["response"]["temperature"] == 1.1
    assert one(third, "response.created")["response"]["temperature"] == 1.1


async def test_audio_turn_with_committed_speech(client: AsyncOpenAI, scripted: ScriptedLLM) -> None:
    scripted.script("Sure, what is your order number?")
    audio = silence(300) + speech(ORDER) + silence(300)
    async with client.beta.realtime.connect(model=MODEL) as conn:
        await opened(conn)
        await update(conn, turn_detection=None, input_audio_transcription={"model": "whisper-1"})
        for start in range(0, len(audio), 4800):
            await conn.input_audio_buffer.append(audio=b64(audio[start : start + 4800]))
        await conn.input_audio_buffer.commit()
        committed = await until(conn, "conversation.item.created")
        assert types_of(committed) == ["input_audio_buffer.committed", "conversation.item.created"]
        item = committed[-1]["item"]
        assert item["id"] == committed[0]["item_id"] and item["content"][0]["type"] == "input_audio"
        transcribed = await until(conn, "conversation.item.input_audio_transcription.completed")
        assert "order" in words(transcribed[-1]["transcript"]), transcribed[-1]["transcript"]
        events = await respond(conn)

    types = types_of(events)
    assert {"response.audio.delta", "response.audio_transcript.delta"} <= set(types)
    assert types[-5:] == [
        "response.audio.done",
        "response.audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.done",
    ]
    assert one(events, "response.content_part.added")["part"] == {"type": "audio", "transcript": ""}
    transcript = one(events, "response.audio_transcript.done")["transcript"]
    assert "".join(e["delta"] for e in of_type(events, "response.audio_transcript.delta")) == transcript
    assert normalise(transcript) == "Sure, what is your order number?"
    pcm = np.frombuffer(
        b"".join(base64.b64decode(e["delta"]) for e in of_type(events, "response.audio.delta")), "<i2"
    )
    assert 0.8 < len(pcm) / 24000 < 15 and rms(pcm) > 300
    done = events[-1]["response"]
    assert done["modalities"] == ["text", "audio"] and done["output_audio_format"] == "pcm16"
    assert done["output"][0]["content"] == [{"type": "audio", "transcript": transcript}]
    user_messages = [m for m in scripted.last_request["messages"] if m["role"] == "user"]
    assert "order" in words(str(user_messages[-1]["content"]))


async def test_g711_ulaw_in_and_out(client: AsyncOpenAI, scripted: ScriptedLLM) -> None:
    scripted.script("Your order has shipped.")
    pcm8k = np.concatenate([np.zeros(2400, np.int16), flite_speech(ORDER, 8000), np.zeros(2400, np.int16)])
    ulaw = ulaw_encode(pcm8k)
    async with client.beta.realtime.connect(model=MODEL) as conn:
        await opened(conn)
        session = await update(
            conn,
            input_audio_format="g711_ulaw",
            output_audio_format="g711_ulaw",
            turn_detection=None,
            input_audio_transcription={"model": "whisper-1"},
        )
        assert session["input_audio_format"] == session["output_audio_format"] == "g711_ulaw"
        for start in range(0, len(ulaw), 800):  # 100 ms of µ-law
            await conn.input_audio_buffer.append(audio=b64(ulaw[start : start + 800]))
        await conn.input_audio_buffer.commit()
        transcribed = await until(conn, "conversation.item.input_audio_transcription.completed")
        # Telephone-band speech is recognised less well; garbage (a wrong format) would not match.
        assert {"would", "like"} <= words(transcribed[-1]["transcript"]), transcribed[-1]["transcript"]
        assert transcribed[-1]["usage"]["seconds"] == pytest.approx(len(ulaw) / 8000, abs=0.2)
        events = await respond(conn)
    audio = b"".join(base64.b64decode(e["delta"]) for e in of_type(events, "response.audio.delta"))
    decoded = ulaw_decode(audio)
    assert 0.5 < len(audio) / 8000 < 10, "one byte per sample at 8 kHz"
    assert rms(decoded) > 300
    done = events[-1]["response"]
    assert done["output_audio_format"] == "g711_ulaw"


async def test_function_call_turn(client: AsyncOpenAI, scripted: ScriptedLLM) -> None:
    scripted.script(
        Reply(tool_calls=[("get_weather", '{"city": "Paris"}', "call_paris")]), "It is sunny in Paris."
    )
    async with client.beta.realtime.connect(model=MODEL) as conn:
        await opened(conn)
        await update(conn, **TEXT_MANUAL, tools=[WEATHER_TOOL])
        await add_user_text(conn, "What is the weather in Paris?")
        first = await respond(conn)
        call = first[-1]["response"]["output"][0]
        assert call["type"] == "function_call" and call["name"] == "get_weather"
        assert call["call_id"] == "call_paris" and call["arguments"] == '{"city": "Paris"}'
        args = one(first, "response.function_call_arguments.done")
        assert (args["call_id"], args["arguments"]) == ("call_paris", '{"city": "Paris"}')
        assert (
            "".join(e["delta"] for e in of_type(first, "response.function_call_arguments.delta"))
            == args["arguments"]
        )
        await conn.conversation.item.create(
            item={"type": "function_call_output", "call_id": "call_paris", "output": '{"sky": "clear"}'}
        )
        created = await until(conn, "conversation.item.created")
        assert created[-1]["item"]["type"] == "function_call_output"
        second = await respond(conn)
    assert second[-1]["response"]["output"][0]["content"][0] == {
        "type": "text",
        "text": "It is sunny in Paris.",
    }
    tool_message = scripted.last_request["messages"][-1]
    assert tool_message["role"] == "tool" and tool_message["tool_call_id"] == "call_paris"
    assert scripted.requests[0]["tools"][0]["function"]["name"] == "get_weather"


async def test_items_are_created_and_retrieved_in_beta_shape(client: AsyncOpenAI) -> None:
    async with client.beta.realtime.connect(model=MODEL) as conn:
        await opened(conn)
        await conn.conversation.item.create(
            item={
                "id": "item_a",
                "type": "message",
                "role": "assistant",
                "content": [{"type": "text", "text": "Hi."}],
            }
        )
        created = (await until(conn, "conversation.item.created"))[-1]
        assert created["item"]["id"] == "item_a" and created["previous_item_id"] is None
        assert created["item"]["content"] == [{"type": "text", "text": "Hi."}]
        await conn.conversation.item.create(
            item={
                "type": "message",
                "role": "system",
                "content": [{"type": "input_text", "text": "Be kind."}],
            },
            previous_item_id="root",
        )
        system = (await until(conn, "conversation.item.created"))[-1]
        assert system["item"]["role"] == "system"
        await conn.conversation.item.retrieve(item_id="item_a")
        retrieved = (await until(conn, "conversation.item.retrieved"))[-1]
        assert retrieved["item"]["content"] == [{"type": "text", "text": "Hi."}]
        await conn.conversation.item.delete(item_id="item_a")
        assert (await until(conn, "conversation.item.deleted"))[-1]["item_id"] == "item_a"


async def test_errors_echo_the_event_id_and_name_beta_fields(client: AsyncOpenAI) -> None:
    async with client.beta.realtime.connect(model=MODEL) as conn:
        await opened(conn)
        await send_raw(
            conn,
            json.dumps(
                {"type": "session.update", "session": {"output_modalities": ["text"]}, "event_id": "e1"}
            ),
        )
        await expect_error(conn, "unknown_parameter", "session.output_modalities", "e1")
        await conn.session.update(session={"speed": 3.0}, event_id="e2")
        error = await expect_error(conn, "decimal_above_max_value", "session.speed", "e2")
        assert "audio.output" not in error["message"]
        await send_raw(
            conn,
            json.dumps(
                {"type": "session.update", "session": {"input_audio_format": "opus"}, "event_id": "e3"}
            ),
        )
        await expect_error(conn, "invalid_value", "session.input_audio_format", "e3")
        await conn.response.cancel(event_id="e4")
        await expect_error(conn, "response_cancel_not_active", "response_id", "e4")
        await conn.input_audio_buffer.commit(event_id="e5")
        await expect_error(conn, "input_audio_buffer_commit_empty", None, "e5")
        await send_raw(conn, "{not json")
        bad_json = (await until(conn, "error"))[-1]["error"]
        assert bad_json["code"] == "invalid_json"
        session = await update(conn, instructions="still here")
        assert session["instructions"] == "still here" and session["speed"] == 1.0


# -- browser-style handshake and transcription sessions -------------------------------------------


@pytest.mark.parametrize(
    ("offered", "selected"),
    [
        (["realtime", "openai-insecure-api-key.sk-test", "openai-beta.realtime-v1"], "realtime"),
        (["openai-insecure-api-key.sk-test", "openai-beta.realtime-v1"], "openai-beta.realtime-v1"),
    ],
)
async def test_browser_subprotocol_selects_beta(server: Server, offered: list[str], selected: str) -> None:
    url = f"{server.ws_base}/realtime?model={MODEL}"
    async with websockets.connect(url, subprotocols=offered) as ws:  # type: ignore[arg-type]
        assert ws.subprotocol == selected
        first = json.loads(await asyncio.wait_for(ws.recv(), 30))
        second = json.loads(await asyncio.wait_for(ws.recv(), 30))
    for event in (first, second):
        validate_beta(event)
    assert (first["type"], second["type"]) == ("session.created", "conversation.created")
    assert first["session"]["input_audio_format"] == "pcm16"


async def test_beta_transcription_session(client: AsyncOpenAI, scripted: ScriptedLLM) -> None:
    audio = silence(300) + speech(ORDER) + silence(300)
    async with client.beta.realtime.connect(model=MODEL, extra_query={"intent": "transcription"}) as conn:
        created = await next_beta(conn)
        assert created["type"] == "transcription_session.created", created
        session = created["session"]
        assert (
            session["object"] == "realtime.transcription_session" and session["input_audio_format"] == "pcm16"
        )
        await conn.transcription_session.update(
            session={
                "input_audio_transcription": {"model": "whisper-1", "language": "en"},
                "turn_detection": None,  # type: ignore[typeddict-item]  # null turns VAD off
            }
        )
        updated = await until(conn, "transcription_session.updated")
        assert types_of(updated) == ["transcription_session.updated"]
        assert updated[-1]["session"]["turn_detection"] is None
        assert updated[-1]["session"]["input_audio_transcription"]["model"] == "whisper-1"
        for start in range(0, len(audio), 4800):
            await conn.input_audio_buffer.append(audio=b64(audio[start : start + 4800]))
        await conn.input_audio_buffer.commit()
        events = await until(conn, "conversation.item.input_audio_transcription.completed")
        assert types_of(events)[:2] == ["input_audio_buffer.committed", "conversation.item.created"]
        assert "order" in words(events[-1]["transcript"]), events[-1]["transcript"]
        await conn.response.create(event_id="r1")
        error = (await until(conn, "error"))[-1]["error"]
        assert error["event_id"] == "r1"
    assert scripted.requests == [], "a transcription session never asks the language model"
