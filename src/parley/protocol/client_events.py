"""Parsing of client events (GA dialect) into the ``openai`` package's typed models."""

from __future__ import annotations

import binascii
import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from openai.types.realtime import (
    ConversationItem,
    ConversationItemCreateEvent,
    ConversationItemDeleteEvent,
    ConversationItemRetrieveEvent,
    ConversationItemTruncateEvent,
    InputAudioBufferAppendEvent,
    InputAudioBufferClearEvent,
    InputAudioBufferCommitEvent,
    OutputAudioBufferClearEvent,
    ResponseCancelEvent,
    ResponseCreateEvent,
    SessionUpdateEvent,
)
from pydantic import BaseModel

from parley.protocol.errors import ProtocolError, invalid_value, missing_parameter
from parley.protocol.validation import json_path, validate

MAX_APPEND_BYTES = 15 * 1024 * 1024
"""Decoded audio per ``input_audio_buffer.append`` (PROTOCOL.md: at most 15 MiB per event)."""

_MODELS: dict[str, type[BaseModel]] = {
    "session.update": SessionUpdateEvent,
    "input_audio_buffer.append": InputAudioBufferAppendEvent,
    "input_audio_buffer.commit": InputAudioBufferCommitEvent,
    "input_audio_buffer.clear": InputAudioBufferClearEvent,
    "output_audio_buffer.clear": OutputAudioBufferClearEvent,
    "conversation.item.create": ConversationItemCreateEvent,
    "conversation.item.retrieve": ConversationItemRetrieveEvent,
    "conversation.item.truncate": ConversationItemTruncateEvent,
    "conversation.item.delete": ConversationItemDeleteEvent,
    "response.create": ResponseCreateEvent,
    "response.cancel": ResponseCancelEvent,
}

CLIENT_EVENT_TYPES = tuple(_MODELS)


@dataclass(frozen=True)
class ItemReference:
    """``{"type": "item_reference", "id": ...}`` in ``response.create`` ``input``."""

    id: str


ResponseInput = list[ConversationItem | ItemReference]


@dataclass(frozen=True)
class ParsedResponseCreate:
    event: ResponseCreateEvent
    input: ResponseInput | None
    """The parsed ``response.input``; None when absent (the conversation is the context)."""


@dataclass(frozen=True)
class ParsedAppend:
    event_id: str | None
    audio: bytes


ClientEvent = BaseModel | ParsedResponseCreate | ParsedAppend


def event_id_of(raw: Any) -> str | None:
    if isinstance(raw, dict):
        value = raw.get("event_id")
        return value if isinstance(value, str) else None
    return None


def decode_json(text: str | bytes) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError("invalid_json", f"The event is not valid JSON: {exc}.") from None
    if not isinstance(data, dict):
        raise ProtocolError("invalid_event", "An event must be a JSON object.")
    return data


def parse_client_event(data: dict[str, Any]) -> ClientEvent:
    """Validate one decoded client event. Raises ProtocolError (with the client's event_id)."""
    client_event_id = event_id_of(data)
    try:
        return _parse(data)
    except ProtocolError as exc:
        raise exc.with_event_id(client_event_id) from None


def check_envelope(data: dict[str, Any], supported: Collection[str]) -> str:
    """The event's ``type``, once it is one of ``supported`` and ``event_id`` (if any) is a string."""
    kind = data.get("type")
    if kind is None:
        raise ProtocolError("invalid_event", "The 'type' field is missing.", param="type")
    if not isinstance(kind, str) or kind not in supported:
        listed = ", ".join(f"'{t}'" for t in supported)
        raise ProtocolError(
            "invalid_value",
            f"Invalid value: '{kind}'. Supported values are: {listed}.",
            param="type",
        )
    if "event_id" in data and not isinstance(data["event_id"], str):
        raise ProtocolError(
            "invalid_type", "Invalid type for 'event_id': expected a string.", param="event_id"
        )
    return kind


