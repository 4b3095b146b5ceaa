"""The tools one response may call: the function tools of the session (or of ``response.create``)
and the tools listed by the session's MCP servers, under the names the language model sees."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from parley.engines.base import FunctionTool


@dataclass(frozen=True)
class ToolSpec:
    name: str
    """The name the language model calls the tool by."""
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    """The JSON Schema of the arguments."""
    server_label: str | None = None
    """Set for a tool of an MCP server: Parley runs its calls."""
    remote_name: str | None = None
    """The tool's name on its MCP server (``name`` may carry a prefix to keep names unique)."""
    require_approval: bool = False
    """An MCP tool whose calls wait for the client's ``mcp_approval_response``."""

    @property
    def is_mcp(self) -> bool:
        return self.server_label is not None


class Toolbox:
    def __init__(self, specs: Iterable[ToolSpec] = ()) -> None:
        self._specs: dict[str, ToolSpec] = {}
        for spec in specs:
            self._specs.setdefault(spec.name, spec)

    def get(self, name: str) -> ToolSpec | None:
        return self._specs.get(name)

    def __len__(self) -> int:
        return len(self._specs)

    def for_model(self) -> list[FunctionTool]:
        return [FunctionTool(s.name, s.description, s.parameters) for s in self._specs.values()]

    def mcp_spec(self, server_label: str, remote_name: str) -> ToolSpec | None:
        for spec in self._specs.values():
            if spec.server_label == server_label and spec.remote_name == remote_name:
                return spec
        return None

    def resolve_choice(self, choice: Any) -> Any:
        """``tool_choice`` with an MCP tool named as the model sees it; an MCP choice without a
        name requires some call."""
        if isinstance(choice, dict) and choice.get("type") == "mcp":
            name = choice.get("name")
            spec = self.mcp_spec(str(choice.get("server_label")), str(name)) if name else None
            return {"type": "function", "name": spec.name if spec else name} if name else "required"
        return choice

    def names(self, server_label: str | None = None) -> list[str]:
        return [s.name for s in self._specs.values() if server_label in (None, s.server_label)]


def function_specs(tools: Iterable[dict[str, Any]]) -> list[ToolSpec]:
    return [
        ToolSpec(str(t["name"]), t.get("description") or "", t.get("parameters") or {})
        for t in tools
        if t.get("type", "function") == "function"
    ]


@dataclass(frozen=True)
class ToolOutcome:
    """What running an MCP tool call gave: its output, or an error message."""

    output: str | None = None
    error: dict[str, Any] | None = None
    """The ``mcp_call`` item's ``error``: ``{type: tool_execution_error, message}`` (the tool said it
    failed), or ``protocol_error`` / ``http_error`` with a ``code``."""


McpRunner = Callable[[ToolSpec, dict[str, Any]], Awaitable[ToolOutcome]]
"""Runs one call of an MCP tool (the session's MCP servers)."""
