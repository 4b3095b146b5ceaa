"""The beta dialect translator, client side: which connections speak beta, and beta client events
(sessions, items, responses) translated to GA. Every GA event produced is validated."""

from __future__ import annotations

from typing import Any

import pytest

from parley.protocol.beta import beta_requested, beta_subprotocol
from parley.protocol.beta_events import to_ga_client_event
from parley.protocol.client_events import parse_client_event
from parley.protocol.errors import ProtocolError


def ga(event: dict[str, Any]) -> dict[str, Any]:
    """A beta client event translated to GA; the result must be a valid GA client event."""
    translated = to_ga_client_event(event).event
    parse_client_event(translated)
    return translated


def refused(event: dict[str, Any]) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        to_ga_client_event(event)
    return caught.value


# -- connection selection -------------------------------------------------------------------------


def test_beta_is_chosen_by_header_or_subprotocol() -> None:
    assert beta_requested("realtime=v1", [])
    assert beta_requested("assistants=v2, realtime=v1", [])
    assert beta_requested("", ["realtime", "openai-insecure-api-key.k", "openai-beta.realtime-v1"])
    assert not beta_requested("", ["realtime"])
    assert not beta_requested("assistants=v2", [])
    assert beta_subprotocol(["openai-insecure-api-key.k", "openai-beta.realtime-v1", "realtime"]) == (
        "realtime",
    )
    assert beta_subprotocol(["openai-beta.realtime-v1"]) == ("openai-beta.realtime-v1",)
    assert beta_subprotocol([]) == ()


# -- client → GA: session -------------------------------------------------------------------------


def test_flat_session_update_becomes_the_nested_ga_session() -> None:
    tool = {"type": "function", "name": "f", "description": "d", "parameters": {"type": "object"}}
    event = {
        "type": "session.update",
        "event_id": "c1",
        "session": {
            "modalities": ["text", "audio"],
            "instructions": "be brief",
            "voice": "ash",
            "input_audio_format": "g711_ulaw",
            "output_audio_format": "g711_alaw",
            "input_audio_transcription": {"model": "whisper-1", "language": "en"},
            "input_audio_noise_reduction": {"type": "near_field"},
            "turn_detection": {"type": "server_vad", "threshold": 0.6, "silence_duration_ms": 400},
            "tools": [tool],
            "tool_choice": "required",
            "temperature": 0.9,
            "max_response_output_tokens": 300,
            "speed": 1.2,
            "tracing": "auto",
        },
    }
    translated = to_ga_client_event(event)
    assert translated.temperature == 0.9 and translated.sets_temperature
    assert translated.event == {
        "type": "session.update",
        "event_id": "c1",
        "session": {
            "type": "realtime",
            "output_modalities": ["audio"],
            "instructions": "be brief",
            "tools": [tool],
            "tool_choice": "required",
            "max_output_tokens": 300,
            "tracing": "auto",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcmu"},
                    "transcription": {"model": "whisper-1", "language": "en"},
                    "noise_reduction": {"type": "near_field"},
                    "turn_detection": {"type": "server_vad", "threshold": 0.6, "silence_duration_ms": 400},
                },
                "output": {"format": {"type": "audio/pcma"}, "voice": "ash", "speed": 1.2},
            },
        },
    }
    parse_client_event(translated.event)


