"""Beta dialect events ↔ GA events, one event at a time (PROTOCOL.md §2.3).

Client events are validated strictly against the beta models of the ``openai`` package
(``openai.types.beta.realtime``), then rewritten as the GA events the session engine takes. Server
events go the other way: renamed, their items, responses and sessions reshaped, and dropped when
the beta server-event union has no such event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, get_args

from openai.types.beta.realtime import (
    ConversationItemCreateEvent,
    ConversationItemDeleteEvent,
    ConversationItemRetrieveEvent,
    ConversationItemTruncateEvent,
    InputAudioBufferClearEvent,
    InputAudioBufferCommitEvent,
    RealtimeServerEvent,
    ResponseCancelEvent,
    ResponseCreateEvent,
    SessionUpdateEvent,
    TranscriptionSessionUpdate,
)
from openai.types.beta.realtime.realtime_client_event import OutputAudioBufferClear
from pydantic import BaseModel

from parley.protocol.beta_session import (
    beta_format,
    beta_modalities,
    beta_param,
    beta_voice,
    check_temperature,
    ga_format,
    ga_modalities,
    ga_session_update,
    ga_tool_choice,
    ga_tools,
    ga_transcription_session_update,
)
from parley.protocol.client_events import check_envelope
from parley.protocol.errors import ProtocolError
from parley.protocol.validation import validate

_CLIENT_MODELS: dict[str, type[BaseModel] | None] = {
    "session.update": SessionUpdateEvent,
    "transcription_session.update": TranscriptionSessionUpdate,
    "input_audio_buffer.append": None,  # same shape in GA: validated (and decoded) once, there
    "input_audio_buffer.commit": InputAudioBufferCommitEvent,
    "input_audio_buffer.clear": InputAudioBufferClearEvent,
    "output_audio_buffer.clear": OutputAudioBufferClear,
    "conversation.item.create": ConversationItemCreateEvent,
    "conversation.item.retrieve": ConversationItemRetrieveEvent,
    "conversation.item.truncate": ConversationItemTruncateEvent,
    "conversation.item.delete": ConversationItemDeleteEvent,
    "response.create": ResponseCreateEvent,
    "response.cancel": ResponseCancelEvent,
}
BETA_CLIENT_EVENT_TYPES = tuple(_CLIENT_MODELS)

BETA_SERVER_EVENT_TYPES: frozenset[str] = frozenset(
    {
        get_args(member.model_fields["type"].annotation)[0]
        for member in get_args(get_args(RealtimeServerEvent)[0])
    }
    | {"transcription_session.created"}  # sent by the beta API, though the SDK union lacks a model
)
"""Every server event a beta client can receive; anything else is not sent to it."""

SERVER_RENAMES: dict[str, str] = {
    "response.output_text.delta": "response.text.delta",
    "response.output_text.done": "response.text.done",
    "response.output_audio.delta": "response.audio.delta",
    "response.output_audio.done": "response.audio.done",
    "response.output_audio_transcript.delta": "response.audio_transcript.delta",
    "response.output_audio_transcript.done": "response.audio_transcript.done",
    "conversation.item.added": "conversation.item.created",
}
# GA content part types of assistant messages ↔ the beta names.
_GA_PART = {"text": "output_text", "audio": "output_audio"}
_BETA_PART = {ga: beta for beta, ga in _GA_PART.items()}


@dataclass(frozen=True)
class GaClientEvent:
    """A beta client event rewritten for the GA engine, plus what GA has no field for."""

    event: dict[str, Any]
    temperature: float | None = None
    """``session.update``: the session's new temperature; ``response.create``: this response's."""
    sets_temperature: bool = False
    """Whether the client sent ``temperature`` (``null`` in ``session.update`` restores the default)."""


# -- client → server ------------------------------------------------------------------------------


def to_ga_client_event(data: dict[str, Any]) -> GaClientEvent:
    """Validate one decoded beta client event and rewrite it as GA. Raises ProtocolError."""
    kind = check_envelope(data, BETA_CLIENT_EVENT_TYPES)
    model = _CLIENT_MODELS[kind]
    if model is not None:
        validate(model, data)
    if kind == "session.update":
        session = data["session"]
        temperature = check_temperature(session.get("temperature"), "session.temperature")
        return GaClientEvent(
            {**data, "session": ga_session_update(session)}, temperature, "temperature" in session
        )
    if kind == "transcription_session.update":
        return GaClientEvent(
            {**_envelope(data, "session.update"), "session": ga_transcription_session_update(data["session"])}
        )
    if kind == "conversation.item.create":
        return GaClientEvent({**data, "item": ga_item(data["item"])})
    if kind == "response.create" and data.get("response") is not None:
        response = data["response"]
        temperature = check_temperature(response.get("temperature"), "response.temperature")
        return GaClientEvent(
            {**data, "response": ga_response_params(response)}, temperature, temperature is not None
        )
    return GaClientEvent(data)


def _envelope(data: dict[str, Any], type_: str) -> dict[str, Any]:
    event = {"type": type_}
    if "event_id" in data:
        event["event_id"] = data["event_id"]
    return event


def ga_item(item: dict[str, Any]) -> dict[str, Any]:
    """A beta conversation item; assistant ``text``/``audio`` parts become ``output_text``/``output_audio``.

    Everything else is GA's shape already; what GA refuses is refused there, with the same JSON path.
    """
    content = item.get("content")
    if item.get("role") != "assistant" or not isinstance(content, list):
        return item
    parts = [{**part, "type": _GA_PART.get(part.get("type"), part.get("type"))} for part in content]
    return {**item, "content": parts}


def ga_response_params(response: dict[str, Any]) -> dict[str, Any]:
    """Beta ``response.create`` ``response`` → GA response parameters (``temperature`` aside)."""
    ga: dict[str, Any] = {}
    audio_output: dict[str, Any] = {}
    for key, value in response.items():
        if key == "modalities":
            ga["output_modalities"] = ga_modalities(value, "response.modalities")
        elif key == "voice":
            audio_output["voice"] = value
        elif key == "output_audio_format":
            audio_output["format"] = ga_format(value)
        elif key == "max_response_output_tokens":
            ga["max_output_tokens"] = value
        elif key == "tool_choice":
            ga["tool_choice"] = ga_tool_choice(value)
        elif key == "tools":
            ga["tools"] = ga_tools(value)
        elif key == "input":
            ga["input"] = [ga_item(entry) for entry in value] if isinstance(value, list) else value
        elif key != "temperature":
            ga[key] = value  # conversation, metadata, instructions
    if audio_output:
        ga["audio"] = {"output": audio_output}
    return ga


# -- server → client ------------------------------------------------------------------------------


def beta_item(item: dict[str, Any]) -> dict[str, Any]:
    content = item.get("content")
    if not isinstance(content, list):
        return item
    parts = [{**part, "type": _BETA_PART.get(part.get("type"), part.get("type"))} for part in content]
    return {**item, "content": parts}


_BETA_USAGE = {
    "input_token_details": ("cached_tokens", "text_tokens", "audio_tokens"),
    "output_token_details": ("text_tokens", "audio_tokens"),
}


def beta_usage(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    if usage is None:
        return None
    result = dict(usage)
    for key, fields in _BETA_USAGE.items():
        details = usage.get(key)
        if isinstance(details, dict):
            result[key] = {name: details[name] for name in fields if name in details}
    return result


def beta_response(response: dict[str, Any], *, temperature: float) -> dict[str, Any]:
    """A GA response object in the beta shape (``modalities``, ``voice``, ``output_audio_format``...)."""
    audio_output = (response.get("audio") or {}).get("output") or {}
    return {
        "object": "realtime.response",
        "id": response.get("id"),
        "status": response.get("status"),
        "status_details": response.get("status_details"),
        "output": [beta_item(item) for item in response.get("output", [])],
        "conversation_id": response.get("conversation_id"),
        "modalities": beta_modalities(response.get("output_modalities")),
        "voice": beta_voice(audio_output.get("voice")),
        "output_audio_format": beta_format(audio_output.get("format")),
        "temperature": temperature,
        "max_output_tokens": response.get("max_output_tokens"),
        "usage": beta_usage(response.get("usage")),
        "metadata": response.get("metadata"),
    }


def beta_error(exc: ProtocolError) -> ProtocolError:
    """An error the GA engine raised, its ``param`` (and the message quoting it) in beta names.

    Only for errors about the translated GA event: the beta validation's own errors already name
    the beta fields (and a beta client may well send a field that happens to carry a GA name).
    """
    renamed = beta_param(exc.param)
    if exc.param is not None and renamed != exc.param:
        exc.message = exc.message.replace(f"'{exc.param}'", f"'{renamed}'")
        exc.args = (exc.message,)
        exc.param = renamed
    return exc


def reshape(event: dict[str, Any]) -> dict[str, Any]:
    """The renames and item/part reshaping that need no session state."""
    type_ = SERVER_RENAMES.get(event["type"], event["type"])
    result = {**event, "type": type_}
    if isinstance(event.get("item"), dict):
        result["item"] = beta_item(event["item"])
    if isinstance(event.get("part"), dict):
        part = event["part"]
        result["part"] = {**part, "type": _BETA_PART.get(part.get("type"), part.get("type"))}
    return result
