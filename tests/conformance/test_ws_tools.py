"""Function calling over a real socket: call items, streamed arguments, outputs, parallel calls."""

from __future__ import annotations

import json

from openai import AsyncOpenAI
from openai.types.realtime import RealtimeConversationItemFunctionCallOutputParam

from tests.conformance.conftest import collect_until
from tests.conformance.helpers import (
    TIME_TOOL,
    WEATHER_TOOL,
    Event,
    add_item,
    of_type,
    one,
    run_response,
    squash,
    start_text_session,
    types_of,
    user_text,
)
from tests.scripted_llm import Reply, ScriptedLLM, ToolCall

CALL_TURN = [
    "response.created",
    "rate_limits.updated",
    "response.output_item.added",
    "conversation.item.added",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "response.output_item.done",
    "conversation.item.done",
    "response.done",
]


def _arguments_by_item(events: list[Event]) -> dict[str, str]:
    streamed: dict[str, str] = {}
    for delta in of_type(events, "response.function_call_arguments.delta"):
        streamed[delta["item_id"]] = streamed.get(delta["item_id"], "") + delta["delta"]
    return streamed


def _output(call_id: str, output: dict[str, object]) -> RealtimeConversationItemFunctionCallOutputParam:
    return {"type": "function_call_output", "call_id": call_id, "output": json.dumps(output)}


async def test_function_call_turn_and_its_output(client: AsyncOpenAI, scripted: ScriptedLLM) -> None:
    arguments = '{"city": "Paris", "unit": "celsius"}'
    scripted.script(Reply(tool_calls=[ToolCall("get_weather", arguments, "call_weather_1")]), "It is sunny.")
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await start_text_session(conn, tools=[WEATHER_TOOL], instructions="Use tools.")
        user = await add_item(conn, user_text("What is the weather in Paris?"))
        events = await run_response(conn)

        assert squash(types_of(events)) == CALL_TURN
        response_id = one(events, "response.created")["response"]["id"]
        added = one(events, "response.output_item.added")
        call_item = added["item"]
        assert added["output_index"] == 0 and added["response_id"] == response_id
        assert call_item["type"] == "function_call" and call_item["status"] == "in_progress"
        assert call_item["name"] == "get_weather" and call_item["call_id"] == "call_weather_1"
        assert call_item["arguments"] == ""
        assert one(events, "conversation.item.added")["previous_item_id"] == user["item"]["id"]

        for delta in of_type(events, "response.function_call_arguments.delta"):
            assert delta["item_id"] == call_item["id"] and delta["call_id"] == "call_weather_1"
            assert delta["response_id"] == response_id and delta["output_index"] == 0
        args_done = one(events, "response.function_call_arguments.done")
        assert _arguments_by_item(events) == {call_item["id"]: arguments}
        assert args_done["arguments"] == arguments and args_done["name"] == "get_weather"
        assert args_done["call_id"] == "call_weather_1" and args_done["item_id"] == call_item["id"]
        assert args_done["response_id"] == response_id and args_done["output_index"] == 0

        final = one(events, "response.output_item.done")["item"]
        assert final == {**call_item, "status": "completed", "arguments": arguments}
        assert one(events, "conversation.item.done")["item"] == final
        done = events[-1]["response"]
        assert done["status"] == "completed" and done["output"] == [final]
        assert done["usage"]["total_tokens"] > 0

        tools = scripted.last_request["tools"]
        assert [t["function"]["name"] for t in tools] == ["get_weather"]
        assert tools[0]["function"]["parameters"] == WEATHER_TOOL["parameters"]

        output = await add_item(conn, _output("call_weather_1", {"sky": "clear", "temp": 21}))
        assert output["previous_item_id"] == final["id"]
        assert (
            output["item"]["type"] == "function_call_output" and output["item"]["call_id"] == "call_weather_1"
        )
        follow_up = await run_response(conn)

    assert follow_up[-1]["response"]["status"] == "completed"
    text = one(follow_up, "response.output_text.done")["text"]
    assert text == "It is sunny."
    messages = scripted.last_request["messages"]
    assert messages[0] == {"role": "system", "content": "Use tools."}
    assert messages[1] == {"role": "user", "content": "What is the weather in Paris?"}
    call_message, tool_message = messages[2], messages[3]
    assert call_message["role"] == "assistant"
    assert call_message["tool_calls"] == [
        {
            "id": "call_weather_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": arguments},
        }
    ]
    assert tool_message == {
        "role": "tool",
        "tool_call_id": "call_weather_1",
        "content": json.dumps({"sky": "clear", "temp": 21}),
    }
    assert len(messages) == 4


async def test_function_call_output_alone_creates_no_response(
    client: AsyncOpenAI, scripted: ScriptedLLM
) -> None:
    scripted.script(Reply(tool_calls=[("get_weather", '{"city": "Oslo"}', "call_oslo")]))
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await start_text_session(conn, tools=[WEATHER_TOOL])
        await add_item(conn, user_text("Weather in Oslo?"))
        await run_response(conn)
        await add_item(conn, _output("call_oslo", {"temp": -3}))
        # What follows the output is the item events of the next create, not a response.
        after = await add_item(conn, user_text("Thanks."))
        assert after["item"]["role"] == "user"
    assert len(scripted.requests) == 1


