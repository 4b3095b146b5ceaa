"""Builders for the GA server events of MCP tools: listing a server's tools and running its calls."""

from __future__ import annotations

from parley.protocol.server_events import Event, _event


def mcp_list_tools(state: str, item_id: str) -> Event:
    """``mcp_list_tools.in_progress`` / ``.completed`` / ``.failed``."""
    return _event(f"mcp_list_tools.{state}", item_id=item_id)


def mcp_call_arguments_delta(response_id: str, item_id: str, output_index: int, delta: str) -> Event:
    return _event(
        "response.mcp_call_arguments.delta",
        response_id=response_id,
        item_id=item_id,
        output_index=output_index,
        delta=delta,
    )


def mcp_call_arguments_done(response_id: str, item_id: str, output_index: int, arguments: str) -> Event:
    return _event(
        "response.mcp_call_arguments.done",
        response_id=response_id,
        item_id=item_id,
        output_index=output_index,
        arguments=arguments,
    )


def mcp_call(state: str, item_id: str, output_index: int) -> Event:
    """``response.mcp_call.in_progress`` / ``.completed`` / ``.failed``."""
    return _event(f"response.mcp_call.{state}", item_id=item_id, output_index=output_index)
