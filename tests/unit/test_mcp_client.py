"""McpConnection against a real MCP server (tests/mcp_server.py) over streamable HTTP on loopback."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable

import pytest
from mcp.types import CallToolResult, ImageContent, TextContent

from parley.tools.mcp import CONNECTION_CLOSED, REQUEST_TIMEOUT, McpCallResult, McpConnection, McpError
from tests.mcp_server import McpTestServer, Refund, ToolCallRecord


@pytest.fixture
async def server() -> AsyncIterator[McpTestServer]:
    async with McpTestServer() as running:
        yield running


@pytest.fixture
async def connection(server: McpTestServer) -> AsyncIterator[McpConnection]:
    connection = McpConnection("orders", server.url, timeout_s=20)
    await connection.start()
    yield connection
    await connection.close()


async def until(server: McpTestServer, condition: Callable[[McpTestServer], bool]) -> None:
    """Wait (a bounded while) until the server thread has seen what ``condition`` looks for."""
    await asyncio.to_thread(server.wait_until, condition)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_lists_tools_with_schemas_and_annotations(server: McpTestServer) -> None:
    connection = McpConnection("orders", server.url)
    tools = {tool.name: tool for tool in await connection.start()}
    await connection.close()
    assert set(tools) == {"lookup_order", "issue_refund", "slow_echo"}
    refund = tools["issue_refund"].wire()
    assert set(refund) == {"name", "description", "input_schema", "annotations"}
    assert refund["description"] == "Refund part or all of an order."
    assert refund["input_schema"]["type"] == "object"
    assert refund["input_schema"]["properties"]["amount"]["type"] == "number"
    assert sorted(refund["input_schema"]["required"]) == ["amount", "order_id"]
    assert tools["lookup_order"].annotations == {"readOnlyHint": True}
    assert tools["slow_echo"].wire()["annotations"] is None
    assert connection.tools == list(tools.values())


async def test_lists_every_page() -> None:
    async with McpTestServer(page_size=2) as server:
        connection = McpConnection("orders", server.url)
        tools = await connection.start()
        await connection.close()
    assert [tool.name for tool in tools] == ["lookup_order", "issue_refund", "slow_echo"]
    assert server.mcp.list_requests == 2


async def test_calls_a_tool(server: McpTestServer, connection: McpConnection) -> None:
    result = await connection.call_tool("lookup_order", {"order_id": "A100"})
    assert result.error is None and result.wire_error() is None
    assert result.output is not None
    assert json.loads(result.output)["status"] == "shipped"
    refund = await connection.call_tool("issue_refund", {"order_id": "A200", "amount": 5.5})
    assert refund.output is not None and json.loads(refund.output)["status"] == "refund_issued"
    assert server.refunds == [Refund("A200", 5.5)]
    assert server.calls == [
        ToolCallRecord("lookup_order", {"order_id": "A100"}),
        ToolCallRecord("issue_refund", {"order_id": "A200", "amount": 5.5}),
    ]


async def test_a_tool_error_is_a_result(connection: McpConnection) -> None:
    result = await connection.call_tool("lookup_order", {"order_id": "Z999"})
    assert result.output is None
    assert result.error is not None and "Unknown order: Z999" in result.error
    assert result.error_type == "tool_execution_error"
    assert result.wire_error() == {"type": "tool_execution_error", "message": result.error}


async def test_an_unknown_tool_is_an_error_result(server: McpTestServer, connection: McpConnection) -> None:
    result = await connection.call_tool("cancel_order", {"order_id": "A100"})
    assert result.output is None
    assert result.error is not None and "cancel_order" in result.error
    assert server.calls == []


async def test_invalid_arguments_are_an_error_result(
    server: McpTestServer, connection: McpConnection
) -> None:
    result = await connection.call_tool("issue_refund", {"order_id": "A100"})
    assert result.output is None and result.error is not None
    assert server.refunds == []


async def test_missing_authorization_names_401() -> None:
    async with McpTestServer(token="s3cret") as server:
        connection = McpConnection("orders", server.url)
        with pytest.raises(McpError) as caught:
            await connection.start()
    assert str(caught.value) == "MCP server 'orders' answered 401 Unauthorized"
    assert caught.value.http_status == 401
    assert caught.value.wire_error() == {"type": "http_error", "code": 401, "message": str(caught.value)}
    with pytest.raises(McpError):
        await connection.call_tool("lookup_order", {"order_id": "A100"})
    await connection.close()


async def test_authorization_becomes_a_bearer_header_unless_headers_have_one() -> None:
    async with McpTestServer(token="s3cret") as server:
        connection = McpConnection("orders", server.url, {"X-Tenant": "acme"}, "s3cret")
        assert connection.headers == {"X-Tenant": "acme", "Authorization": "Bearer s3cret"}
        await connection.start()
        result = await connection.call_tool("lookup_order", {"order_id": "A300"})
        await connection.close()
        assert result.output is not None and json.loads(result.output)["status"] == "delivered"

        explicit = McpConnection("orders", server.url, {"authorization": "Bearer wrong"}, "s3cret")
        with pytest.raises(McpError, match="401"):
            await explicit.start()
        await explicit.close()


async def test_a_rejected_call_is_an_http_error_and_the_connection_survives() -> None:
    async with McpTestServer(token="s3cret") as server:
        connection = McpConnection("orders", server.url, authorization="s3cret")
        await connection.start()
        server.token = "rotated"
        rejected = await connection.call_tool("lookup_order", {"order_id": "A100"})
        assert rejected.output is None
        assert rejected.error == "MCP server 'orders' answered 401 Unauthorized"
        assert rejected.wire_error() == {"type": "http_error", "code": 401, "message": rejected.error}
        server.token = "s3cret"
        accepted = await connection.call_tool("lookup_order", {"order_id": "A100"})
        assert accepted.error is None
        await connection.close()


async def test_an_unreachable_server_is_an_mcp_error() -> None:
    url = f"http://127.0.0.1:{closed_port()}/mcp"
    connection = McpConnection("orders", url, timeout_s=20)
    with pytest.raises(McpError) as caught:
        await connection.start()
    assert str(caught.value) == f"Could not reach MCP server 'orders' at {url}: connection refused"
    with pytest.raises(McpError, match="connection refused"):
        await connection.call_tool("lookup_order", {"order_id": "A100"})
    await connection.close()


async def test_a_silent_server_times_out_the_connect(silent_url: str) -> None:
    secret_url = silent_url.replace("http://", "http://user:pw@") + "?key=k"
    connection = McpConnection("orders", secret_url, timeout_s=0.2)
    with pytest.raises(McpError) as caught:
        await connection.start()
    await connection.close()
    assert str(caught.value) == f"MCP server 'orders' at {silent_url} did not answer within 0.2s"
    assert caught.value.code == REQUEST_TIMEOUT


async def test_a_call_times_out_and_the_connection_survives(connection: McpConnection) -> None:
    with pytest.raises(McpError) as caught:
        await connection.call_tool("slow_echo", {"text": "late", "delay_s": 60}, timeout_s=0.2)
    assert str(caught.value) == "MCP tool 'slow_echo' on 'orders' timed out after 0.2s"
    assert caught.value.wire_error() == {
        "type": "protocol_error",
        "code": REQUEST_TIMEOUT,
        "message": str(caught.value),
    }
    result = await connection.call_tool("lookup_order", {"order_id": "A100"})
    assert result.error is None


async def test_a_cancelled_call_does_not_break_the_connection(
    server: McpTestServer, connection: McpConnection
) -> None:
    call = asyncio.create_task(connection.call_tool("slow_echo", {"text": "interrupted", "delay_s": 60}))
    await until(server, lambda s: any(record.name == "slow_echo" for record in s.calls))
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    result = await connection.call_tool("lookup_order", {"order_id": "A200"})
    assert result.output is not None and json.loads(result.output)["status"] == "processing"
    await until(server, lambda s: s.cancelled == ["interrupted"])  # the server was told, and stopped


async def test_calls_run_concurrently(server: McpTestServer, connection: McpConnection) -> None:
    slow = asyncio.create_task(connection.call_tool("slow_echo", {"text": "slow", "delay_s": 60}))
    await until(server, lambda s: len(s.calls) == 1)
    ids = ["A100", "A200", "A300", "A100"]
    fast = await asyncio.gather(*(connection.call_tool("lookup_order", {"order_id": i}) for i in ids))
    assert [json.loads(r.output or "")["order_id"] for r in fast] == ids
    assert not slow.done()
    slow.cancel()
    quick = await connection.call_tool("slow_echo", {"text": "quick", "delay_s": 0})
    assert quick == McpCallResult("quick")


async def test_close_is_idempotent_and_later_calls_fail_at_once(server: McpTestServer) -> None:
    connection = McpConnection("orders", server.url)
    with pytest.raises(McpError, match="is not started"):
        await connection.call_tool("lookup_order", {"order_id": "A100"})
    await connection.start()
    pending = asyncio.create_task(connection.call_tool("slow_echo", {"text": "cut", "delay_s": 60}))
    await until(server, lambda s: len(s.calls) == 1)
    await connection.close()
    await connection.close()
    with pytest.raises(McpError) as caught:
        await pending
    assert str(caught.value) == "The connection to MCP server 'orders' is closed"
    with pytest.raises(McpError, match="is closed") as later:
        await connection.call_tool("lookup_order", {"order_id": "A100"})
    assert later.value.code == CONNECTION_CLOSED
    assert len(server.calls) == 1


async def test_start_call_and_close_from_different_tasks(server: McpTestServer) -> None:
    connection = McpConnection("orders", server.url)
    tools = await asyncio.create_task(connection.start())
    assert len(tools) == 3
    result = await asyncio.create_task(connection.call_tool("lookup_order", {"order_id": "A100"}))
    assert result.error is None
    await asyncio.create_task(connection.close())
    with pytest.raises(McpError, match="is closed"):
        await asyncio.create_task(connection.call_tool("lookup_order", {"order_id": "A100"}))


@pytest.fixture
async def silent_url() -> AsyncIterator[str]:
    """A loopback HTTP endpoint that accepts connections and never answers."""

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client hangs up
        writer.close()

    silent = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    async with silent:
        yield f"http://127.0.0.1:{silent.sockets[0].getsockname()[1]}/mcp"


@pytest.mark.parametrize("steps", [0, 1, 2, 5, 20])
async def test_close_while_connecting(silent_url: str, steps: int) -> None:
    """Whichever point the connect has reached, close() ends it and start() reports it closed."""
    connection = McpConnection("orders", silent_url)
    starting = asyncio.create_task(connection.start())
    for _ in range(steps):
        await asyncio.sleep(0)
    await connection.close()
    with pytest.raises(McpError, match="is closed"):
        await starting


async def test_cancelling_start_closes_the_connection(silent_url: str) -> None:
    connection = McpConnection("orders", silent_url)
    starting = asyncio.create_task(connection.start())
    await asyncio.sleep(0.05)
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    with pytest.raises(McpError, match="is closed"):
        await connection.call_tool("lookup_order", {"order_id": "A100"})


async def test_a_lost_server_fails_calls() -> None:
    server = McpTestServer()
    await asyncio.to_thread(server.start)
    connection = McpConnection("orders", server.url, timeout_s=20)
    await connection.start()
    await asyncio.to_thread(server.stop)
    with pytest.raises(McpError, match="Could not reach MCP server 'orders'"):
        await connection.call_tool("lookup_order", {"order_id": "A100"})
    with pytest.raises(McpError, match="Lost the connection to MCP server 'orders'"):
        await connection.call_tool("lookup_order", {"order_id": "A100"})
    await connection.close()


def test_output_is_the_text_else_the_structured_content() -> None:
    texts = CallToolResult(
        content=[TextContent(text="one"), TextContent(text="two")], structured_content={"n": 2}
    )
    assert McpCallResult.from_sdk(texts) == McpCallResult("one\ntwo")
    structured = CallToolResult(content=[], structured_content={"n": 2})
    assert McpCallResult.from_sdk(structured) == McpCallResult('{"n": 2}')
    image = CallToolResult(content=[ImageContent(data="AAAA", mime_type="image/png")])
    assert json.loads(McpCallResult.from_sdk(image).output or "") == [
        {"type": "image", "data": "AAAA", "mimeType": "image/png"}
    ]
    assert McpCallResult.from_sdk(CallToolResult(content=[])) == McpCallResult("")
    failed = McpCallResult.from_sdk(CallToolResult(content=[], is_error=True))
    assert failed == McpCallResult(None, "The MCP tool reported an error.", "tool_execution_error")
