"""Realtime (GA) events several test modules share: client events to send to a session, and the
server event types a text-only response sends, in order."""

from __future__ import annotations

from typing import Any

USER_HI: dict[str, Any] = {
    "type": "conversation.item.create",
    "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
}
TEXT_ONLY: dict[str, Any] = {
    "type": "session.update",
    "session": {"type": "realtime", "output_modalities": ["text"]},
}
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
WITH_WEATHER: dict[str, Any] = {
    "type": "session.update",
    "session": {"type": "realtime", "tools": [WEATHER_TOOL]},
}

TEXT_TURN = [
    "response.created",
    "rate_limits.updated",
    "response.output_item.added",
    "conversation.item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "conversation.item.done",
    "response.done",
]
"""The server events of a text-only response, from ``response.created`` on."""