async def test_two_parallel_calls_in_one_response(client: AsyncOpenAI, scripted: ScriptedLLM) -> None:
    calls = [
        ToolCall("get_weather", '{"city": "Tokyo"}', "call_a"),
        ToolCall("get_time", '{"tz": "Asia/Tokyo"}', "call_b"),
    ]
    scripted.script(Reply(tool_calls=calls), "Sunny, and it is noon.")
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await start_text_session(conn, tools=[WEATHER_TOOL, TIME_TOOL])
        await add_item(conn, user_text("Weather and time in Tokyo?"))
        events = await run_response(conn)

        added = of_type(events, "response.output_item.added")
        assert [(e["output_index"], e["item"]["name"], e["item"]["call_id"]) for e in added] == [
            (0, "get_weather", "call_a"),
            (1, "get_time", "call_b"),
        ]
        ids = [e["item"]["id"] for e in added]
        assert len(set(ids)) == 2
        assert _arguments_by_item(events) == {
            ids[0]: '{"city": "Tokyo"}',
            ids[1]: '{"tz": "Asia/Tokyo"}',
        }
        dones = of_type(events, "response.function_call_arguments.done")
        assert [
            (d["item_id"], d["output_index"], d["call_id"], d["name"], d["arguments"]) for d in dones
        ] == [
            (ids[0], 0, "call_a", "get_weather", '{"city": "Tokyo"}'),
            (ids[1], 1, "call_b", "get_time", '{"tz": "Asia/Tokyo"}'),
        ]
        for delta in of_type(events, "response.function_call_arguments.delta"):
            index = ids.index(delta["item_id"])
            assert delta["output_index"] == index and delta["call_id"] == calls[index].call_id
        item_dones = of_type(events, "response.output_item.done")
        assert [e["output_index"] for e in item_dones] == [0, 1]
        done = events[-1]["response"]
        assert done["status"] == "completed"
        assert done["output"] == [e["item"] for e in item_dones]
        assert [item["status"] for item in done["output"]] == ["completed", "completed"]

        await add_item(conn, _output("call_a", {"sky": "sunny"}))
        await add_item(conn, _output("call_b", {"time": "12:00"}))
        follow_up = await run_response(conn)
        assert follow_up[-1]["response"]["status"] == "completed"

    messages = scripted.last_request["messages"]
    tool_messages = [m for m in messages if m["role"] == "tool"]
    assert [(m["tool_call_id"], json.loads(m["content"])) for m in tool_messages] == [
        ("call_a", {"sky": "sunny"}),
        ("call_b", {"time": "12:00"}),
    ]
    for message in tool_messages:
        index = messages.index(message)
        called = [
            c["id"] for m in messages[:index] if m["role"] == "assistant" for c in m.get("tool_calls") or []
        ]
        assert message["tool_call_id"] in called, "every tool result follows its call"


async def test_text_then_call_in_one_response(client: AsyncOpenAI, scripted: ScriptedLLM) -> None:
    scripted.script(
        Reply(text="Let me check that.", tool_calls=[("get_weather", '{"city": "Rome"}', "call_r")])
    )
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await start_text_session(conn, tools=[WEATHER_TOOL])
        await add_item(conn, user_text("Weather in Rome?"))
        events = await run_response(conn)
    output = events[-1]["response"]["output"]
    assert [(item["type"], item["status"]) for item in output] == [
        ("message", "completed"),
        ("function_call", "completed"),
    ]
    assert output[0]["content"] == [{"type": "output_text", "text": "Let me check that."}]
    assert output[1]["call_id"] == "call_r" and output[1]["arguments"] == '{"city": "Rome"}'
    # Output items stream one after another: the message is done before the call is added.
    items = [(e["type"], e["output_index"]) for e in events if e["type"].startswith("response.output_item.")]
    assert items == [
        ("response.output_item.added", 0),
        ("response.output_item.done", 0),
        ("response.output_item.added", 1),
        ("response.output_item.done", 1),
    ]
    types = types_of(events)
    assert types.index("response.output_text.done") < types.index("response.function_call_arguments.delta")


async def test_an_output_arriving_during_another_response_is_kept_in_order(
    client: AsyncOpenAI, scripted: ScriptedLLM
) -> None:
    scripted.script(
        Reply(tool_calls=[("get_weather", '{"city": "Lima"}', "call_lima")]),
        Reply(text="Checking something else while you wait for it.", chunk_delay_s=0.2),
        "Lima is warm.",
    )
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await start_text_session(conn, tools=[WEATHER_TOOL])
        await add_item(conn, user_text("Weather in Lima?"))
        await run_response(conn)
        await conn.response.create()  # a second response runs while the tool's result comes in
        await collect_until(conn, "response.output_text.delta")
        output = await add_item(conn, _output("call_lima", {"temp": 24}))
        events = await collect_until(conn, "response.done")
        assert one(events, "response.done")["response"]["status"] == "completed"
        await run_response(conn)

    assert output["item"]["call_id"] == "call_lima"
    messages = scripted.requests[2]["messages"]
    call_at = next(i for i, m in enumerate(messages) if m.get("tool_calls"))
    assert messages[call_at + 1] == {"role": "tool", "tool_call_id": "call_lima", "content": '{"temp": 24}'}
