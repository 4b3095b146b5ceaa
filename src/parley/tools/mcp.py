"""An MCP client over streamable HTTP for the Realtime API's ``type: "mcp"`` session tools.

    connection = McpConnection("orders", "https://mcp.example.com/mcp", headers=None, authorization=token)
    tools = await connection.start()                  # McpError if unreachable, refused or too slow
    item = {"type": "mcp_list_tools", "server_label": "orders", "tools": [t.wire() for t in tools]}
    try:
        result = await connection.call_tool("lookup_order", {"order_id": "A100"})
        output, error = result.output, result.wire_error()
    except McpError as exc:                           # timed out, or the connection is closed or lost
        output, error = None, exc.wire_error()
    await connection.close()                          # idempotent

The official SDK's client (``mcp.Client`` over ``streamable_http_client``) lives in anyio task groups
and cancel scopes, which one task must enter and exit. So one background task owns the connection:
it connects, lists the tools, then serves the ``call_tool`` requests handed to it through a queue,
each in a child task. ``start``, ``call_tool`` and ``close`` may come from any task of the loop;
cancelling a ``call_tool`` cancels that request alone (the SDK tells the server), and a closed or
lost connection fails every waiting and later call at once. The SDK, slow to import (about half a
second), is imported by the first ``start()`` in a worker thread, sparing the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import math
import os
import socket
import sys
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

import anyio

from parley import __version__

if TYPE_CHECKING:
    import httpx2
    from mcp import Client
    from mcp.types import CallToolResult, Tool

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0
CLOSE_TIMEOUT_S = 5.0
MAX_TOOL_PAGES = 100
INTERNAL_ERROR, REQUEST_TIMEOUT, CONNECTION_CLOSED = -32603, -32001, -32000
"""JSON-RPC error codes (the last two as the MCP SDK uses them)."""
ErrorType = Literal["protocol_error", "tool_execution_error", "http_error"]

_HTTP_ERRORS: ContextVar[list[int] | None] = ContextVar("parley_mcp_http_errors", default=None)
"""Per request, the HTTP error statuses answered (the SDK turns them into a bare JSON-RPC error).
The transport POSTs in a copy of the sender's context, so the response hook sees the caller's list."""
_SYNTHESIZED = frozenset({"Server returned an error response", "Not Found", "Session terminated"})


def _wire_error(type_: ErrorType, code: int | None, message: str) -> dict[str, Any]:
    if type_ == "tool_execution_error":
        return {"type": type_, "message": message}
    return {"type": type_, "code": INTERNAL_ERROR if code is None else code, "message": message}


class McpError(Exception):
    """The MCP server could not be used; ``str(exc)`` is safe to show to the Realtime client."""

    def __init__(self, message: str, *, code: int = INTERNAL_ERROR, http_status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        """JSON-RPC: ``REQUEST_TIMEOUT``, ``CONNECTION_CLOSED``, the server's own, else ``INTERNAL_ERROR``."""
        self.http_status = http_status

    def wire_error(self) -> dict[str, Any]:
        """The Realtime ``mcp_call.error`` object: ``http_error`` or ``protocol_error``."""
        if self.http_status is not None:
            return _wire_error("http_error", self.http_status, self.message)
        return _wire_error("protocol_error", self.code, self.message)


@dataclass(frozen=True)
class McpTool:
    name: str
    description: str | None
    input_schema: dict[str, Any]
    annotations: dict[str, Any] | None
    """As the server sent them (camelCase hints: ``{"readOnlyHint": true}``)."""

    @classmethod
    def from_sdk(cls, tool: Tool) -> McpTool:
        hints = tool.annotations
        annotations = hints.model_dump(by_alias=True, exclude_none=True, mode="json") if hints else None
        return cls(tool.name, tool.description, tool.input_schema, annotations)

    def wire(self) -> dict[str, Any]:
        """An entry of a Realtime ``mcp_list_tools`` item's ``tools`` (a deep copy)."""
        return asdict(self)


@dataclass(frozen=True)
class McpCallResult:
    """The server's answer: ``output`` (text parts joined by newlines, else the structured content as
    JSON), or ``error``, a message, with ``error_type`` ``tool_execution_error`` (the tool reported
    ``isError``), ``protocol_error`` (a JSON-RPC error ``error_code``) or ``http_error`` (the status)."""

    output: str | None
    error: str | None = None
    error_type: ErrorType | None = None
    error_code: int | None = None

    def wire_error(self) -> dict[str, Any] | None:
        """The Realtime ``mcp_call.error`` object, or None when the call succeeded."""
        if self.error is None:
            return None
        return _wire_error(self.error_type or "protocol_error", self.error_code, self.error)

    @classmethod
    def from_sdk(cls, result: CallToolResult) -> McpCallResult:
        from mcp.types import EmbeddedResource, TextContent, TextResourceContents

        texts: list[str] = []
        for block in result.content:
            if isinstance(block, TextContent):
                texts.append(block.text)
            elif isinstance(block, EmbeddedResource) and isinstance(block.resource, TextResourceContents):
                texts.append(block.resource.text)
        text = "\n".join(texts)
        if not texts and result.structured_content is not None:
            text = json.dumps(result.structured_content)
        elif not texts and result.content:  # images, audio, links: their JSON
            text = json.dumps(
                [b.model_dump(by_alias=True, exclude_none=True, mode="json") for b in result.content]
            )
        if result.is_error:
            return cls(None, text or "The MCP tool reported an error.", "tool_execution_error")
        return cls(text)


