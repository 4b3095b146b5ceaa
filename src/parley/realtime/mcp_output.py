"""Output items of MCP tools in a response: an ``mcp_call`` that Parley runs, and an
``mcp_approval_request`` that waits for the client's ``mcp_approval_response``."""

from __future__ import annotations

from typing import Any

from parley import ids
from parley.protocol import mcp_events
from parley.protocol.server_events import Event
from parley.realtime.conversation import Item
from parley.realtime.response_output import ArgumentsWriter, OutputTarget


class McpCallWriter(ArgumentsWriter):
    """``output_item.added``, arguments (delta, done), ``in_progress``, then ``completed`` with the
    output or ``failed`` with the error, and ``output_item.done``; each exactly once."""

    def __init__(
        self, target: OutputTarget, *, name: str, server_label: str, approval_request_id: str | None = None
    ) -> None:
        data: dict[str, Any] = {
            "id": ids.item_id(),
            "type": "mcp_call",
            "name": name,
            "server_label": server_label,
            "arguments": "",
        }
        if approval_request_id is not None:
            data["approval_request_id"] = approval_request_id
        super().__init__(target, Item(data=data))
        self.running = False
        self.finished = False

    def _arguments_delta(self, delta: str) -> Event:
        return mcp_events.mcp_call_arguments_delta(
            self.target.response_id, self.item.id, self._output_index, delta
        )

    async def arguments_done(self) -> None:
        await self.target.emit(
            mcp_events.mcp_call_arguments_done(
                self.target.response_id, self.item.id, self._output_index, self.arguments
            )
        )

    async def in_progress(self) -> None:
        self.running = True
        await self.target.emit(mcp_events.mcp_call("in_progress", self.item.id, self._output_index))

    async def completed(self, output: str) -> None:
        self.item.data["output"] = output
        await self.target.emit(mcp_events.mcp_call("completed", self.item.id, self._output_index))
        await self._done()

    async def failed(self, error: dict[str, Any]) -> None:
        """``error`` is the item's error object (``type``, ``message``, and ``code`` but for
        ``tool_execution_error``)."""
        self.item.data["error"] = error
        if self.running:
            await self.target.emit(mcp_events.mcp_call("failed", self.item.id, self._output_index))
        await self._done()

    async def _done(self) -> None:
        self.running = False
        self.finished = True
        await self.target.done(self.item, self._output_index)


def execution_error(message: str) -> dict[str, Any]:
    return {"type": "tool_execution_error", "message": message}


class ApprovalRequestWriter:
    """An ``mcp_approval_request`` item: added and done at once, with the call's arguments."""

    def __init__(self, target: OutputTarget, *, name: str, server_label: str, arguments: str) -> None:
        self.target = target
        self.item = Item(
            data={
                "id": ids.item_id(),
                "type": "mcp_approval_request",
                "name": name,
                "server_label": server_label,
                "arguments": arguments,
            }
        )

    async def write(self) -> None:
        index = await self.target.add(self.item)
        await self.target.done(self.item, index)
