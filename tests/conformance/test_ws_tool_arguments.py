"""Tool-call arguments are checked against the tool's JSON Schema before the client sees them, and
``tool_choice`` is obeyed, through the real SDK over a real socket and the OpenAI-compatible engine."""

from __future__ import annotations

import json
from typing import Any

from openai import AsyncOpenAI

from tests.conformance.conftest import collect_until
from tests.conformance.helpers import (
    TIME_TOOL,
    Event,
    add_item,
    of_type,
    one,
    run_response,
    start_text_session,
    user_text,
)
from tests.scripted_llm import Reply, ScriptedLLM, ToolCall

BOOKING_TOOL: dict[str, Any] = {
    "type": "function",
    "name": "book_table",
    "description": "Book a table at the restaurant.",
    "parameters": {
        "type": "object",
        "properties": {
            "party_size": {"type": "integer", "minimum": 1, "maximum": 12},
            "time": {"type": "string"},
            "area": {"type": "string", "enum": ["inside", "terrace"]},
        },
        "required": ["party_size", "time"],
        "additionalProperties": False,
    },
}
GOOD = '{"party_size": 4, "time": "19:30", "area": "terrace"}'


def _streamed_arguments(events: list[Event]) -> str:
    return "".join(e["delta"] for e in of_type(events, "response.function_call_arguments.delta"))


def _tool_feedback(request: dict[str, Any]) -> str:
    """The tool message the server sent back to the model with the violation."""
    return str(request["messages"][-1]["content"])


async def _turn(client: AsyncOpenAI, text: str, **session: Any) -> list[Event]:
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await start_text_session(conn, tools=[BOOKING_TOOL, TIME_TOOL], **session)
        await add_item(conn, user_text(text))
        return await run_response(conn)


async def test_a_wrong_enum_value_is_corrected_before_the_client_sees_it(
    client: AsyncOpenAI, scripted: ScriptedLLM
) -> None:
    bad = '{"party_size": 4, "time": "19:30", "area": "garden"}'
    scripted.script(
        Reply(tool_calls=[ToolCall("book_table", bad, "call_b1")]), Reply(tool_calls=[("book_table", GOOD)])
    )
    events = await _turn(client, "A table for four at half past seven on the terrace.")

    done = one(events, "response.function_call_arguments.done")
    assert json.loads(done["arguments"]) == json.loads(GOOD)
    assert done["call_id"] == "call_b1" and done["name"] == "book_table"
    assert _streamed_arguments(events) == done["arguments"]  # no delta carried the invented 'garden'
    response = one(events, "response.done")["response"]
    assert response["status"] == "completed"
    assert [item["type"] for item in response["output"]] == ["function_call"]
    # The model was asked once, with the violation, to correct exactly that call.
    assert len(scripted.requests) == 2
    feedback = _tool_feedback(scripted.requests[1])
    assert "'garden' is not one of ['inside', 'terrace']" in feedback and "book_table" in feedback
    assert scripted.requests[1]["tool_choice"] == {"type": "function", "function": {"name": "book_table"}}


async def test_a_call_still_invalid_after_one_correction_fails_the_response(
    client: AsyncOpenAI, scripted: ScriptedLLM
) -> None:
    scripted.script(
        Reply(tool_calls=[("book_table", '{"time": "19:30"}')]),
        Reply(tool_calls=[("book_table", '{"party_size": 40, "time": "19:30"}')]),
    )
    events = await _turn(client, "Book for the whole office.")

    assert not of_type(events, "response.function_call_arguments.done")
    assert not of_type(events, "response.function_call_arguments.delta")
    error = one(events, "error")["error"]
    assert error["code"] == "invalid_tool_arguments" and error["type"] == "server_error"
    assert "book_table" in error["message"] and "40 is greater than the maximum of 12" in error["message"]
    response = one(events, "response.done")["response"]
    assert response["status"] == "failed"
    assert response["status_details"]["error"]["code"] == "invalid_tool_arguments"
    assert [item["status"] for item in response["output"]] == ["incomplete"]
    assert "'party_size' is a required property" in _tool_feedback(scripted.requests[1])


