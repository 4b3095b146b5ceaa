"""The tool calls of one response.

Function calls are for the client to make, so they are announced only when the response completes:
each as a whole (``output_item.added``, its arguments, ``.done``, ``output_item.done``), one after
another, after the model's stream ended and the arguments were checked. A response that is cancelled,
fails or is cut short shows the calls the model began as ``incomplete`` items with no arguments and
never announces them. MCP calls are Parley's to make: they run inside the response (after the same
checks), or wait for the client's approval.

With argument validation off (``PARLEY_TOOL_ARGUMENT_VALIDATION=false``) function calls stream as the
model writes them, and are still finished only when the response ends.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from parley.engines.base import ToolCallDelta
from parley.realtime.context import approved_requests
from parley.realtime.conversation import Item
from parley.realtime.mcp_output import ApprovalRequestWriter, McpCallWriter, execution_error
from parley.realtime.response_output import FunctionCallWriter, OutputTarget
from parley.realtime.tool_calls import PendingCall
from parley.realtime.toolbox import McpRunner, Toolbox, ToolSpec


class ResponseTools:
    def __init__(self, target: OutputTarget, run_mcp: McpRunner | None) -> None:
        self.target = target
        self._run_mcp = run_mcp
        self._writers: list[FunctionCallWriter | McpCallWriter] = []
        """Items already in the output: MCP calls, and function calls streamed live."""
        self.live: dict[str, FunctionCallWriter] = {}
        """Function calls streamed as written (validation off), by call id."""
        self._to_announce: list[PendingCall] = []
        """Checked function calls, announced when the response completes."""
        self.writing: dict[int, PendingCall] = {}
        """The calls of the model's current stream, not yet checked, by index."""

    async def stream_live(self, call: PendingCall, delta: ToolCallDelta) -> None:
        writer = self.live.get(call.call_id)
        if writer is None:
            writer = FunctionCallWriter(self.target, name=call.name, call_id=call.call_id)
            self.live[call.call_id] = writer
            self._writers.append(writer)
            await writer.start()
        elif call.name and not writer.name:
            writer.item.data["name"] = call.name
        await writer.push(delta.arguments)

    async def make(self, calls: list[PendingCall], toolbox: Toolbox) -> bool:
        """Take the checked calls of a step: function calls wait to be announced, MCP calls run or
        ask for approval. True when the model should go on with their results (every call was an MCP
        call that ran), False when the turn ends here."""
        self.writing = {}
        ran: list[tuple[McpCallWriter, ToolSpec]] = []
        waiting = False
        for call in calls:
            spec = toolbox.get(call.name)
            if spec is None or not spec.is_mcp:
                self._to_announce.append(call)
            elif spec.require_approval:
                assert spec.server_label is not None
                await ApprovalRequestWriter(
                    self.target,
                    name=spec.remote_name or spec.name,
                    server_label=spec.server_label,
                    arguments=call.arguments or "{}",
                ).write()
                waiting = True
            else:
                ran.append((await self._open_mcp_call(spec, call.pieces), spec))
        for writer, spec in ran:
            await self._run_mcp_call(writer, spec)
        return bool(ran) and len(ran) == len(calls) and not waiting

    async def run_approved(self, items: Iterable[Item], toolbox: Toolbox) -> None:
        """Run the MCP calls the client approved (``mcp_approval_response``) since they were asked for."""
        for request in approved_requests(items):
            spec = toolbox.mcp_spec(str(request.data["server_label"]), str(request.data["name"]))
            if spec is None:
                continue
            arguments = str(request.data.get("arguments") or "{}")
            writer = await self._open_mcp_call(spec, [arguments], request.id)
            await self._run_mcp_call(writer, spec)

    async def _open_mcp_call(
        self, spec: ToolSpec, pieces: list[str], approval_request_id: str | None = None
    ) -> McpCallWriter:
        assert spec.server_label is not None
        writer = McpCallWriter(
            self.target,
            name=spec.remote_name or spec.name,
            server_label=spec.server_label,
            approval_request_id=approval_request_id,
        )
        self._writers.append(writer)
        await writer.start()
        for piece in pieces:
            await writer.push(piece)
        await writer.arguments_done()
        return writer

    async def _run_mcp_call(self, writer: McpCallWriter, spec: ToolSpec) -> None:
        await writer.in_progress()
        try:
            arguments = json.loads(writer.arguments or "{}")
        except json.JSONDecodeError as exc:
            await writer.failed(execution_error(f"The arguments are not valid JSON: {exc.msg}."))
            return
        if self._run_mcp is None:
            await writer.failed(execution_error("MCP tools are not available in this session."))
            return
        outcome = await self._run_mcp(spec, arguments)
        if outcome.error is not None:
            await writer.failed(outcome.error)
        else:
            await writer.completed(outcome.output or "")

    async def finish(self, status: str, toolbox: Toolbox | None) -> None:
        """End every call with the response: announce the function calls if it completed."""
        item_status = "completed" if status == "completed" else "incomplete"
        for writer in self._writers:
            if isinstance(writer, FunctionCallWriter):
                await writer.done(item_status)
            elif not writer.finished:
                await writer.failed(execution_error(f"The call did not finish: the response was {status}."))
        if status == "completed":
            for call in self._to_announce:
                writer = FunctionCallWriter(self.target, name=call.name, call_id=call.call_id)
                await writer.start()
                for piece in call.pieces:
                    await writer.push(piece)
                await writer.done("completed")
            return
        for call in [*self._to_announce, *self.writing.values()]:
            spec = toolbox.get(call.name) if toolbox is not None else None
            if call.call_id in self.live or (spec is not None and spec.is_mcp):
                continue
            writer = FunctionCallWriter(self.target, name=call.name, call_id=call.call_id)
            await writer.start()
            await writer.done("incomplete")  # begun, never to be made: no arguments shown
