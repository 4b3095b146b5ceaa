"""The session's MCP servers (GA ``tools`` of ``type: "mcp"``).

When ``session.update`` names a server, Parley connects to it and lists its tools: an
``mcp_list_tools`` item enters the conversation, ``mcp_list_tools.in_progress`` then ``.completed``
(or ``.failed`` with an ``error`` event saying why). Responses wait for the listing, offer the allowed
tools to the model, and run their calls here. A server whose URL, headers and authorization did not
change keeps its connection across updates; a server removed from the session is disconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from parley import ids
from parley.protocol import mcp_events
from parley.protocol import server_events as ev
from parley.protocol.errors import ProtocolError
from parley.realtime.conversation import Conversation, Item
from parley.realtime.response_output import Emit
from parley.realtime.toolbox import ToolOutcome, ToolSpec
from parley.tools.mcp import McpConnection, McpError, McpTool

log = logging.getLogger("parley.mcp")

Connect = Callable[..., McpConnection]


@dataclass
class _Server:
    config: dict[str, Any]
    connection: McpConnection
    item: Item
    listing: asyncio.Task[None] | None = None
    tools: list[McpTool] = field(default_factory=list)

    @property
    def key(self) -> tuple[Any, ...]:
        return _connection_key(self.config)


def _connection_key(config: dict[str, Any]) -> tuple[Any, ...]:
    headers = tuple(sorted((config.get("headers") or {}).items()))
    return config.get("server_url"), headers, config.get("authorization")


class McpServers:
    def __init__(
        self,
        *,
        conversation: Conversation,
        emit: Emit,
        timeout_s: float,
        connect: Connect = McpConnection,
    ) -> None:
        self.conversation = conversation
        self._emit = emit
        self.timeout_s = timeout_s
        self._connect = connect
        self._servers: dict[str, _Server] = {}

    async def configure(self, tools: list[dict[str, Any]]) -> None:
        """Connect to the MCP servers of a new session config and disconnect from removed ones."""
        wanted = {str(t["server_label"]): t for t in tools if t.get("type") == "mcp"}
        for label in [label for label in self._servers if label not in wanted]:
            await self._drop(label)
        for label, config in wanted.items():
            server = self._servers.get(label)
            if server is not None and server.key == _connection_key(config):
                server.config = config  # allowed_tools / require_approval may change freely
                continue
            if server is not None:
                await self._drop(label)
            await self._add(label, config)

    async def _add(self, label: str, config: dict[str, Any]) -> None:
        connection = self._connect(
            label,
            str(config["server_url"]),
            headers=config.get("headers"),
            authorization=config.get("authorization"),
            timeout_s=self.timeout_s,
        )
        item = Item(data={"id": ids.item_id(), "type": "mcp_list_tools", "server_label": label, "tools": []})
        server = _Server(config, connection, item)
        self._servers[label] = server
        previous = self.conversation.insert(item)
        await self._emit(ev.conversation_item_added(item.wire(), previous))
        await self._emit(mcp_events.mcp_list_tools("in_progress", item.id))
        server.listing = asyncio.create_task(self._list(server), name=f"mcp list {label}")

    async def _list(self, server: _Server) -> None:
        item = server.item
        try:
            server.tools = await server.connection.start()
        except McpError as exc:
            log.warning("MCP server %r: %s", server.connection.server_label, exc)
            await self._emit(mcp_events.mcp_list_tools("failed", item.id))
            await self._emit(ev.error(ProtocolError("mcp_list_tools_failed", str(exc), type="server_error")))
        else:
            item.data["tools"] = [tool.wire() for tool in server.tools]
            await self._emit(mcp_events.mcp_list_tools("completed", item.id))
        if item.id in self.conversation:
            await self._emit(ev.conversation_item_done(item.wire(), self.conversation.previous_id(item.id)))

    async def _drop(self, label: str) -> None:
        server = self._servers.pop(label)
        if server.listing is not None and not server.listing.done():
            server.listing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await server.listing
        await server.connection.close()

    async def specs(self, tools: list[dict[str, Any]], taken: set[str]) -> list[ToolSpec]:
        """The callable tools of the MCP servers in ``tools`` (waiting for their listings), named
        so that they clash neither with ``taken`` (the function tools) nor with each other."""
        servers = [self._servers[str(t["server_label"])] for t in tools if t.get("type") == "mcp"]
        listings = [s.listing for s in servers if s.listing is not None and not s.listing.done()]
        if listings:
            await asyncio.wait([asyncio.shield(task) for task in listings])
        specs: list[ToolSpec] = []
        names = set(taken)
        for server in servers:
            label = str(server.config["server_label"])
            for tool in server.tools:
                if not _matches_allowed(server.config.get("allowed_tools"), tool):
                    continue
                name = _unique_name(label, tool.name, names)
                names.add(name)
                specs.append(
                    ToolSpec(
                        name=name,
                        description=tool.description or "",
                        parameters=tool.input_schema,
                        server_label=label,
                        remote_name=tool.name,
                        require_approval=_needs_approval(server.config.get("require_approval"), tool),
                    )
                )
        return specs

    async def run(self, spec: ToolSpec, arguments: dict[str, Any]) -> ToolOutcome:
        server = self._servers.get(str(spec.server_label))
        if server is None:
            message = f"MCP server {spec.server_label!r} is no longer part of the session."
            return ToolOutcome(error={"type": "protocol_error", "code": -32000, "message": message})
        try:
            result = await server.connection.call_tool(str(spec.remote_name), arguments)
        except McpError as exc:
            return ToolOutcome(error=exc.wire_error())
        error = result.wire_error()
        return ToolOutcome(error=error) if error is not None else ToolOutcome(output=result.output or "")

    async def close(self) -> None:
        for label in list(self._servers):
            await self._drop(label)


def check_mcp_urls(tools: list[dict[str, Any]], allowed: list[str]) -> None:
    """Refuse an MCP server outside ``PARLEY_MCP_ALLOWED_URLS`` (when it is set): a client must
    not make the server reach into networks the operator did not open to it."""
    if not allowed:
        return
    for index, tool in enumerate(tools):
        url = str(tool.get("server_url") or "")
        if tool.get("type") == "mcp" and not any(url.startswith(prefix) for prefix in allowed):
            raise ProtocolError(
                "invalid_value",
                f"MCP server URL {url!r} is not allowed on this server (see PARLEY_MCP_ALLOWED_URLS).",
                param=f"session.tools[{index}].server_url",
            )


def _unique_name(label: str, name: str, taken: set[str]) -> str:
    if name not in taken:
        return name
    prefixed = re.sub(r"[^a-zA-Z0-9_-]", "_", f"{label}__{name}")[:64]
    return prefixed if prefixed not in taken else f"{prefixed[:40]}_{ids.new_id('t', 12)}"


def _read_only(tool: McpTool) -> bool:
    return bool((tool.annotations or {}).get("readOnlyHint"))


def _matches(tool_filter: dict[str, Any] | None, tool: McpTool) -> bool:
    if not tool_filter:
        return False
    names, read_only = tool_filter.get("tool_names"), tool_filter.get("read_only")
    if names is None and read_only is None:
        return False
    return (names is None or tool.name in names) and (read_only is None or _read_only(tool) == read_only)


def _matches_allowed(allowed: Any, tool: McpTool) -> bool:
    if allowed is None:
        return True
    if isinstance(allowed, list):
        return tool.name in allowed
    return _matches(allowed, tool) if isinstance(allowed, dict) else True


def _needs_approval(require: Any, tool: McpTool) -> bool:
    """``require_approval``: ``"always"`` (the default, as on OpenAI's service), ``"never"``, or
    filters: a tool the ``never`` filter matches runs without approval; every other one waits."""
    if require is None or require == "always":
        return True
    if require == "never":
        return False
    if isinstance(require, dict):
        return not _matches(require.get("never"), tool)
    return True