@pytest.mark.parametrize(
    ("beta", "expected"),
    [
        ({"voice": "coral"}, {"audio": {"output": {"voice": "coral"}}}),
        (
            {"input_audio_format": "pcm16"},
            {"audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}}}},
        ),
        ({"output_audio_format": "g711_ulaw"}, {"audio": {"output": {"format": {"type": "audio/pcmu"}}}}),
        ({"modalities": ["text"]}, {"output_modalities": ["text"]}),
        ({"modalities": ["audio", "text"]}, {"output_modalities": ["audio"]}),
        ({"turn_detection": None}, {"audio": {"input": {"turn_detection": None}}}),
        ({"input_audio_transcription": None}, {"audio": {"input": {"transcription": None}}}),
        ({"input_audio_noise_reduction": None}, {"audio": {"input": {"noise_reduction": None}}}),
        ({"instructions": ""}, {"instructions": ""}),
        ({"tools": []}, {"tools": []}),
        ({"tool_choice": "get_weather"}, {"tool_choice": {"type": "function", "name": "get_weather"}}),
        ({"tools": [{"name": "f"}]}, {"tools": [{"name": "f", "type": "function"}]}),
        ({"max_response_output_tokens": "inf"}, {"max_output_tokens": "inf"}),
        (
            {"turn_detection": {"silence_duration_ms": 300}},
            {"audio": {"input": {"turn_detection": {"silence_duration_ms": 300, "type": "server_vad"}}}},
        ),
        (
            {"turn_detection": {"type": "semantic_vad", "eagerness": "high", "threshold": None}},
            {"audio": {"input": {"turn_detection": {"type": "semantic_vad", "eagerness": "high"}}}},
        ),
        ({"temperature": 0.7}, {}),
        ({}, {}),
    ],
)
def test_session_update_carries_only_what_was_sent(beta: dict[str, Any], expected: dict[str, Any]) -> None:
    assert ga({"type": "session.update", "session": beta})["session"] == {"type": "realtime", **expected}


def test_session_temperature_range_and_null() -> None:
    low = refused({"type": "session.update", "session": {"temperature": 0.5}})
    assert (low.code, low.param) == ("decimal_below_min_value", "session.temperature")
    high = refused({"type": "session.update", "session": {"temperature": 1.3}})
    assert (high.code, high.param) == ("decimal_above_max_value", "session.temperature")
    for edge in (0.6, 1.2):
        assert (
            to_ga_client_event({"type": "session.update", "session": {"temperature": edge}}).temperature
            == edge
        )
    reset = to_ga_client_event({"type": "session.update", "session": {"temperature": None}})
    assert reset.sets_temperature and reset.temperature is None
    untouched = to_ga_client_event({"type": "session.update", "session": {"voice": "ash"}})
    assert not untouched.sets_temperature


@pytest.mark.parametrize(
    ("event", "code", "param"),
    [
        ({"event_id": "x"}, "invalid_event", "type"),
        ({"type": "session.create"}, "invalid_value", "type"),
        ({"type": "response.create", "event_id": 5}, "invalid_type", "event_id"),
        ({"type": "session.update", "session": {"bogus": 1}}, "unknown_parameter", "session.bogus"),
        ({"type": "session.update", "session": {"type": "realtime"}}, "unknown_parameter", "session.type"),
        (
            {"type": "session.update", "session": {"output_modalities": ["text"]}},
            "unknown_parameter",
            "session.output_modalities",
        ),
        ({"type": "session.update", "session": {"include": ["x"]}}, "unknown_parameter", "session.include"),
        (
            {"type": "session.update", "session": {"input_audio_format": "opus"}},
            "invalid_value",
            "session.input_audio_format",
        ),
        (
            {"type": "session.update", "session": {"modalities": ["video"]}},
            "invalid_value",
            "session.modalities[0]",
        ),
        ({"type": "session.update", "session": {"modalities": []}}, "invalid_value", "session.modalities"),
        (
            {"type": "session.update", "session": {"modalities": ["text", "text"]}},
            "invalid_value",
            "session.modalities",
        ),
        (
            {"type": "session.update", "session": {"turn_detection": {"idle_timeout_ms": 5}}},
            "unknown_parameter",
            "session.turn_detection.idle_timeout_ms",
        ),
        (
            {"type": "session.update", "session": {"temperature": "hot"}},
            "invalid_type",
            "session.temperature",
        ),
        ({"type": "session.update"}, "missing_required_parameter", "session"),
        (
            {"type": "conversation.item.create", "item": {"type": "message", "role": "robot"}},
            "invalid_value",
            "item.role",
        ),
        (
            {
                "type": "conversation.item.create",
                "item": {"type": "message", "content": [{"type": "output_text"}]},
            },
            "invalid_value",
            "item.content[0].type",
        ),
        (
            {"type": "response.create", "response": {"output_modalities": ["text"]}},
            "unknown_parameter",
            "response.output_modalities",
        ),
        (
            {"type": "response.create", "response": {"temperature": 2.0}},
            "decimal_above_max_value",
            "response.temperature",
        ),
        (
            {"type": "response.create", "response": {"modalities": ["audio", "audio"]}},
            "invalid_value",
            "response.modalities",
        ),
        (
            {"type": "conversation.item.truncate", "item_id": "i", "content_index": 0},
            "missing_required_parameter",
            "audio_end_ms",
        ),
        (
            {
                "type": "transcription_session.update",
                "session": {"input_audio_transcription": {"model": "x"}},
            },
            "invalid_value",
            "session.input_audio_transcription.model",
        ),
    ],
)
def test_beta_client_events_are_validated_strictly(event: dict[str, Any], code: str, param: str) -> None:
    error = refused(event)
    assert (error.code, error.param) == (code, param), error.message
    assert error.message


# -- client → GA: items and responses -------------------------------------------------------------


def test_item_content_types_become_ga_names() -> None:
    assistant = {"type": "message", "role": "assistant", "content": [{"type": "text", "text": "Hi."}]}
    assert ga({"type": "conversation.item.create", "item": assistant})["item"]["content"] == [
        {"type": "output_text", "text": "Hi."}
    ]
    spoken = {"type": "message", "role": "assistant", "content": [{"type": "audio", "transcript": "Hi."}]}
    assert ga({"type": "conversation.item.create", "item": spoken})["item"]["content"] == [
        {"type": "output_audio", "transcript": "Hi."}
    ]
    user = {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "a"}, {"type": "input_audio", "audio": "AAAA"}],
    }
    system = {"type": "message", "role": "system", "content": [{"type": "input_text", "text": "rules"}]}
    call = {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}
    output = {"type": "function_call_output", "call_id": "c", "output": "42"}
    for item in (user, system, call, output):
        event = {
            "type": "conversation.item.create",
            "item": item,
            "previous_item_id": "root",
            "event_id": "e",
        }
        assert ga(event) == event


