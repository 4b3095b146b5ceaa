"""Conversation items over a real socket: ordering, client ids, retrieve, delete, truncate."""

from __future__ import annotations

import base64

from openai import AsyncOpenAI
from openai.types.realtime import RealtimeConversationItemUserMessageParam

from tests.conformance.conftest import collect_until
from tests.conformance.helpers import (
    BYTES_PER_MS,
    add_item,
    b64,
    expect_error,
    of_type,
    one,
    opened,
    run_response,
    speech,
    start_text_session,
    still_serving,
    types_of,
    update_session,
    user_text,
)
from tests.scripted_llm import ScriptedLLM

FIRST = "The first sentence is here."
SECOND = "The second sentence is a good deal longer than the first one was."


def _user_texts(request: dict[str, object]) -> list[str]:
    messages = request["messages"]
    assert isinstance(messages, list)
    return [str(m["content"]) for m in messages if m["role"] == "user"]


async def test_previous_item_id_orders_the_context(client: AsyncOpenAI, scripted: ScriptedLLM) -> None:
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await start_text_session(conn)
        a = await add_item(conn, user_text("A"))
        b = await add_item(conn, user_text("B"))
        assert b["previous_item_id"] == a["item"]["id"]
        c = await add_item(conn, user_text("C"), previous_item_id="root")
        assert c["previous_item_id"] is None
        d = await add_item(conn, user_text("D"), previous_item_id=a["item"]["id"])
        assert d["previous_item_id"] == a["item"]["id"]
        await run_response(conn)
    assert _user_texts(scripted.last_request) == ["C", "A", "D", "B"]


async def test_client_item_ids_are_kept(client: AsyncOpenAI) -> None:
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await opened(conn)
        done = await add_item(conn, user_text("mine", item_id="item_client_0001"))
        assert done["item"]["id"] == "item_client_0001"
        after = await add_item(conn, user_text("next"), previous_item_id="item_client_0001")
        assert after["previous_item_id"] == "item_client_0001"
        await conn.conversation.item.retrieve(item_id="item_client_0001")
        retrieved = (await collect_until(conn, "conversation.item.retrieved"))[-1]["item"]
        assert retrieved["id"] == "item_client_0001"
        assert retrieved["content"] == [{"type": "input_text", "text": "mine"}]
        await conn.conversation.item.create(
            item=user_text("again", item_id="item_client_0001"), event_id="dup"
        )
        events = await collect_until(conn, "error")
        assert "conversation.item.added" not in types_of(events)
        assert events[-1]["error"]["event_id"] == "dup"
        await still_serving(conn)


async def test_retrieve_returns_the_audio_of_an_input_audio_item(client: AsyncOpenAI) -> None:
    audio = speech("Good morning")
    item: RealtimeConversationItemUserMessageParam = {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_audio", "audio": b64(audio)}],
    }
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await opened(conn)
        done = await add_item(conn, item)
        content = done["item"]["content"][0]
        assert content["type"] == "input_audio" and not content.get("audio")
        await conn.conversation.item.retrieve(item_id=done["item"]["id"])
        retrieved = (await collect_until(conn, "conversation.item.retrieved"))[-1]["item"]
    assert retrieved["id"] == done["item"]["id"]
    assert base64.b64decode(retrieved["content"][0]["audio"]) == audio


async def test_delete_removes_the_item_from_the_context(client: AsyncOpenAI, scripted: ScriptedLLM) -> None:
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await start_text_session(conn)
        keep = await add_item(conn, user_text("keep me"))
        drop = await add_item(conn, user_text("drop me"))
        drop_id = drop["item"]["id"]
        await conn.conversation.item.delete(item_id=drop_id, event_id="del")
        deleted = await collect_until(conn, "conversation.item.deleted")
        assert types_of(deleted) == ["conversation.item.deleted"]
        assert deleted[-1]["item_id"] == drop_id
        await conn.conversation.item.retrieve(item_id=drop_id, event_id="gone")
        await expect_error(conn, "item_not_found", param="item_id", event_id="gone")
        await conn.conversation.item.delete(item_id=drop_id, event_id="again")
        await expect_error(conn, "item_not_found", param="item_id", event_id="again")
        after = await add_item(conn, user_text("last"))
        assert after["previous_item_id"] == keep["item"]["id"]
        await run_response(conn)
    assert _user_texts(scripted.last_request) == ["keep me", "last"]


