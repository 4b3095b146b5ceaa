"""The beta dialect translator, server side: GA sessions, error params and server events
translated to beta. Every beta event produced is validated strictly."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from parley.config import Settings
from parley.protocol.beta_events import BETA_SERVER_EVENT_TYPES, SERVER_RENAMES
from parley.protocol.beta_session import (
    beta_param,
    beta_session,
    beta_transcription_session,
)
from parley.realtime.session import RealtimeSession
from tests.fakes import fake_engines
from tests.unit.beta_recorder import GA_ONLY_NAMES, BetaRecorder
from tests.wire import validate_beta, validate_ga

# -- GA → beta: objects ---------------------------------------------------------------------------


def _ga_session() -> dict[str, Any]:
    session = RealtimeSession(
        settings=Settings(), engines=fake_engines(), emit=lambda e: asyncio.sleep(0), model="gpt-realtime"
    )
    return session.config.wire()


def test_ga_session_becomes_the_flat_beta_session() -> None:
    session = _ga_session()
    session["audio"]["input"]["format"] = {"type": "audio/pcmu"}
    session["audio"]["output"]["format"] = {"type": "audio/pcma"}
    session["audio"]["output"]["voice"] = "ash"
    session["audio"]["input"]["transcription"] = {"model": "whisper-1", "language": None, "prompt": None}
    session["tool_choice"] = {"type": "function", "name": "f"}
    session["audio"]["input"]["noise_reduction"] = {"type": "far_field", "strength": None}
    beta = beta_session(session, temperature=None)
    assert beta["object"] == "realtime.session" and beta["id"] == session["id"]
    assert beta["modalities"] == ["text", "audio"]
    assert (beta["input_audio_format"], beta["output_audio_format"]) == ("g711_ulaw", "g711_alaw")
    assert beta["voice"] == "ash" and beta["speed"] == 1.0
    assert beta["temperature"] == 0.8
    assert beta["max_response_output_tokens"] == "inf"
    assert beta["tool_choice"] == "f"
    assert beta["input_audio_transcription"] == {"model": "whisper-1", "language": None, "prompt": None}
    assert beta["input_audio_noise_reduction"] == {"type": "far_field"}
    assert beta["turn_detection"]["type"] == "server_vad" and "idle_timeout_ms" not in beta["turn_detection"]
    assert not {"audio", "output_modalities", "max_output_tokens", "type", "include"} & set(beta)
    session["output_modalities"] = ["text"]
    session["audio"]["input"]["turn_detection"] = None
    text = beta_session(session, temperature=1.1)
    assert (text["modalities"], text["turn_detection"], text["temperature"]) == (["text"], None, 1.1)
    validate_beta({"type": "session.updated", "event_id": "e", "session": text})


def test_ga_transcription_session_becomes_the_beta_transcription_session() -> None:
    ga_session = {
        "type": "transcription",
        "object": "realtime.transcription_session",
        "id": "sess_1",
        "expires_at": 1,
        "include": None,
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": {"model": "gpt-4o-transcribe", "language": None, "prompt": None},
                "noise_reduction": None,
                "turn_detection": {"type": "server_vad", "threshold": 0.5, "idle_timeout_ms": None},
            }
        },
    }
    beta = beta_transcription_session(ga_session)
    assert beta == {
        "id": "sess_1",
        "object": "realtime.transcription_session",
        "expires_at": 1,
        "modalities": ["text"],
        "input_audio_format": "pcm16",
        "input_audio_transcription": {"model": "gpt-4o-transcribe", "language": None, "prompt": None},
        "turn_detection": {"type": "server_vad", "threshold": 0.5},
        "input_audio_noise_reduction": None,
        "include": None,
    }


@pytest.mark.parametrize(
    ("ga_param", "beta"),
    [
        ("session.audio.output.speed", "session.speed"),
        ("session.audio.output.voice", "session.voice"),
        ("session.audio.output.format", "session.output_audio_format"),
        ("session.audio.input.format.rate", "session.input_audio_format.rate"),
        ("session.audio.input.turn_detection.eagerness", "session.turn_detection.eagerness"),
        ("session.audio.input.transcription", "session.input_audio_transcription"),
        ("session.audio.input.noise_reduction.type", "session.input_audio_noise_reduction.type"),
        ("session.output_modalities", "session.modalities"),
        ("session.max_output_tokens", "session.max_response_output_tokens"),
        ("response.max_output_tokens", "response.max_response_output_tokens"),
        ("response.audio.output.voice", "response.voice"),
        ("response.output_modalities", "response.modalities"),
        ("session.tools[0].name", "session.tools[0].name"),
        ("item.content[0].type", "item.content[0].type"),
        (None, None),
    ],
)
def test_error_params_name_beta_fields(ga_param: str | None, beta: str | None) -> None:
    assert beta_param(ga_param) == beta


# -- GA → beta: events ----------------------------------------------------------------------------


def _part_event(type_: str, **fields: Any) -> dict[str, Any]:
    ids = {"response_id": "resp_1", "item_id": "item_1", "output_index": 0, "content_index": 0}
    return {"type": type_, "event_id": "event_1", **ids, **fields}


_FIELDS = {"delta": {"delta": "x"}, "text.done": {"text": "x"}, "transcript.done": {"transcript": "x"}}


@pytest.mark.parametrize(
    ("ga_type", "beta_type"), [(k, v) for k, v in SERVER_RENAMES.items() if "item" not in k]
)
def test_every_content_event_is_renamed(ga_type: str, beta_type: str) -> None:
    fields = next((f for suffix, f in _FIELDS.items() if ga_type.endswith(suffix)), {})
    event = _part_event(ga_type, **fields)
    validate_ga(event)
    rec = BetaRecorder()
    [beta] = rec.dialect.server_event(event)
    assert beta == {**event, "type": beta_type}
    validate_beta(beta)


def test_item_added_becomes_created_and_done_is_dropped() -> None:
    item = {
        "id": "item_1",
        "object": "realtime.item",
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "a"}, {"type": "output_audio", "transcript": "b"}],
    }
    dialect = BetaRecorder().dialect
    [created] = dialect.server_event(
        {"type": "conversation.item.added", "event_id": "e", "item": item, "previous_item_id": None}
    )
    assert created["type"] == "conversation.item.created"
    assert created["item"]["content"] == [{"type": "text", "text": "a"}, {"type": "audio", "transcript": "b"}]
    validate_beta(created)
    assert dialect.server_event({"type": "conversation.item.done", "event_id": "e", "item": item}) == []
    for type_ in ("conversation.item.retrieved", "response.output_item.added", "response.output_item.done"):
        extra = {} if type_ == "conversation.item.retrieved" else {"response_id": "r", "output_index": 0}
        [beta] = dialect.server_event({"type": type_, "event_id": "e", "item": item, **extra})
        assert beta["type"] == type_ and beta["item"]["content"][0]["type"] == "text"
        validate_beta(beta)


@pytest.mark.parametrize(
    "event",
    [
        {
            "type": "input_audio_buffer.timeout_triggered",
            "audio_start_ms": 0,
            "audio_end_ms": 1,
            "item_id": "i",
        },
        {"type": "conversation.item.input_audio_transcription.segment", "item_id": "i", "text": "x"},
        {"type": "input_audio_buffer.dtmf_event_received", "event": "1", "received_at": 1},
        {"type": "mcp_list_tools.in_progress", "item_id": "i"},
        {"type": "response.mcp_call.completed", "item_id": "i", "output_index": 0},
        {"type": "something.new"},
    ],
)
def test_events_the_beta_union_lacks_are_dropped(event: dict[str, Any]) -> None:
    assert BetaRecorder().dialect.server_event({**event, "event_id": "e"}) == []


@pytest.mark.parametrize(
    "event",
    [
        {"type": "input_audio_buffer.committed", "item_id": "i", "previous_item_id": None},
        {"type": "input_audio_buffer.cleared"},
        {"type": "input_audio_buffer.speech_started", "audio_start_ms": 5, "item_id": "i"},
        {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 9, "item_id": "i"},
        {"type": "output_audio_buffer.started", "response_id": "r"},
        {"type": "conversation.item.deleted", "item_id": "i"},
        {"type": "conversation.item.truncated", "item_id": "i", "content_index": 0, "audio_end_ms": 5},
        {
            "type": "conversation.item.input_audio_transcription.delta",
            "item_id": "i",
            "content_index": 0,
            "delta": "a",
        },
        {
            "type": "conversation.item.input_audio_transcription.completed",
            "item_id": "i",
            "content_index": 0,
            "transcript": "a",
            "usage": {"type": "duration", "seconds": 1.0},
        },
        {
            "type": "rate_limits.updated",
            "rate_limits": [{"name": "requests", "limit": 1, "remaining": 0, "reset_seconds": 1.0}],
        },
        {
            "type": "response.function_call_arguments.delta",
            "response_id": "r",
            "item_id": "i",
            "output_index": 0,
            "call_id": "c",
            "delta": "{",
        },
    ],
)
def test_events_of_the_same_shape_go_out_unchanged(event: dict[str, Any]) -> None:
    event = {**event, "event_id": "e"}
    assert BetaRecorder().dialect.server_event(event) == [event]
    validate_beta(event)


def test_every_beta_server_event_type_is_in_the_union_or_transcription_created() -> None:
    assert "transcription_session.created" in BETA_SERVER_EVENT_TYPES
    assert not [t for t in BETA_SERVER_EVENT_TYPES if t.startswith(GA_ONLY_NAMES)]
