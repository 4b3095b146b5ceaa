"""Response lifecycle on a real socket: cancel, one active response, out-of-band responses, failures."""

from __future__ import annotations

from openai import AsyncOpenAI

from tests.conformance.conftest import collect_until
from tests.conformance.helpers import (
    AUDIO_TURN_END,
    Event,
    add_item,
    expect_error,
    normalise,
    of_type,
    one,
    opened,
    run_response,
    send_json,
    start_text_session,
    still_serving,
    types_of,
    user_text,
)
from tests.scripted_llm import Reply, ScriptedLLM

SLOW = Reply(text=" ".join(f"word{i}" for i in range(40)), chunk_delay_s=0.25)
"""About ten seconds of streaming: long enough to be cancelled or overlapped."""


async def test_cancel_finishes_open_items_as_incomplete(client: AsyncOpenAI, scripted: ScriptedLLM) -> None:
    scripted.script(SLOW, "After the cancel.")
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await start_text_session(conn)
        await add_item(conn, user_text("Count slowly."))
        await conn.response.create()
        before = await collect_until(conn, "response.output_text.delta")
        response_id = one(before, "response.created")["response"]["id"]
        await conn.response.cancel(event_id="cancel_1")
        after = await collect_until(conn, "response.done")
        assert "error" not in types_of(after)
        tail = [t for t in types_of(after) if t != "response.output_text.delta"]
        assert tail == [
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "conversation.item.done",
            "response.done",
        ]
        done = after[-1]["response"]
        assert done["id"] == response_id
        assert done["status"] == "cancelled"
        assert done["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
        assert [item["status"] for item in done["output"]] == ["incomplete"]
        assert one(after, "response.output_item.done")["item"]["status"] == "incomplete"
        streamed = "".join(e["delta"] for e in of_type(before + after, "response.output_text.delta"))
        assert one(after, "response.output_text.done")["text"] == streamed
        assert done["output"][0]["content"] == [{"type": "output_text", "text": streamed}]
        assert streamed != SLOW.text, "the cancel should stop the stream before its end"

        # Nothing is running now; the session answers the next turn normally.
        await conn.response.cancel(event_id="cancel_2")
        await expect_error(conn, "response_cancel_not_active", param="response_id", event_id="cancel_2")
        await add_item(conn, user_text("Go on."))
        next_turn = await run_response(conn)
        assert next_turn[-1]["response"]["status"] == "completed"
    # The partial reply stays in the conversation (it was heard), as its own assistant message.
    assistant = [m["content"] for m in scripted.last_request["messages"] if m["role"] == "assistant"]
    assert assistant == [streamed.strip()]


async def test_second_default_response_is_refused(client: AsyncOpenAI, scripted: ScriptedLLM) -> None:
    scripted.script(SLOW)
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await start_text_session(conn)
        await add_item(conn, user_text("Talk for a while."))
        await conn.response.create(event_id="first")
        started = await collect_until(conn, "response.output_text.delta")
        response_id = one(started, "response.created")["response"]["id"]
        await conn.response.create(event_id="second")
        events = await collect_until(conn, "error")
        error = events[-1]["error"]
        assert error["code"] == "conversation_already_has_active_response"
        assert error["event_id"] == "second"
        assert response_id in error["message"]
        assert "response.created" not in types_of(events)
        await conn.response.cancel(response_id=response_id)
        done = (await collect_until(conn, "response.done"))[-1]["response"]
        assert done["id"] == response_id and done["status"] == "cancelled"
    assert len(scripted.requests) == 1


async def test_out_of_band_response_stays_out_of_the_conversation(
    client: AsyncOpenAI, scripted: ScriptedLLM
) -> None:
    scripted.script("A short summary.", "Back in the conversation.")
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await start_text_session(conn, instructions="Session instructions.")
        first = await add_item(conn, user_text("First message."))
        await add_item(conn, user_text("Second message."))
        first_id = first["item"]["id"]
        events = await run_response(
            conn,
            conversation="none",
            metadata={"purpose": "summary"},
            instructions="Summarise.",
            input=[{"type": "item_reference", "id": first_id}],
        )
        assert "conversation.item.added" not in types_of(events)
        assert "conversation.item.done" not in types_of(events)
        created = one(events, "response.created")["response"]
        assert created["conversation_id"] is None and created["metadata"] == {"purpose": "summary"}
        done = events[-1]["response"]
        assert done["status"] == "completed"
        assert done["conversation_id"] is None and done["metadata"] == {"purpose": "summary"}
        oob_item = done["output"][0]
        assert oob_item["content"] == [{"type": "output_text", "text": "A short summary."}]
        assert scripted.last_request["messages"] == [
            {"role": "system", "content": "Summarise."},
            {"role": "user", "content": "First message."},
        ]

        await conn.conversation.item.retrieve(item_id=oob_item["id"], event_id="find_oob")
        await expect_error(conn, "item_not_found", param="item_id", event_id="find_oob")
        await run_response(conn)
    assert scripted.last_request["messages"] == [
        {"role": "system", "content": "Session instructions."},
        {"role": "user", "content": "First message."},
        {"role": "user", "content": "Second message."},
    ]


async def test_out_of_band_runs_beside_the_default_response(
    client: AsyncOpenAI, scripted: ScriptedLLM
) -> None:
    scripted.script(Reply(text="The slow default reply goes on.", chunk_delay_s=0.3), "Quick side answer.")
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await start_text_session(conn)
        await add_item(conn, user_text("Hello."))
        await conn.response.create()
        default_id = (await collect_until(conn, "response.created"))[-1]["response"]["id"]
        await send_json(
            conn,
            {
                "type": "response.create",
                "event_id": "oob",
                "response": {"conversation": "none", "metadata": {"k": "v"}, "input": []},
            },
        )
        events: list[Event] = []
        while len(of_type(events, "response.done")) < 2:
            events += await collect_until(conn, "response.done")
    assert "error" not in types_of(events)
    dones = {e["response"]["id"]: e["response"] for e in of_type(events, "response.done")}
    assert dones[default_id]["status"] == "completed"
    assert dones[default_id]["conversation_id"] is not None
    (oob,) = [r for r in dones.values() if r["id"] != default_id]
    assert oob["status"] == "completed" and oob["conversation_id"] is None and oob["metadata"] == {"k": "v"}
    conversation_items = {e["item"]["id"] for e in of_type(events, "conversation.item.added")}
    assert oob["output"][0]["id"] not in conversation_items
    assert dones[default_id]["output"][0]["id"] in conversation_items


async def test_language_model_failure_fails_only_that_response(
    client: AsyncOpenAI, scripted: ScriptedLLM
) -> None:
    scripted.script(Reply(error_status=500, error_message="The scripted model broke."), "Working again.")
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await start_text_session(conn)
        await add_item(conn, user_text("Hello?"))
        events = await run_response(conn)
        done = events[-1]["response"]
        assert done["status"] == "failed"
        details = done["status_details"]
        assert details["type"] == "failed"
        assert isinstance(details["error"]["message"], str) and details["error"]["message"]
        assert done["usage"] is not None
        await still_serving(conn)
        retry = await run_response(conn)
        assert retry[-1]["response"]["status"] == "completed"
        assert one(retry, "response.output_text.done")["text"] == "Working again."
    assert len(scripted.requests) == 2


async def test_cancel_of_a_spoken_reply(client: AsyncOpenAI, scripted: ScriptedLLM) -> None:
    # Long enough (about 30 s of streaming) that the cancel lands mid-reply even on a loaded machine.
    sentences = " ".join(f"This is sentence number {i}." for i in range(1, 31))
    scripted.script(Reply(text=sentences, chunk_delay_s=0.2))
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await opened(conn)
        await add_item(conn, user_text("Read me something long."))
        await conn.response.create()
        before = await collect_until(conn, "response.output_audio.delta")
        await conn.response.cancel()
        after = await collect_until(conn, "response.done")
    events = before + after
    tail = [t for t in types_of(after) if not t.endswith(".delta")]
    assert tail == AUDIO_TURN_END
    done = after[-1]["response"]
    assert done["status"] == "cancelled" and done["status_details"]["reason"] == "client_cancelled"
    spoken = "".join(e["delta"] for e in of_type(events, "response.output_audio_transcript.delta"))
    assert spoken and normalise(spoken) != normalise(sentences)
    assert one(after, "response.output_audio_transcript.done")["transcript"] == spoken
    item = done["output"][0]
    assert item["status"] == "incomplete"
    assert item["content"] == [{"type": "output_audio", "transcript": spoken}]
    assert one(after, "response.content_part.done")["part"] == {"type": "audio", "transcript": spoken}
