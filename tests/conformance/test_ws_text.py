"""Handshake, session configuration and the text turn, through the official ``openai`` client."""

from __future__ import annotations

import copy
import time
from typing import Any

from openai import AsyncOpenAI

from tests.conformance.conftest import collect_until
from tests.conformance.helpers import (
    WEATHER_TOOL,
    add_item,
    of_type,
    one,
    opened,
    run_response,
    squash,
    start_text_session,
    types_of,
    update_session,
    user_text,
)
from tests.realtime_events import TEXT_TURN
from tests.scripted_llm import ScriptedLLM


async def test_session_created_first_with_full_ga_defaults(client: AsyncOpenAI) -> None:
    async with client.realtime.connect(model="gpt-realtime") as conn:
        session = (await opened(conn))["session"]
    assert session["type"] == "realtime"
    assert session["object"] == "realtime.session"
    assert session["id"].startswith("sess_")
    assert session["model"] == "gpt-realtime"
    assert session["output_modalities"] == ["audio"]
    assert isinstance(session["instructions"], str) and session["instructions"]
    assert session["tools"] == []
    assert session["tool_choice"] == "auto"
    assert session["max_output_tokens"] == "inf"
    assert session["tracing"] is None
    assert session["prompt"] is None
    assert session["expires_at"] > time.time()
    audio_in, audio_out = session["audio"]["input"], session["audio"]["output"]
    assert audio_in["format"] == {"type": "audio/pcm", "rate": 24000}
    assert audio_in["transcription"] is None
    assert audio_in["noise_reduction"] is None
    turn = audio_in["turn_detection"]
    assert turn["type"] == "server_vad"
    assert turn["threshold"] == 0.5
    assert turn["prefix_padding_ms"] == 300
    assert turn["silence_duration_ms"] in (200, 500)
    assert turn["create_response"] is True and turn["interrupt_response"] is True
    assert turn["idle_timeout_ms"] is None
    assert audio_out["format"] == {"type": "audio/pcm", "rate": 24000}
    assert isinstance(audio_out["voice"], str) and audio_out["voice"]
    assert audio_out["speed"] == 1.0


async def test_model_query_is_echoed(client: AsyncOpenAI) -> None:
    async with client.realtime.connect(model="gpt-realtime-mini-2025-10-06") as conn:
        created = await opened(conn)
    assert created["session"]["model"] == "gpt-realtime-mini-2025-10-06"


def _without(session: dict[str, Any], *paths: str) -> dict[str, Any]:
    """A deep copy of ``session`` with the dotted ``paths`` removed."""
    result = copy.deepcopy(session)
    for path in paths:
        *parents, last = path.split(".")
        node = result
        for key in parents:
            node = node[key]
        node.pop(last, None)
    return result


async def test_session_update_is_a_partial_merge(client: AsyncOpenAI) -> None:
    async with client.realtime.connect(model="gpt-realtime") as conn:
        created = (await opened(conn))["session"]

        await conn.session.update(session={"type": "realtime", "instructions": "Be brief."}, event_id="upd_1")
        updated_event = (await collect_until(conn, "session.updated"))[-1]
        assert updated_event["event_id"] != "upd_1"
        first = updated_event["session"]
        assert first["instructions"] == "Be brief."
        assert _without(first, "instructions") == _without(created, "instructions")

        second = (await update_session(conn, {"type": "realtime", "tools": [WEATHER_TOOL]}))["session"]
        assert second["instructions"] == "Be brief."
        assert [t["name"] for t in second["tools"]] == ["get_weather"]
        assert second["tools"][0]["parameters"] == WEATHER_TOOL["parameters"]
        assert _without(second, "tools") == _without(first, "tools")

        voice = {"type": "realtime", "audio": {"output": {"voice": "cedar"}}}
        third = (await update_session(conn, voice))["session"]
        assert third["audio"]["output"]["voice"] == "cedar"
        assert third["audio"]["output"]["format"] == created["audio"]["output"]["format"]
        assert third["audio"]["input"] == created["audio"]["input"]

        no_vad = {"type": "realtime", "audio": {"input": {"turn_detection": None}}}
        fourth = (await update_session(conn, no_vad))["session"]
        assert fourth["audio"]["input"]["turn_detection"] is None
        assert fourth["audio"]["input"]["format"] == created["audio"]["input"]["format"]
        assert fourth["audio"]["output"]["voice"] == "cedar"
        assert [t["name"] for t in fourth["tools"]] == ["get_weather"]

        cleared = (await update_session(conn, {"type": "realtime", "instructions": "", "tools": []}))[
            "session"
        ]
        assert cleared["instructions"] == ""
        assert cleared["tools"] == []
        assert cleared["audio"]["input"]["turn_detection"] is None
        assert cleared["id"] == created["id"] and cleared["model"] == created["model"]

        vad = {
            "type": "realtime",
            "audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 0.7}}},
        }
        turn = (await update_session(conn, vad))["session"]["audio"]["input"]["turn_detection"]
        assert turn["type"] == "server_vad" and turn["threshold"] == 0.7
        assert turn["prefix_padding_ms"] == 300 and turn["create_response"] is True