async def test_truncate_keeps_only_what_was_heard(client: AsyncOpenAI, scripted: ScriptedLLM) -> None:
    scripted.script(f"{FIRST} {SECOND}")
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await opened(conn)
        await update_session(conn, {"type": "realtime", "instructions": ""})
        user = await add_item(conn, user_text("Say two sentences."))
        events = await run_response(conn)
        done = events[-1]["response"]
        assert done["status"] == "completed"
        item_id = done["output"][0]["id"]
        assert " ".join(done["output"][0]["content"][0]["transcript"].split()) == f"{FIRST} {SECOND}"

        # The audio streamed before the second piece of transcript is the first sentence.
        first_ms = 0.0
        audio_ms = 0.0
        pieces = 0
        for event in events:
            if event["type"] == "response.output_audio_transcript.delta":
                pieces += 1
                if pieces == 2:
                    first_ms = audio_ms
            elif event["type"] == "response.output_audio.delta":
                audio_ms += len(base64.b64decode(event["delta"])) / BYTES_PER_MS
        assert pieces >= 2 and 0 < first_ms < audio_ms
        deltas = of_type(events, "response.output_audio_transcript.delta")
        assert deltas[0]["delta"].strip() == FIRST

        await conn.conversation.item.truncate(
            item_id=item_id, content_index=0, audio_end_ms=int(audio_ms) + 500, event_id="too_far"
        )
        error = await expect_error(conn, "invalid_value", param="audio_end_ms", event_id="too_far")
        assert "shorter" in error["error"]["message"]
        await conn.conversation.item.truncate(
            item_id=user["item"]["id"], content_index=0, audio_end_ms=10, event_id="not_assistant"
        )
        error_events = await collect_until(conn, "error")
        assert error_events[-1]["error"]["event_id"] == "not_assistant"

        heard_ms = int(first_ms) + 100
        await conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=heard_ms)
        truncated = await collect_until(conn, "conversation.item.truncated")
        assert types_of(truncated) == ["conversation.item.truncated"]
        assert truncated[-1]["item_id"] == item_id
        assert truncated[-1]["content_index"] == 0 and truncated[-1]["audio_end_ms"] == heard_ms

        await conn.conversation.item.retrieve(item_id=item_id)
        retrieved = (await collect_until(conn, "conversation.item.retrieved"))[-1]["item"]
        kept = base64.b64decode(retrieved["content"][0]["audio"])
        assert abs(len(kept) - heard_ms * BYTES_PER_MS) <= 2
        assert retrieved["content"][0]["transcript"].strip() == FIRST

        await add_item(conn, user_text("And then?"))
        await run_response(conn)
    messages = scripted.last_request["messages"]
    assert messages == [
        {"role": "user", "content": "Say two sentences."},
        {"role": "assistant", "content": FIRST},
        {"role": "user", "content": "And then?"},
    ]


async def test_truncate_bounds_on_a_fresh_reply(client: AsyncOpenAI, scripted: ScriptedLLM) -> None:
    scripted.script("Short.")
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await opened(conn)
        await add_item(conn, user_text("Hi"))
        events = await run_response(conn)
        item_id = events[-1]["response"]["output"][0]["id"]
        audio = b"".join(base64.b64decode(e["delta"]) for e in of_type(events, "response.output_audio.delta"))
        duration_ms = len(audio) // BYTES_PER_MS
        await conn.conversation.item.truncate(
            item_id=item_id, content_index=0, audio_end_ms=duration_ms + 1000, event_id="t1"
        )
        await expect_error(conn, "invalid_value", param="audio_end_ms", event_id="t1")
        await conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=0)
        truncated = one(
            await collect_until(conn, "conversation.item.truncated"), "conversation.item.truncated"
        )
        assert truncated["audio_end_ms"] == 0
        await conn.conversation.item.retrieve(item_id=item_id)
        retrieved = (await collect_until(conn, "conversation.item.retrieved"))[-1]["item"]
        assert retrieved["content"][0]["transcript"] == ""
        assert base64.b64decode(retrieved["content"][0].get("audio") or "") == b""