def _parse(data: dict[str, Any]) -> ClientEvent:
    kind = check_envelope(data, CLIENT_EVENT_TYPES)
    if kind == "input_audio_buffer.append":
        return _parse_append(data)
    if kind == "response.create":
        return _parse_response_create(data)
    if kind == "session.update":
        _check_session_type(data)
    event: BaseModel = validate(_MODELS[kind], data)
    return event


def _check_session_type(data: dict[str, Any]) -> None:
    session = data.get("session")
    if isinstance(session, dict) and "type" not in session:
        raise missing_parameter("session.type")


def _parse_append(data: dict[str, Any]) -> ParsedAppend:
    event: InputAudioBufferAppendEvent = validate(InputAudioBufferAppendEvent, data)
    too_large = ProtocolError(
        "invalid_value",
        f"Audio of one input_audio_buffer.append event must be at most {MAX_APPEND_BYTES} bytes.",
        param="audio",
    )
    encoded = event.audio
    if len(encoded) > (MAX_APPEND_BYTES + 2) // 3 * 4 + 4:  # refuse before decoding a huge string
        raise too_large
    try:
        audio = binascii.a2b_base64(encoded, strict_mode=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(
            "invalid_value", "Invalid 'audio': expected base64-encoded audio bytes.", param="audio"
        ) from None
    if len(audio) > MAX_APPEND_BYTES:
        raise too_large
    return ParsedAppend(event_id=event.event_id, audio=audio)


def _parse_response_create(data: dict[str, Any]) -> ParsedResponseCreate:
    response = data.get("response")
    raw_input = None
    if isinstance(response, dict) and "input" in response:
        raw_input = response["input"]
        data = {**data, "response": {k: v for k, v in response.items() if k != "input"}}
    event: ResponseCreateEvent = validate(ResponseCreateEvent, data)
    parsed_input: ResponseInput | None = None
    if raw_input is not None:
        if not isinstance(raw_input, list):
            raise ProtocolError(
                "invalid_type",
                "Invalid type for 'response.input': expected an array.",
                param="response.input",
            )
        parsed_input = [_parse_input_entry(entry, index) for index, entry in enumerate(raw_input)]
    _check_response_params(event)
    return ParsedResponseCreate(event=event, input=parsed_input)


def _parse_input_entry(entry: Any, index: int) -> ConversationItem | ItemReference:
    path: list[str | int] = ["response", "input", index]
    if isinstance(entry, dict) and entry.get("type") == "item_reference":
        ref_id = entry.get("id")
        if not isinstance(ref_id, str):
            raise missing_parameter(json_path([*path, "id"]))
        extra = set(entry) - {"type", "id"}
        if extra:
            raise ProtocolError(
                "unknown_parameter",
                f"Unknown parameter: '{json_path([*path, sorted(extra)[0]])}'.",
                param=json_path([*path, sorted(extra)[0]]),
            )
        return ItemReference(ref_id)
    item: ConversationItem = validate(ConversationItem, entry, path)
    return item


def _check_response_params(event: ResponseCreateEvent) -> None:
    response = event.response
    if response is None:
        return
    if response.conversation not in (None, "auto", "none"):
        raise invalid_value(
            "response.conversation", "only 'auto' (the session's conversation) and 'none' are supported."
        )
    metadata = response.metadata or {}
    if len(metadata) > 16:
        raise invalid_value("response.metadata", "at most 16 key-value pairs are allowed.")
    for key, value in metadata.items():
        if len(key) > 64 or not isinstance(value, str) or len(value) > 512:
            raise invalid_value(
                f"response.metadata.{key}",
                "keys are at most 64 characters and values strings of at most 512.",
            )
    if response.output_modalities is not None and response.output_modalities not in (["audio"], ["text"]):
        raise invalid_value("response.output_modalities", "use either ['audio'] or ['text'].")
    limit = response.max_output_tokens
    if isinstance(limit, int) and not 1 <= limit <= 4096:
        raise ProtocolError(
            "integer_above_max_value" if limit > 4096 else "integer_below_min_value",
            "Invalid 'response.max_output_tokens': expected an integer between 1 and 4096, or 'inf'.",
            param="response.max_output_tokens",
        )