async def test_text_turn_event_order_ids_and_context(client: AsyncOpenAI, scripted: ScriptedLLM) -> None:
    scripted.script("Hello there, how can I help you today?")
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await start_text_session(conn, instructions="You are a terse test assistant.")
        user = await add_item(conn, user_text("Hi, who are you?"))
        user_id = user["item"]["id"]
        assert user["previous_item_id"] is None
        assert user["item"]["status"] == "completed"
        assert user["item"]["content"] == [{"type": "input_text", "text": "Hi, who are you?"}]
        events = await run_response(conn)

    assert squash(types_of(events)) == TEXT_TURN
    created = one(events, "response.created")["response"]
    response_id = created["id"]
    assert response_id.startswith("resp_")
    assert created["status"] == "in_progress" and created["output"] == [] and created["usage"] is None
    assert created["conversation_id"].startswith("conv_")
    assert created["output_modalities"] == ["text"]
    limits = one(events, "rate_limits.updated")["rate_limits"]
    assert {limit["name"] for limit in limits} == {"requests", "tokens"}

    added = one(events, "response.output_item.added")
    item_id = added["item"]["id"]
    assert added["response_id"] == response_id and added["output_index"] == 0
    assert added["item"]["status"] == "in_progress" and added["item"]["role"] == "assistant"
    assert added["item"]["content"] == []
    conv_added = one(events, "conversation.item.added")
    assert conv_added["item"]["id"] == item_id and conv_added["previous_item_id"] == user_id
    assert one(events, "response.content_part.added")["part"] == {"type": "text", "text": ""}

    streamed = [e for e in events if e["type"].startswith("response.") and "item_id" in e]
    for event in streamed:
        assert (event["response_id"], event["item_id"], event["output_index"]) == (response_id, item_id, 0)
        assert event["content_index"] == 0
    text = "".join(e["delta"] for e in of_type(events, "response.output_text.delta"))
    assert text == "Hello there, how can I help you today?"
    assert one(events, "response.output_text.done")["text"] == text
    assert one(events, "response.content_part.done")["part"] == {"type": "text", "text": text}

    item_done = one(events, "response.output_item.done")
    assert item_done["response_id"] == response_id and item_done["output_index"] == 0
    final_item = item_done["item"]
    assert final_item["status"] == "completed"
    assert final_item["content"] == [{"type": "output_text", "text": text}]
    conv_done = one(events, "conversation.item.done")
    assert conv_done["item"] == final_item and conv_done["previous_item_id"] == user_id

    done = events[-1]["response"]
    assert done["id"] == response_id and done["status"] == "completed" and done["status_details"] is None
    assert done["conversation_id"] == created["conversation_id"]
    assert done["output"] == [final_item]
    usage = done["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0

    request = scripted.last_request
    assert request["stream"] is True
    assert request["messages"][0] == {"role": "system", "content": "You are a terse test assistant."}
    assert request["messages"][-1] == {"role": "user", "content": "Hi, who are you?"}


async def test_second_turn_sees_the_first_reply(client: AsyncOpenAI, scripted: ScriptedLLM) -> None:
    scripted.script("Paris is the capital.", "It has about two million people.")
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await start_text_session(conn, instructions="")
        await add_item(conn, user_text("What is the capital of France?"))
        first = await run_response(conn)
        assert first[-1]["response"]["status"] == "completed"
        await add_item(conn, user_text("How many people live there?"))
        second = await run_response(conn)
        assert second[-1]["response"]["id"] != first[-1]["response"]["id"]
    assert scripted.last_request["messages"] == [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris is the capital."},
        {"role": "user", "content": "How many people live there?"},
    ]


async def test_response_overrides_apply_to_one_response(client: AsyncOpenAI, scripted: ScriptedLLM) -> None:
    scripted.script("Bonjour.", "Hello.")
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await start_text_session(conn, instructions="Session instructions.")
        await add_item(conn, user_text("Greet me."))
        events = await run_response(conn, instructions="Answer in French.", metadata={"turn": "1"})
        done = events[-1]["response"]
        assert done["metadata"] == {"turn": "1"}
        assert done["conversation_id"] is not None
        assert scripted.last_request["messages"][0] == {"role": "system", "content": "Answer in French."}
        await run_response(conn)
        assert scripted.last_request["messages"][0] == {"role": "system", "content": "Session instructions."}
