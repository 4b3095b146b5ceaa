"""MCP tools (GA ``type: "mcp"``) through the real SDK: Parley lists a real MCP server's tools, runs
the model's calls itself, asks the client for approval when told to, and never runs a call of a
response that was cancelled."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from openai import AsyncOpenAI

from tests.conformance.conftest import collect_until
from tests.conformance.helpers import (
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
from tests.mcp_server import McpTestServer, ToolCallRecord
from tests.scripted_llm import Reply, ScriptedLLM

TOKEN = "mcp-test-token"
CALL_EVENTS = [
    "response.output_item.added",
    "conversation.item.added",
    "response.mcp_call_arguments.delta",
    "response.mcp_call_arguments.done",
    "response.mcp_call.in_progress",
]


@pytest.fixture
async def orders() -> AsyncIterator[McpTestServer]:
    async with McpTestServer(token=TOKEN) as server:
        yield server


def mcp_tool(server: McpTestServer, **extra: Any) -> dict[str, Any]:
    return {
        "type": "mcp",
        "server_label": "orders",
        "server_url": server.url,
        "authorization": TOKEN,
        "require_approval": "never",
        **extra,
    }


async def connect_with(conn: Any, tool: dict[str, Any]) -> list[Event]:
    """Start a text session with the MCP server; every event up to its listing's item being done."""
    await start_text_session(conn, tools=[tool])
    return await collect_until(conn, "conversation.item.done")


async def test_tools_are_listed_called_and_their_output_reaches_the_model(
    client: AsyncOpenAI, scripted: ScriptedLLM, orders: McpTestServer
) -> None:
    scripted.script(
        Reply(tool_calls=[("lookup_order", '{"order_id": "A100"}')]),
        "Your order A100 has shipped with UPS.",
    )
    async with client.realtime.connect(model="gpt-realtime") as conn:
        listing = await connect_with(conn, mcp_tool(orders))
        assert types_of(listing) == [
            "conversation.item.added",
            "mcp_list_tools.in_progress",
            "mcp_list_tools.completed",
            "conversation.item.done",
        ]
        item = listing[-1]["item"]
        assert item["type"] == "mcp_list_tools" and item["server_label"] == "orders"
        tools = {tool["name"]: tool for tool in item["tools"]}
        assert set(tools) == {"lookup_order", "issue_refund", "slow_echo"}
        assert tools["lookup_order"]["input_schema"]["required"] == ["order_id"]
        assert tools["lookup_order"]["annotations"]["readOnlyHint"] is True

        await add_item(conn, user_text("Where is my order A100?"))
        events = await run_response(conn)

    assert squash(types_of(events))[2:9] == [
        *CALL_EVENTS,
        "response.mcp_call.completed",
        "response.output_item.done",
    ]
    call = of_type(events, "response.output_item.done")[0]["item"]
    assert call["type"] == "mcp_call" and call["name"] == "lookup_order" and call["server_label"] == "orders"
    assert json.loads(call["arguments"]) == {"order_id": "A100"}
    assert json.loads(call["output"])["status"] == "shipped"
    assert one(events, "response.mcp_call_arguments.done")["arguments"] == call["arguments"]
    response = one(events, "response.done")["response"]
    assert response["status"] == "completed"
    assert [item["type"] for item in response["output"]] == ["mcp_call", "message"]
    assert "shipped" in response["output"][1]["content"][0]["text"]
    assert orders.calls == [ToolCallRecord("lookup_order", {"order_id": "A100"})]
    # The model got the tools as functions and, in the same response, the call's output.
    offered = {t["function"]["name"] for t in scripted.requests[0]["tools"]}
    assert offered == {"lookup_order", "issue_refund", "slow_echo"}
    result = scripted.requests[1]["messages"][-1]
    assert result["role"] == "tool" and json.loads(result["content"])["carrier"] == "UPS"


async def test_a_tool_error_is_reported_and_the_model_answers_with_it(
    client: AsyncOpenAI, scripted: ScriptedLLM, orders: McpTestServer
) -> None:
    scripted.script(Reply(tool_calls=[("lookup_order", '{"order_id": "Z9"}')]), "I cannot find order Z9.")
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await connect_with(conn, mcp_tool(orders, allowed_tools=["lookup_order"]))
        await add_item(conn, user_text("Where is order Z9?"))
        events = await run_response(conn)

    one(events, "response.mcp_call.failed")
    assert not of_type(events, "response.mcp_call.completed")
    call = of_type(events, "response.output_item.done")[0]["item"]
    assert call["error"]["type"] == "tool_execution_error" and "Unknown order: Z9" in call["error"]["message"]
    assert one(events, "response.done")["response"]["status"] == "completed"
    assert [t["function"]["name"] for t in scripted.requests[0]["tools"]] == ["lookup_order"]
    assert "Unknown order: Z9" in scripted.requests[1]["messages"][-1]["content"]