async def test_broken_json_and_an_unknown_tool_are_sent_back_once(
    client: AsyncOpenAI, scripted: ScriptedLLM
) -> None:
    scripted.script(
        Reply(tool_calls=[("book_table", '{"party_size": 2, "time": "20:00"'), ("cancel_everything", "{}")]),
        Reply(tool_calls=[("book_table", '{"party_size": 2, "time": "20:00"}')]),
        Reply(tool_calls=[("get_time", '{"tz": "UTC"}')]),
    )
    events = await _turn(client, "Two people at eight, and cancel everything else.")

    calls = of_type(events, "response.function_call_arguments.done")
    assert [(c["name"], json.loads(c["arguments"])) for c in calls] == [
        ("book_table", {"party_size": 2, "time": "20:00"}),
        ("get_time", {"tz": "UTC"}),
    ]
    assert one(events, "response.done")["response"]["status"] == "completed"
    assert "not valid JSON" in _tool_feedback(scripted.requests[1])
    assert "there is no tool named 'cancel_everything'" in _tool_feedback(scripted.requests[2])


async def test_tool_choice_required_and_named_are_enforced(
    client: AsyncOpenAI, scripted: ScriptedLLM
) -> None:
    # required: the model answered in words, so it is asked once more for a call.
    scripted.script("Sure, I can book that.", Reply(tool_calls=[("book_table", GOOD)]))
    events = await _turn(client, "Book a table.", tool_choice="required")
    assert one(events, "response.function_call_arguments.done")["name"] == "book_table"
    assert scripted.requests[0]["tool_choice"] == "required"
    assert scripted.requests[1]["messages"][-1]["role"] == "system"

    # named: a call to another tool is rejected and the named one asked for.
    scripted.reset()
    scripted.script(
        Reply(tool_calls=[("get_time", '{"tz": "UTC"}')]), Reply(tool_calls=[("book_table", GOOD)])
    )
    events = await _turn(client, "Book a table.", tool_choice={"type": "function", "name": "book_table"})
    assert [c["name"] for c in of_type(events, "response.function_call_arguments.done")] == ["book_table"]
    assert "tool_choice requires a call to 'book_table'" in _tool_feedback(scripted.requests[1])

    # required, and the model never calls: the response fails and says why.
    scripted.reset()
    scripted.script("I would rather chat.", "Still chatting.")
    events = await _turn(client, "Book a table.", tool_choice="required")
    assert one(events, "error")["error"]["code"] == "tool_choice_not_followed"
    assert one(events, "response.done")["response"]["status"] == "failed"


async def test_tool_choice_none_makes_no_call(client: AsyncOpenAI, scripted: ScriptedLLM) -> None:
    scripted.script(Reply(text="No booking needed.", tool_calls=[("book_table", GOOD)]))
    events = await _turn(client, "Just tell me.", tool_choice="none")
    assert not of_type(events, "response.function_call_arguments.done")
    response = one(events, "response.done")["response"]
    assert response["status"] == "completed"
    assert [item["type"] for item in response["output"]] == ["message"]
    assert scripted.requests[0]["tool_choice"] == "none"


async def test_a_tool_with_an_invalid_schema_is_refused(client: AsyncOpenAI, scripted: ScriptedLLM) -> None:
    broken = {**BOOKING_TOOL, "parameters": {"type": "objekt"}}
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await start_text_session(conn)
        await conn.session.update(session={"type": "realtime", "tools": [broken]})  # type: ignore[list-item]
        error = (await collect_until(conn, "error"))[-1]["error"]
        assert error["code"] == "invalid_value" and error["param"] == "session.tools[0].parameters"


async def test_parallel_tool_calls_false_keeps_one_call(client: AsyncOpenAI, scripted: ScriptedLLM) -> None:
    scripted.script(Reply(tool_calls=[("book_table", GOOD), ("get_time", '{"tz": "UTC"}')]))
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await start_text_session(conn, tools=[BOOKING_TOOL, TIME_TOOL])
        await add_item(conn, user_text("Book it and tell me the time."))
        events = await run_response(conn, parallel_tool_calls=False)
    assert [c["name"] for c in of_type(events, "response.function_call_arguments.done")] == ["book_table"]
    assert scripted.requests[0]["parallel_tool_calls"] is False
