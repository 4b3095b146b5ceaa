"""A GA session engine on fake engines driven through the beta dialect: session, text, audio and
function-call turns, errors and transcription sessions, all in beta names. Every beta event the
client gets is validated strictly."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest

from tests.fakes import FakeLLM, FakeSTT, FakeTTS, text_reply, tool_reply
from tests.realtime_events import USER_HI
from tests.unit.beta_recorder import BetaRecorder

TEXT_MANUAL: dict[str, Any] = {
    "type": "session.update",
    "session": {"modalities": ["text"], "turn_detection": None},
}


async def started(**kwargs: Any) -> BetaRecorder:
    rec = BetaRecorder(**kwargs)
    await rec.session.start()
    return rec


def tone(ms: int, rate: int = 24000) -> bytes:
    t = np.arange(int(rate * ms / 1000)) / rate
    return (np.sin(2 * np.pi * 300 * t) * 8000).astype("<i2").tobytes()


# -- a GA session driven through the dialect ------------------------------------------------------


async def test_session_created_then_conversation_created() -> None:
    rec = await started()
    assert rec.types() == ["session.created", "conversation.created"]
    session = rec.events[0]["session"]
    assert session["object"] == "realtime.session" and session["modalities"] == ["text", "audio"]
    assert session["input_audio_format"] == "pcm16" and session["temperature"] == 0.8
    assert rec.events[1]["conversation"] == {
        "id": rec.session.conversation.id,
        "object": "realtime.conversation",
    }
    assert rec.events[1]["conversation"]["id"].startswith("conv_")
    await rec.session.close()


async def test_session_update_and_temperature() -> None:
    rec = await started()
    await rec.send(
        {
            "type": "session.update",
            "session": {"temperature": 1.0, "voice": "ash", "output_audio_format": "g711_ulaw"},
        }
    )
    updated = (await rec.wait_for("session.updated"))["session"]
    assert (updated["temperature"], updated["voice"], updated["output_audio_format"]) == (
        1.0,
        "ash",
        "g711_ulaw",
    )
    assert rec.session.config.temperature == 1.0
    assert rec.session.config.output["format"] == {"type": "audio/pcmu"}
    rec.events.clear()
    # An update the engine refuses changes nothing, temperature included; its param names beta fields.
    await rec.send(
        {"type": "session.update", "event_id": "bad", "session": {"temperature": 0.7, "speed": 3.0}}
    )
    error = await rec.error()
    assert (error["code"], error["param"], error["event_id"]) == (
        "decimal_above_max_value",
        "session.speed",
        "bad",
    )
    assert "'session.speed'" in error["message"] and "audio.output" not in error["message"]
    assert rec.session.config.temperature == 1.0
    await rec.send({"type": "session.update", "session": {"temperature": None}})
    assert (await rec.wait_for("session.updated"))["session"]["temperature"] == 0.8
    assert rec.session.config.temperature is None
    await rec.session.close()


async def test_text_turn_in_beta_names_with_temperatures_reaching_the_model() -> None:
    llm = FakeLLM(replies=[text_reply("Hello there!"), text_reply("Again."), text_reply("Once more.")])
    rec = await started(llm=llm)
    await rec.send(TEXT_MANUAL)
    await rec.send(USER_HI)
    await rec.send({"type": "response.create", "event_id": "c2"})
    done = await rec.wait_for("response.done")
    types = rec.types()
    start = types.index("response.created")
    assert types[types.index("session.updated") + 1 :] == [
        "conversation.item.created",
        "response.created",
        "rate_limits.updated",
        "response.output_item.added",
        "conversation.item.created",
        "response.content_part.added",
        "response.text.delta",
        "response.text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.done",
    ]
    created = rec.events[start]["response"]
    assert created["modalities"] == ["text"] and created["temperature"] == 0.8
    assert created["output_audio_format"] == "pcm16" and "output_modalities" not in created
    response = done["response"]
    assert response["status"] == "completed"
    assert response["output"][0]["content"] == [{"type": "text", "text": "Hello there!"}]
    assert set(response["usage"]["input_token_details"]) == {"cached_tokens", "text_tokens", "audio_tokens"}
    assert llm.requests[0].temperature is None  # never set: the model server's own default
    # The session's temperature, then a per-response one that does not stick.
    await rec.send({"type": "session.update", "session": {"temperature": 0.7}})
    await rec.wait_for("session.updated", 2)
    await rec.send({"type": "response.create", "response": {"temperature": 1.2}})
    second = await rec.wait_for("response.done", 2)
    assert (
        second["response"]["temperature"] == 1.2
        and rec.of_type("response.created")[1]["response"]["temperature"] == 1.2
    )
    await rec.send({"type": "response.create"})
    third = await rec.wait_for("response.done", 3)
    assert third["response"]["temperature"] == 0.7
    assert [r.temperature for r in llm.requests] == [None, 1.2, 0.7]
    await rec.session.close()


async def test_audio_turn_in_beta_names() -> None:
    tts = FakeTTS()
    rec = await started(llm=FakeLLM(replies=[text_reply("Hello there.")]), tts=tts)
    await rec.send(
        {"type": "session.update", "session": {"turn_detection": None, "output_audio_format": "g711_ulaw"}}
    )
    await rec.send(USER_HI)
    await rec.send({"type": "response.create"})
    done = await rec.wait_for("response.done")
    types = rec.types()
    assert {"response.audio.delta", "response.audio_transcript.delta", "response.audio.done"} <= set(types)
    assert rec.of_type("response.audio_transcript.done")[0]["transcript"] == "Hello there."
    assert rec.of_type("response.content_part.added")[0]["part"]["type"] == "audio"
    audio = b"".join(base64.b64decode(e["delta"]) for e in rec.of_type("response.audio.delta"))
    assert len(audio) > 0
    response = done["response"]
    assert response["modalities"] == ["text", "audio"] and response["output_audio_format"] == "g711_ulaw"
    assert response["voice"] == rec.session.config.output["voice"]
    assert response["output"][0]["content"][0] == {"type": "audio", "transcript": "Hello there."}
    await rec.session.close()


async def test_function_call_turn() -> None:
    tool = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
    llm = FakeLLM(replies=[tool_reply("get_weather", '{"city": "Paris"}'), text_reply("Sunny.")])
    rec = await started(llm=llm)
    await rec.send(
        {
            "type": "session.update",
            "session": {**TEXT_MANUAL["session"], "tools": [tool], "tool_choice": "get_weather"},
        }
    )
    updated = await rec.wait_for("session.updated")
    assert updated["session"]["tool_choice"] == "get_weather"
    await rec.send(USER_HI)
    await rec.send({"type": "response.create"})
    done = await rec.wait_for("response.done")
    call = done["response"]["output"][0]
    assert call["type"] == "function_call" and call["name"] == "get_weather"
    assert rec.of_type("response.function_call_arguments.done")[0]["arguments"] == '{"city": "Paris"}'
    assert llm.requests[0].tool_choice == "get_weather"
    output = {"type": "function_call_output", "call_id": call["call_id"], "output": '{"sky": "clear"}'}
    await rec.send({"type": "conversation.item.create", "item": output})
    await rec.send({"type": "response.create"})
    await rec.wait_for("response.done", 2)
    assert llm.requests[1].messages[-1]["role"] == "tool"
    await rec.session.close()


async def test_committed_audio_is_one_item_created() -> None:
    rec = await started(stt=FakeSTT(transcripts=["hello there"]))
    await rec.send(
        {
            "type": "session.update",
            "session": {"turn_detection": None, "input_audio_transcription": {"model": "whisper-1"}},
        }
    )
    await rec.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(tone(300)).decode()})
    await rec.send({"type": "input_audio_buffer.commit"})
    completed = await rec.wait_for("conversation.item.input_audio_transcription.completed")
    committed = rec.of_type("input_audio_buffer.committed")[0]
    [created] = [
        e for e in rec.of_type("conversation.item.created") if e["item"]["id"] == committed["item_id"]
    ]
    assert created["item"]["content"] == [{"type": "input_audio", "transcript": None}]
    assert completed["transcript"] == "hello there"
    await rec.session.close()


@pytest.mark.parametrize(
    ("event", "code", "param"),
    [
        ({"type": "session.update", "session": {"bogus": True}}, "unknown_parameter", "session.bogus"),
        (
            {"type": "session.update", "session": {"output_modalities": ["text"]}},
            "unknown_parameter",
            "session.output_modalities",
        ),
        ({"type": "session.update", "session": {"speed": 0.1}}, "decimal_below_min_value", "session.speed"),
        (
            {"type": "session.update", "session": {"max_response_output_tokens": 5000}},
            "invalid_value",
            "session.max_response_output_tokens",
        ),
        (
            {
                "type": "conversation.item.create",
                "item": {"type": "message", "role": "user", "content": [{"type": "text", "text": "x"}]},
            },
            "invalid_value",
            "item.content[0].type",
        ),
        (
            {"type": "response.create", "response": {"max_response_output_tokens": 0}},
            "integer_below_min_value",
            "response.max_response_output_tokens",
        ),
        ({"type": "response.cancel"}, "response_cancel_not_active", "response_id"),
        ({"type": "input_audio_buffer.commit"}, "input_audio_buffer_commit_empty", None),
        ({"type": "conversation.item.delete", "item_id": "nope"}, "item_not_found", "item_id"),
    ],
)
async def test_errors_echo_event_id_in_beta_terms(
    event: dict[str, Any], code: str, param: str | None
) -> None:
    rec = await started()
    rec.events.clear()
    await rec.send({**event, "event_id": "evt_c"})
    error = await rec.error()
    assert (error["code"], error["param"], error["event_id"]) == (code, param, "evt_c"), error
    await rec.send({"type": "session.update", "session": {"instructions": "still here"}})
    assert (await rec.wait_for("session.updated"))["session"]["instructions"] == "still here"
    await rec.session.close()


async def test_bad_json_gets_an_error() -> None:
    rec = await started()
    rec.events.clear()
    await rec.dialect.handle_text("{not json")
    assert (await rec.error())["code"] == "invalid_json"
    await rec.session.close()


async def test_transcription_session_through_the_dialect() -> None:
    rec = await started(session_type="transcription", stt=FakeSTT(transcripts=["one two"]))
    assert rec.types() == ["transcription_session.created"]
    session = rec.events[0]["session"]
    assert session["object"] == "realtime.transcription_session"
    assert session["input_audio_format"] == "pcm16" and session["modalities"] == ["text"]
    rec.events.clear()
    await rec.send(
        {
            "type": "transcription_session.update",
            "session": {"turn_detection": None, "input_audio_format": "g711_ulaw"},
        }
    )
    updated = (await rec.wait_for("transcription_session.updated"))["session"]
    assert updated["turn_detection"] is None and updated["input_audio_format"] == "g711_ulaw"
    await rec.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(bytes(800 * 3)).decode()})
    await rec.send({"type": "input_audio_buffer.commit"})
    completed = await rec.wait_for("conversation.item.input_audio_transcription.completed")
    assert completed["transcript"] == "one two"
    assert "conversation.item.created" in rec.types()
    rec.events.clear()
    await rec.send({"type": "response.create", "event_id": "r"})
    error = await rec.error()
    assert error["event_id"] == "r" and error["code"] == "invalid_event"
    await rec.session.close()