@dataclass(eq=False)
class _Call:
    name: str
    arguments: dict[str, Any]
    timeout_s: float
    future: asyncio.Future[McpCallResult]


class McpConnection:
    """One MCP server over streamable HTTP, owned by a background task (see the module docstring)."""

    def __init__(
        self,
        server_label: str,
        server_url: str,
        headers: dict[str, str] | None = None,
        authorization: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.server_label = server_label
        self.server_url = server_url
        self.timeout_s = timeout_s
        """Bounds connecting with listing the tools, and each call unless it gives its own."""
        self.headers = dict(headers or {})
        if authorization and not any(name.lower() == "authorization" for name in self.headers):
            bearer = authorization.lower().startswith("bearer ")
            self.headers["Authorization"] = authorization if bearer else f"Bearer {authorization}"
        self.tools: list[McpTool] = []
        self._queue: asyncio.Queue[_Call | None] = asyncio.Queue()
        self._in_flight: set[_Call] = set()
        self._ready = asyncio.Event()
        self._settled = asyncio.Event()  # ready, failed or closed
        self._task: asyncio.Task[None] | None = None
        self._failure: McpError | None = None
        self._started = False
        self._closed = False

    async def start(self) -> list[McpTool]:
        """Connect, initialize and list every tool (all pages); McpError if that fails."""
        if self._started:
            raise RuntimeError(f"MCP connection {self.server_label!r} was already started")
        self._started = True
        try:
            if "mcp.client.streamable_http" not in sys.modules:
                await asyncio.to_thread(importlib.import_module, "mcp.client.streamable_http")
            if self._closed:
                raise self._unusable()
            self._task = asyncio.create_task(self._run(), name=f"mcp {self.server_label}")
            await self._settled.wait()
        except asyncio.CancelledError:
            await self.close()
            raise
        if not self._ready.is_set():
            raise self._unusable()
        return list(self.tools)

    async def call_tool(
        self, name: str, arguments: dict[str, Any], timeout_s: float | None = None
    ) -> McpCallResult:
        """Call a tool. The server's answer is the result, even an error; McpError when the call timed
        out or the connection is not started, closed or lost. Cancelling cancels this call alone."""
        if self._task is None or self._closed or not self._ready.is_set():
            raise self._unusable()
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        call = _Call(name, arguments, timeout_s, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(call)
        return await call.future

    async def close(self) -> None:
        """End the connection (and the server's session when possible); idempotent."""
        self._closed = True
        if self._task is None or self._task.done():
            return
        self._queue.put_nowait(None)
        if not self._ready.is_set():
            self._task.cancel()
        await asyncio.wait([self._task])
        self._settled.set()  # in case the task was cancelled before it ever ran

    def _unusable(self) -> McpError:
        label = repr(self.server_label)
        if self._failure is not None and self._ready.is_set():
            return McpError(
                f"Lost the connection to MCP server {label}: {self._failure}", code=CONNECTION_CLOSED
            )
        if self._failure is not None:
            return self._failure
        state = "closed" if self._closed else "not started"
        return McpError(f"The connection to MCP server {label} is {state}", code=CONNECTION_CLOSED)

    # ------------------------------------------------------------------------------ the owner task

    async def _run(self) -> None:
        import httpx2
        from mcp import Client
        from mcp.client.streamable_http import streamable_http_client
        from mcp.types import Implementation

        http_errors: list[int] = []
        _HTTP_ERRORS.set(http_errors)
        scope = anyio.CancelScope(deadline=anyio.current_time() + self.timeout_s)
        try:
            with scope:
                async with (
                    httpx2.AsyncClient(
                        headers=self.headers,
                        timeout=httpx2.Timeout(self.timeout_s, read=300.0),  # the SDK's SSE read timeout
                        event_hooks={"response": [_record_http_error]},
                    ) as http,
                    Client(
                        streamable_http_client(self.server_url, http_client=http),
                        client_info=Implementation(name="parley", version=__version__),
                        cache=None,
                    ) as client,
                ):
                    self.tools = await self._list_tools(client)
                    scope.deadline = math.inf
                    http_errors.clear()  # e.g. a legacy server's answer to the discover probe
                    self._ready.set()
                    self._settled.set()
                    await self._serve(client)
                    scope.deadline = anyio.current_time() + min(self.timeout_s, CLOSE_TIMEOUT_S)
            if scope.cancelled_caught and not self._ready.is_set():
                where = f"{self.server_label!r} at {_display(self.server_url)}"
                message = f"MCP server {where} did not answer within {self.timeout_s:g}s"
                self._failure = McpError(message, code=REQUEST_TIMEOUT)
        except Exception as exc:
            self._failure = self._describe(exc, http_errors)
            log.info("MCP connection %r failed: %s", self.server_label, self._failure, exc_info=exc)
        finally:
            self._closed = True
            self._settled.set()
            while not self._queue.empty():
                if (call := self._queue.get_nowait()) is not None:
                    self._in_flight.add(call)
            for call in self._in_flight:
                _settle(call, self._unusable())

    async def _list_tools(self, client: Client) -> list[McpTool]:
        tools: list[McpTool] = []
        cursor: str | None = None
        for _ in range(MAX_TOOL_PAGES):
            page = await client.list_tools(cursor=cursor)
            tools.extend(McpTool.from_sdk(tool) for tool in page.tools)
            if not (cursor := page.next_cursor):
                break
        return tools

    async def _serve(self, client: Client) -> None:
        async with anyio.create_task_group() as group:
            while (call := await self._queue.get()) is not None:
                group.start_soon(self._serve_call, client, call)
            group.cancel_scope.cancel()

    async def _serve_call(self, client: Client, call: _Call) -> None:
        from mcp import MCPError

        if call.future.done():  # the caller gave up while the call was queued
            return
        http_errors: list[int] = []
        _HTTP_ERRORS.set(http_errors)
        self._in_flight.add(call)
        with anyio.CancelScope() as scope:

            def caller_gone(_: object) -> None:
                scope.cancel()

            call.future.add_done_callback(caller_gone)
            try:
                with anyio.fail_after(call.timeout_s):
                    result = McpCallResult.from_sdk(await client.call_tool(call.name, call.arguments))
            except TimeoutError:
                message = (
                    f"MCP tool {call.name!r} on {self.server_label!r} timed out after {call.timeout_s:g}s"
                )
                _settle(call, McpError(message, code=REQUEST_TIMEOUT))
            except MCPError as exc:
                error = self._describe(exc, http_errors)
                kind: ErrorType = "protocol_error" if error.http_status is None else "http_error"
                _settle(call, McpCallResult(None, error.message, kind, error.http_status or error.code))
            except Exception as exc:  # e.g. structured content not matching the tool's output schema
                log.info("MCP tool %r on %r failed", call.name, self.server_label, exc_info=exc)
                message = f"Invalid answer from MCP server {self.server_label!r}: {_brief(exc)}"
                _settle(call, McpCallResult(None, message, "protocol_error", INTERNAL_ERROR))
            else:
                _settle(call, result)
            finally:
                call.future.remove_done_callback(caller_gone)
                if call.future.done():  # else close() or a lost connection ended it: _run settles it
                    self._in_flight.discard(call)

    def _describe(self, exc: BaseException, http_errors: list[int]) -> McpError:
        """A client-safe McpError for what went wrong under ``exc`` (maybe an exception group)."""
        import httpx2
        from mcp import MCPError

        leaves = [leaf for leaf in _leaves(exc) if not isinstance(leaf, asyncio.CancelledError)] or [exc]
        leaf = next((e for e in leaves if isinstance(e, McpError | MCPError | httpx2.HTTPError)), leaves[0])
        label = repr(self.server_label)
        where = f"MCP server {label} at {_display(self.server_url)}"
        if isinstance(leaf, McpError):
            return leaf
        if isinstance(leaf, httpx2.TimeoutException):
            return McpError(f"{where} timed out", code=REQUEST_TIMEOUT)
        if isinstance(leaf, httpx2.TransportError | OSError):
            return McpError(f"Could not reach {where}: {_network_reason(leaf)}")
        if http_errors:
            status = http_errors[-1]
            detail = (
                f": {leaf.message}" if isinstance(leaf, MCPError) and leaf.message not in _SYNTHESIZED else ""
            )
            return McpError(f"MCP server {label} answered {_status(status)}{detail}", http_status=status)
        if isinstance(leaf, MCPError):
            return McpError(f"MCP server {label} returned an error: {leaf.message}", code=leaf.code)
        return McpError(f"MCP server {label} failed: {_brief(leaf)}")


def _settle(call: _Call, outcome: McpCallResult | McpError) -> None:
    if call.future.done():
        pass
    elif isinstance(outcome, McpError):
        call.future.set_exception(outcome)
    else:
        call.future.set_result(outcome)


async def _record_http_error(response: httpx2.Response) -> None:
    if response.status_code >= 400 and (errors := _HTTP_ERRORS.get()) is not None:
        errors.append(response.status_code)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _status(status: int) -> str:
    with contextlib.suppress(ValueError):
        return f"{status} {HTTPStatus(status).phrase}"
    return str(status)


def _network_reason(exc: BaseException) -> str:
    """``connection refused``, ``unknown host (...)``: the first OS error behind ``exc``."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, socket.gaierror):
            return f"unknown host ({seen.strerror})"
        if isinstance(seen, OSError) and seen.errno is not None:
            return os.strerror(seen.errno).lower()
        seen = seen.__cause__ or seen.__context__
    return _brief(exc)


def _brief(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _display(url: str) -> str:
    """The URL without credentials or query, which may hold secrets."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
