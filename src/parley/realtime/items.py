"""Conversation items from client input, and truncation of assistant audio."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from openai.types.realtime import ConversationItem

from parley import ids
from parley.audio.pcm import AudioFormat
from parley.protocol.errors import ProtocolError
from parley.realtime.conversation import Item

_SUPPORTED_TYPES = ("message", "function_call", "function_call_output", "mcp_approval_response")


def item_from_client(item: ConversationItem, input_format: AudioFormat, *, param: str = "item") -> Item:
    """A conversation item from ``conversation.item.create`` (or ``response.input``)."""
    data: dict[str, Any] = item.model_dump(mode="json", exclude_none=True)
    if data["type"] not in _SUPPORTED_TYPES:
        raise ProtocolError(
            "unsupported_parameter",
            f"Items of type '{data['type']}' are not available yet on this server.",
            param=f"{param}.type",
        )
    data.setdefault("id", ids.item_id())
    if data["type"] == "mcp_approval_response":
        return Item(data=data)  # MCP items carry neither ``object`` nor ``status``
    data["object"] = "realtime.item"
    data["status"] = "completed"
    if data["type"] == "function_call":
        data.setdefault("call_id", ids.call_id())
    result = Item(data=data)
    for index, part in enumerate(data.get("content", [])):
        kind = part.get("type")
        if kind == "output_audio" and part.get("audio"):
            raise ProtocolError(
                "invalid_value",
                "Assistant messages cannot be created with audio; use 'transcript' or output_text.",
                param=f"{param}.content[{index}].audio",
            )
        if kind == "input_audio":
            part.setdefault("transcript", None)
            encoded = part.pop("audio", None)
            if encoded:
                try:
                    audio = base64.b64decode(encoded, validate=True)
                except (binascii.Error, ValueError):
                    raise ProtocolError(
                        "invalid_value",
                        "Invalid 'audio': expected base64-encoded audio bytes.",
                        param=f"{param}.content[{index}].audio",
                    ) from None
                result.audio[index] = bytearray(audio)
                result.audio_format = input_format
    return result


def truncate_item(item: Item, content_index: int, audio_end_ms: int) -> None:
    """Cut assistant audio at what was heard, and its transcript to the pieces fully heard."""
    content = item.data.get("content", [])
    if item.role != "assistant" or content_index >= len(content) or not item.has_audio(content_index):
        raise ProtocolError(
            "invalid_value",
            "Only assistant message items with audio can be truncated.",
            param="content_index" if item.role == "assistant" else "item_id",
        )
    if audio_end_ms < 0:
        raise ProtocolError("invalid_value", "'audio_end_ms' must not be negative.", param="audio_end_ms")
    duration = item.audio_ms(content_index)
    if audio_end_ms > duration:
        raise ProtocolError(
            "invalid_value",
            f"Audio content of {duration:.0f}ms is already shorter than {audio_end_ms}ms",
            param="audio_end_ms",
        )
    assert item.audio_format is not None
    keep = item.audio_format.bytes_for_ms(audio_end_ms)
    item.unspill()
    del item.audio[content_index][keep:]
    heard = 0
    for mark_ms, length in item.spoken_marks:
        if mark_ms <= audio_end_ms + 1e-6:
            heard = length
    part = content[content_index]
    part["transcript"] = (part.get("transcript") or "")[:heard]
    item.spoken_marks = [(ms, n) for ms, n in item.spoken_marks if n <= heard]
