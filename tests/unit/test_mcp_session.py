"""The session's MCP rules without a network: allowed URLs, tool filters, approvals, names."""

from __future__ import annotations

import json
from typing import Any

from parley.config import Settings
from parley.realtime.mcp_tools import _matches_allowed, _needs_approval, _unique_name
from parley.tools.mcp import McpTool
from tests.fakes import Recorder

LOOKUP = McpTool("lookup_order", None, {"type": "object"}, {"readOnlyHint": True})
REFUND = McpTool("issue_refund", None, {"type": "object"}, {"destructiveHint": True})


def mcp_tool(url: str) -> dict[str, Any]:
    return {"type": "mcp", "server_label": "orders", "server_url": url, "require_approval": "never"}


async def test_an_mcp_url_outside_the_allowed_prefixes_is_refused_and_nothing_changes() -> None:
    rec = Recorder(settings=Settings(mcp_allowed_urls=["https://tools.example.com/"]))
    await rec.session.start()
    update = {"type": "session.update", "event_id": "u1", "session": {"type": "realtime"}}
    update["session"]["tools"] = [mcp_tool("http://169.254.169.254/latest")]  # type: ignore[index]
    await rec.session.handle_text(json.dumps(update))
    error = await rec.wait_for("error")
    assert error["error"]["code"] == "invalid_value"
    assert error["error"]["param"] == "session.tools[0].server_url" and error["error"]["event_id"] == "u1"
    assert rec.session.config.tools == [] and "session.updated" not in rec.types()
    await rec.session.close()


def test_allowed_tools_filters() -> None:
    assert _matches_allowed(None, REFUND)
    assert _matches_allowed(["lookup_order"], LOOKUP) and not _matches_allowed(["lookup_order"], REFUND)
    assert _matches_allowed({"read_only": True}, LOOKUP) and not _matches_allowed({"read_only": True}, REFUND)
    assert _matches_allowed({"tool_names": ["issue_refund"]}, REFUND)


def test_approval_defaults_to_always_and_never_filters_exempt() -> None:
    assert _needs_approval(None, LOOKUP) and _needs_approval("always", LOOKUP)
    assert not _needs_approval("never", REFUND)
    read_only_free = {"never": {"read_only": True}}
    assert not _needs_approval(read_only_free, LOOKUP) and _needs_approval(read_only_free, REFUND)
    named = {"never": {"tool_names": ["issue_refund"]}, "always": {"tool_names": ["lookup_order"]}}
    assert not _needs_approval(named, REFUND) and _needs_approval(named, LOOKUP)


def test_clashing_tool_names_get_the_server_label() -> None:
    assert _unique_name("orders", "lookup", set()) == "lookup"
    assert _unique_name("orders", "lookup", {"lookup"}) == "orders__lookup"
    third = _unique_name("orders", "lookup", {"lookup", "orders__lookup"})
    assert third.startswith("orders__lookup_") and len(third) <= 64
