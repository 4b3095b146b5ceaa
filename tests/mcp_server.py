"""A real MCP server for tests: the official SDK's ``MCPServer`` over streamable HTTP on loopback.

    with McpTestServer(token="s3cret") as server:      # or: async with McpTestServer() as server:
        connection = McpConnection("orders", server.url, None, "s3cret")
        ...
        assert server.calls[0] == ToolCallRecord("lookup_order", {"order_id": "A100"})

uvicorn serves the SDK's Starlette app in a background thread with its own event loop, on a free
port of 127.0.0.1, so the server keeps answering whatever the test's own loop is doing. A support
agent's tools: ``lookup_order`` (order status JSON; an MCP tool error, ``isError``, for an unknown
id), ``issue_refund`` (records refunds) and ``slow_echo`` (sleeps, for timeouts and cancellation).
With a ``token``, every request without ``Authorization: Bearer <token>`` gets a plain 401.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import uvicorn
from mcp.server import ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ListToolsResult, PaginatedRequestParams, ToolAnnotations
from starlette.types import ASGIApp, Receive, Scope, Send

MCP_PATH = "/mcp"

ORDERS: dict[str, dict[str, Any]] = {
    "A100": {"order_id": "A100", "status": "shipped", "carrier": "UPS", "total": 42.5},
    "A200": {"order_id": "A200", "status": "processing", "carrier": None, "total": 12.0},
    "A300": {"order_id": "A300", "status": "delivered", "carrier": "DHL", "total": 99.99},
}


@dataclass(frozen=True)
class ToolCallRecord:
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Refund:
    order_id: str
    amount: float


class BearerAuth:
    """ASGI middleware: while ``server.token`` is set, requests without ``Authorization: Bearer
    <token>`` get a 401 (the token is read per request, so a test can rotate it mid-session)."""

    def __init__(self, app: ASGIApp, server: McpTestServer) -> None:
        self.app = app
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = self.server.token
        authorization = dict(scope.get("headers", [])).get(b"authorization")
        if scope["type"] == "http" and token is not None and authorization != f"Bearer {token}".encode():
            body = b"missing or invalid bearer token"
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"text/plain"),
                        (b"content-length", str(len(body)).encode()),
                        (b"www-authenticate", b'Bearer realm="mcp"'),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


class PagedMCPServer(MCPServer[Any]):
    """Lists its tools ``page_size`` at a time (``MCPServer`` itself never paginates)."""

    def __init__(self, name: str, page_size: int | None) -> None:
        super().__init__(name, instructions="Order support tools.", log_level="WARNING")
        self.page_size = page_size
        self.list_requests = 0

    async def _handle_list_tools(
        self, ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None
    ) -> ListToolsResult:
        self.list_requests += 1
        tools = await self.list_tools()
        if self.page_size is None:
            return ListToolsResult(tools=tools)
        start = int(params.cursor) if params is not None and params.cursor else 0
        end = start + self.page_size
        return ListToolsResult(tools=tools[start:end], next_cursor=str(end) if end < len(tools) else None)


class McpTestServer:
    """The support-agent MCP server on ``127.0.0.1:<free port>``, served from a background thread."""

    def __init__(self, token: str | None = None, name: str = "orders", page_size: int | None = None) -> None:
        self.token = token
        """The bearer token every request must carry; None: no authentication. May change any time."""
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._calls: list[ToolCallRecord] = []
        self._refunds: list[Refund] = []
        self._cancelled: list[str] = []
        self.mcp = self._build(name, page_size)
        app = BearerAuth(self.mcp.streamable_http_app(streamable_http_path=MCP_PATH), self)
        # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only then; without it each JSON response (headers,
        # then body) waits for the client's delayed ACK, ~40 ms a call.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1)
        self._uvicorn = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The MCP endpoint, e.g. ``http://127.0.0.1:40123/mcp``."""
        return f"http://127.0.0.1:{self.port}{MCP_PATH}"

    @property
    def calls(self) -> list[ToolCallRecord]:
        """Every tool call the server received, in order (a copy)."""
        with self._lock:
            return list(self._calls)

    @property
    def refunds(self) -> list[Refund]:
        with self._lock:
            return list(self._refunds)

    @property
    def cancelled(self) -> list[str]:
        """The ``text`` of every ``slow_echo`` call that was cancelled before it finished."""
        with self._lock:
            return list(self._cancelled)

    def wait_until(self, predicate: Callable[[McpTestServer], bool], timeout_s: float = 20.0) -> None:
        """Block until ``predicate(self)`` holds, rechecked on every call and cancellation; from a test's
        loop: ``await asyncio.to_thread(server.wait_until, lambda s: len(s.calls) == 1)``."""
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self), timeout_s):
                raise TimeoutError(f"the MCP test server did not reach the awaited state in {timeout_s}s")

    def _record(self, name: str, arguments: dict[str, Any]) -> None:
        with self._changed:
            self._calls.append(ToolCallRecord(name, arguments))
            self._changed.notify_all()

    def _build(self, name: str, page_size: int | None) -> PagedMCPServer:
        mcp = PagedMCPServer(name, page_size)

        @mcp.tool(annotations=ToolAnnotations(read_only_hint=True))
        def lookup_order(order_id: str) -> str:
            """Look up an order's status by its id."""
            self._record("lookup_order", {"order_id": order_id})
            order = ORDERS.get(order_id)
            if order is None:
                raise ToolError(f"Unknown order: {order_id}")
            return json.dumps(order)

        @mcp.tool(annotations=ToolAnnotations(destructive_hint=False, idempotent_hint=False))
        def issue_refund(order_id: str, amount: float) -> str:
            """Refund part or all of an order."""
            self._record("issue_refund", {"order_id": order_id, "amount": amount})
            if order_id not in ORDERS:
                raise ToolError(f"Unknown order: {order_id}")
            with self._lock:
                self._refunds.append(Refund(order_id, amount))
            return json.dumps({"order_id": order_id, "refunded": amount, "status": "refund_issued"})

        @mcp.tool()
        async def slow_echo(text: str, delay_s: float) -> str:
            """Echo ``text`` after ``delay_s`` seconds."""
            self._record("slow_echo", {"text": text, "delay_s": delay_s})
            try:
                await asyncio.sleep(delay_s)
            except asyncio.CancelledError:
                with self._changed:
                    self._cancelled.append(text)
                    self._changed.notify_all()
                raise
            return text

        return mcp

    def start(self) -> None:
        """Serve from a daemon thread; return once uvicorn accepts connections."""
        if self._thread is not None:
            raise RuntimeError("the MCP test server is already started")
        self._thread = threading.Thread(target=self._serve, name=f"mcp test server :{self.port}", daemon=True)
        self._thread.start()
        while not self._uvicorn.started:
            if not self._thread.is_alive():
                raise RuntimeError("the MCP test server failed to start")
            self._thread.join(0.01)

    def _serve(self) -> None:
        asyncio.run(self._uvicorn.serve(sockets=[self._socket]))

    def stop(self) -> None:
        if self._thread is not None:
            self._uvicorn.should_exit = True
            self._thread.join(10)
            self._thread = None
        self._socket.close()

    def __enter__(self) -> McpTestServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> McpTestServer:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)
