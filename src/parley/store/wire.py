"""Realtime wire objects (GA shape) read into store rows: items, usage, formats, config."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

_SECRET_TOOL_FIELDS = ("authorization", "headers")


def new_session_row(
    session_id: str | None, key_id: str | None, transport: str, model: str | None, now: datetime
) -> dict[str, Any]:
    return {
        "id": session_id,
        "key_id": key_id,
        "transport": transport,
        "model": model,
        "session_type": None,
        "started_at": now,
        "updated_at": now,
        "ended_at": None,
        "end_reason": None,
        "config": None,
        "audio_in_seconds": 0.0,
        "audio_out_seconds": 0.0,
        **dict.fromkeys(("input_tokens", "output_tokens", "total_tokens"), 0),
    }


def new_item_row(item_id: str, seq: int, now: datetime) -> dict[str, Any]:
    return {
        "id": item_id,
        "seq": seq,
        "previous_item_id": None,
        "response_id": None,
        "in_conversation": False,
        "type": "message",
        **dict.fromkeys(("role", "status", "text", "transcript", "name", "call_id")),
        **dict.fromkeys(("arguments", "output", "server_label", "extra", "truncated_audio_end_ms")),
        "created_at": now,
        "deleted_at": None,
    }


def new_response_row(response_id: str, seq: int, now: datetime) -> dict[str, Any]:
    return {
        "id": response_id,
        "seq": seq,
        "in_conversation": True,
        "input_item_id": None,
        "status": "in_progress",
        "status_reason": None,
        "created_at": now,
        "done_at": None,
        "latency_ms": None,
        "first_output_ms": None,
        **usage_columns(None),
    }


def item_columns(item: dict[str, Any]) -> dict[str, Any]:
    """The columns of an item that its wire form sets; texts only when present (``None`` = absent)."""
    content = [p for p in item.get("content") or [] if isinstance(p, dict)]
    texts = [p["text"] for p in content if isinstance(p.get("text"), str)]
    transcripts = [p["transcript"] for p in content if isinstance(p.get("transcript"), str)]
    columns: dict[str, Any] = {
        "type": item.get("type") or "message",
        "role": item.get("role"),
        "status": item.get("status"),
        "name": item.get("name"),
        "call_id": item.get("call_id"),
        "arguments": item.get("arguments"),
        "output": item.get("output"),
        "server_label": item.get("server_label"),
        "text": "".join(texts) if texts else None,
        "transcript": "".join(transcripts) if transcripts else None,
    }
    extra = item_extra(item)
    if extra:
        columns["extra"] = extra
    return columns


def item_extra(item: dict[str, Any]) -> dict[str, Any]:
    """Type-specific fields worth keeping (MCP outcomes, approvals, images) without any bytes."""
    extra: dict[str, Any] = {}
    kind = item.get("type")
    if kind == "mcp_list_tools":
        extra["tools"] = [t.get("name") for t in item.get("tools") or [] if isinstance(t, dict)]
    elif kind == "mcp_call" and item.get("error") is not None:
        extra["error"] = item["error"]
    elif kind == "mcp_approval_request":
        extra["approval_request"] = True
    elif kind == "mcp_approval_response":
        extra.update(
            approval_request_id=item.get("approval_request_id"),
            approve=item.get("approve"),
            reason=item.get("reason"),
        )
    images = sum(
        1 for p in item.get("content") or [] if isinstance(p, dict) and p.get("type") == "input_image"
    )
    if images:
        extra["images"] = images
    return extra


def usage_columns(usage: dict[str, Any] | None) -> dict[str, int]:
    usage = usage or {}
    given = usage.get("input_token_details") or {}
    made = usage.get("output_token_details") or {}
    return {
        "input_tokens": int(usage.get("input_tokens") or 0),
        "output_tokens": int(usage.get("output_tokens") or 0),
        "total_tokens": int(usage.get("total_tokens") or 0),
        "input_text_tokens": int(given.get("text_tokens") or 0),
        "input_audio_tokens": int(given.get("audio_tokens") or 0),
        "cached_tokens": int(given.get("cached_tokens") or 0),
        "output_text_tokens": int(made.get("text_tokens") or 0),
        "output_audio_tokens": int(made.get("audio_tokens") or 0),
    }


def status_reason(details: dict[str, Any] | None) -> str | None:
    """``turn_detected``, ``client_cancelled``, ``max_output_tokens``, an error code…"""
    if not details:
        return None
    error = details.get("error") or {}
    reason = details.get("reason") or error.get("code") or details.get("type")
    return str(reason) if reason is not None else None


def audio_format(fmt: dict[str, Any] | None) -> tuple[str, float]:
    """A format's label (``audio/pcm;rate=24000``, ``audio/pcmu``…) and its bytes per millisecond."""
    kind = (fmt or {}).get("type") or "audio/pcm"
    if kind in ("audio/pcmu", "audio/pcma"):
        return kind, 8.0
    rate = int((fmt or {}).get("rate") or 24000)
    return f"audio/pcm;rate={rate}", rate * 2 / 1000


def session_formats(session: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    audio = session.get("audio") or {}
    return (audio.get("input") or {}).get("format"), (audio.get("output") or {}).get("format")


def base64_size(data: str) -> int:
    """Bytes that a base64 string decodes to, without decoding it."""
    data = data.strip()
    padding = len(data) - len(data.rstrip("="))
    return max(0, len(data) * 3 // 4 - padding)


def safe_config(session: dict[str, Any]) -> dict[str, Any]:
    """A copy of a session config without credentials (MCP ``authorization`` and ``headers``)."""
    config = copy.deepcopy(session)
    config.pop("client_secret", None)
    for tool in config.get("tools") or []:
        if isinstance(tool, dict) and tool.get("type") == "mcp":
            for field in _SECRET_TOOL_FIELDS:
                tool.pop(field, None)
    return config