async def test_approval_is_asked_for_and_an_approved_call_runs_in_the_next_response(
    client: AsyncOpenAI, scripted: ScriptedLLM, orders: McpTestServer
) -> None:
    tool = mcp_tool(orders, require_approval={"never": {"read_only": True}})
    refund = '{"order_id": "A100", "amount": 10.5}'
    scripted.script(Reply(tool_calls=[("issue_refund", refund)]), "Done: 10.50 refunded.")
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await connect_with(conn, tool)
        await add_item(conn, user_text("Refund 10.50 on order A100."))
        events = await run_response(conn)
        request = one(events, "response.output_item.done")["item"]
        assert request["type"] == "mcp_approval_request" and request["name"] == "issue_refund"
        assert json.loads(request["arguments"]) == json.loads(refund)
        assert one(events, "response.done")["response"]["status"] == "completed"
        assert orders.calls == []  # nothing runs before the client approves

        answer = {"type": "mcp_approval_response", "id": "approve_1", "approval_request_id": request["id"]}
        await add_item(conn, {**answer, "approve": True})  # type: ignore[typeddict-item]
        events = await run_response(conn)

    call = of_type(events, "response.output_item.done")[0]["item"]
    assert call["type"] == "mcp_call" and call["approval_request_id"] == request["id"]
    assert json.loads(call["output"])["status"] == "refund_issued"
    assert [(r.order_id, r.amount) for r in orders.refunds] == [("A100", 10.5)]
    assert "refunded" in one(events, "response.done")["response"]["output"][1]["content"][0]["text"]


async def test_a_declined_call_never_runs_and_the_model_is_told(
    client: AsyncOpenAI, scripted: ScriptedLLM, orders: McpTestServer
) -> None:
    scripted.script(
        Reply(tool_calls=[("issue_refund", '{"order_id": "A100", "amount": 99}')]), "OK, no refund."
    )
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await connect_with(conn, mcp_tool(orders, require_approval="always"))
        await add_item(conn, user_text("Refund everything."))
        request = one(await run_response(conn), "response.output_item.done")["item"]
        answer = {"type": "mcp_approval_response", "id": "decline_1", "approval_request_id": request["id"]}
        answer["approve"] = False
        await add_item(conn, answer)  # type: ignore[arg-type]
        events = await run_response(conn)

    assert not of_type(events, "response.mcp_call.in_progress")
    assert orders.calls == [] and orders.refunds == []
    told = scripted.requests[-1]["messages"][-1]
    assert told["role"] == "tool" and "declined" in told["content"]


async def test_a_cancelled_response_never_runs_its_call_and_a_running_call_is_stopped(
    client: AsyncOpenAI, scripted: ScriptedLLM, orders: McpTestServer
) -> None:
    slow_stream = Reply(tool_calls=[("issue_refund", '{"order_id": "A100", "amount": 5}')], chunk_delay_s=0.3)
    scripted.script(slow_stream, Reply(tool_calls=[("slow_echo", '{"text": "hold", "delay_s": 30}')]))
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await connect_with(conn, mcp_tool(orders))
        await add_item(conn, user_text("Refund five."))
        await conn.response.create()
        await collect_until(conn, "response.created")
        await conn.response.cancel()
        events = await collect_until(conn, "response.done")
        assert events[-1]["response"]["status"] == "cancelled"
        assert not of_type(events, "response.mcp_call.in_progress")

        await conn.response.create()
        await collect_until(conn, "response.mcp_call.in_progress")
        await asyncio.to_thread(orders.wait_until, lambda s: len(s.calls) == 1)
        await conn.response.cancel()
        events = await collect_until(conn, "response.done")

    assert events[-1]["response"]["status"] == "cancelled"
    one(events, "response.mcp_call.failed")
    call = one(events, "response.output_item.done")["item"]
    assert "cancelled" in call["error"]["message"]
    assert [c.name for c in orders.calls] == ["slow_echo"] and orders.refunds == []
    await asyncio.to_thread(orders.wait_until, lambda s: s.cancelled == ["hold"])


async def test_a_server_that_refuses_the_credentials_fails_its_listing(
    client: AsyncOpenAI, scripted: ScriptedLLM, orders: McpTestServer
) -> None:
    async with client.realtime.connect(model="gpt-realtime") as conn:
        events = await connect_with(conn, mcp_tool(orders, authorization="wrong-token"))
        assert types_of(events) == [
            "conversation.item.added",
            "mcp_list_tools.in_progress",
            "mcp_list_tools.failed",
            "error",
            "conversation.item.done",
        ]
        error = one(events, "error")["error"]
        assert error["code"] == "mcp_list_tools_failed" and "401" in error["message"]
        # The session goes on; the model simply has no tools from that server.
        await add_item(conn, user_text("hello"))
        events = await run_response(conn)
        assert one(events, "response.done")["response"]["status"] == "completed"
        assert "tools" not in scripted.requests[-1]


async def test_invalid_mcp_arguments_are_corrected_against_the_input_schema(
    client: AsyncOpenAI, scripted: ScriptedLLM, orders: McpTestServer
) -> None:
    scripted.script(
        Reply(tool_calls=[("lookup_order", '{"id": "A200"}')]),
        Reply(tool_calls=[("lookup_order", '{"order_id": "A200"}')]),
        "Order A200 is still processing.",
    )
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await connect_with(conn, mcp_tool(orders))
        await add_item(conn, user_text("What about A200?"))
        events = await run_response(conn)

    assert json.loads(one(events, "response.mcp_call_arguments.done")["arguments"]) == {"order_id": "A200"}
    assert orders.calls == [ToolCallRecord("lookup_order", {"order_id": "A200"})]
    assert "'order_id' is a required property" in scripted.requests[1]["messages"][-1]["content"]


async def test_headers_carry_the_credentials_too(
    client: AsyncOpenAI, scripted: ScriptedLLM, orders: McpTestServer
) -> None:
    tool = mcp_tool(orders, authorization=None, headers={"Authorization": f"Bearer {TOKEN}"})
    async with client.realtime.connect(model="gpt-realtime") as conn:
        events = await connect_with(conn, {k: v for k, v in tool.items() if v is not None})
    assert "mcp_list_tools.completed" in types_of(events)
    assert len(events[-1]["item"]["tools"]) == 3