def test_response_create_params_become_ga_params() -> None:
    tool = {"type": "function", "name": "f", "parameters": {"type": "object"}}
    event = {
        "type": "response.create",
        "event_id": "r1",
        "response": {
            "modalities": ["text", "audio"],
            "voice": "sage",
            "output_audio_format": "g711_ulaw",
            "max_response_output_tokens": 50,
            "temperature": 1.1,
            "conversation": "none",
            "metadata": {"k": "v"},
            "instructions": "short",
            "tools": [tool],
            "tool_choice": "f",
            "input": [
                {"type": "item_reference", "id": "item_1"},
                {"type": "message", "role": "assistant", "content": [{"type": "text", "text": "Earlier."}]},
            ],
        },
    }
    translated = to_ga_client_event(event)
    assert translated.temperature == 1.1
    assert translated.event == {
        "type": "response.create",
        "event_id": "r1",
        "response": {
            "output_modalities": ["audio"],
            "audio": {"output": {"voice": "sage", "format": {"type": "audio/pcmu"}}},
            "max_output_tokens": 50,
            "conversation": "none",
            "metadata": {"k": "v"},
            "instructions": "short",
            "tools": [tool],
            "tool_choice": {"type": "function", "name": "f"},
            "input": [
                {"type": "item_reference", "id": "item_1"},
                {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "Earlier."}],
                },
            ],
        },
    }
    parse_client_event(translated.event)
    assert ga({"type": "response.create", "response": {"modalities": ["text"]}})["response"] == {
        "output_modalities": ["text"]
    }
    assert ga({"type": "response.create"}) == {"type": "response.create"}


@pytest.mark.parametrize(
    "event",
    [
        {"type": "input_audio_buffer.append", "audio": "AAAA"},
        {"type": "input_audio_buffer.commit", "event_id": "x"},
        {"type": "input_audio_buffer.clear"},
        {"type": "output_audio_buffer.clear"},
        {"type": "conversation.item.retrieve", "item_id": "i"},
        {"type": "conversation.item.delete", "item_id": "i"},
        {"type": "conversation.item.truncate", "item_id": "i", "content_index": 0, "audio_end_ms": 10},
        {"type": "response.cancel", "response_id": "resp_1"},
    ],
)
def test_events_of_the_same_shape_pass_unchanged(event: dict[str, Any]) -> None:
    assert ga(event) == event


def test_transcription_session_update_becomes_ga_transcription_session() -> None:
    event = {
        "type": "transcription_session.update",
        "event_id": "t1",
        "session": {
            "input_audio_format": "g711_alaw",
            "input_audio_transcription": {"model": "gpt-4o-transcribe", "language": "en", "prompt": "names"},
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 300},
            "input_audio_noise_reduction": {"type": "far_field"},
            "include": ["item.input_audio_transcription.logprobs"],
            "modalities": ["text"],
        },
    }
    assert ga(event) == {
        "type": "session.update",
        "event_id": "t1",
        "session": {
            "type": "transcription",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcma"},
                    "transcription": {"model": "gpt-4o-transcribe", "language": "en", "prompt": "names"},
                    "turn_detection": {"type": "server_vad", "silence_duration_ms": 300},
                    "noise_reduction": {"type": "far_field"},
                }
            },
            "include": ["item.input_audio_transcription.logprobs"],
        },
    }
    assert ga({"type": "transcription_session.update", "session": {"turn_detection": None}})["session"] == {
        "type": "transcription",
        "audio": {"input": {"turn_detection": None}},
    }
