"""The beta dialect translator: beta client events → GA, GA server events → beta, and a GA session
engine on fake engines driven through it. Every beta event produced is validated strictly."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import numpy as np
import pytest

from parley.config import Settings
from parley.protocol.beta import BetaDialect, beta_requested, beta_subprotocol
from parley.protocol.beta_events import BETA_SERVER_EVENT_TYPES, SERVER_RENAMES, to_ga_client_event
from parley.protocol.beta_session import (
    beta_param,
    beta_session,
    beta_transcription_session,
)
from parley.protocol.client_events import parse_client_event
from parley.protocol.errors import ProtocolError
from parley.realtime.session import RealtimeSession, SessionType
from tests.fakes import FakeLLM, FakeSTT, FakeTTS, fake_engines, text_reply, tool_reply
from tests.wire import validate_beta, validate_ga

GA_ONLY_NAMES = (
    "response.output_text",
    "response.output_audio",
    "conversation.item.added",
    "conversation.item.done",
    "input_audio_buffer.timeout_triggered",
)
USER_HI = {
    "type": "conversation.item.create",
    "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
}
TEXT_MANUAL: dict[str, Any] = {
    "type": "session.update",
    "session": {"modalities": ["text"], "turn_detection": None},
}


def ga(event: dict[str, Any]) -> dict[str, Any]:
    """A beta client event translated to GA; the result must be a valid GA client event."""
    translated = to_ga_client_event(event).event
    parse_client_event(translated)
    return translated


def refused(event: dict[str, Any]) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        to_ga_client_event(event)
    return caught.value


class BetaRecorder:
    """A GA session on fake engines behind a BetaDialect; records what a beta client would get."""

    def __init__(self, session_type: SessionType = "realtime", **engines: Any) -> None:
        self.events: list[dict[str, Any]] = []
        self.engines = fake_engines(**engines)
        self.session = RealtimeSession(
            settings=Settings(),
            engines=self.engines,
            emit=self._emit,
            model="gpt-4o-realtime-preview",
            session_type=session_type,
        )
        self.dialect = BetaDialect(self.session)
        self._new = asyncio.Event()

    async def _emit(self, event: dict[str, Any]) -> None:
        validate_ga(event)  # the engine speaks GA; the translation is the only beta source
        for beta in self.dialect.server_event(event):
            validate_beta(beta)
            assert not beta["type"].startswith(GA_ONLY_NAMES), beta["type"]
            self.events.append(beta)
        self._new.set()

    async def send(self, event: dict[str, Any]) -> None:
        await self.dialect.handle_text(json.dumps(event))

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == type_]

    async def wait_for(self, type_: str, count: int = 1, timeout: float = 10.0) -> dict[str, Any]:
        async def wait() -> dict[str, Any]:
            while len(self.of_type(type_)) < count:
                self._new.clear()
                await self._new.wait()
            return self.of_type(type_)[count - 1]

        return await asyncio.wait_for(wait(), timeout)

    async def error(self) -> dict[str, Any]:
        error = await self.wait_for("error")
        self.events.clear()
        return dict(error["error"])


async def started(**kwargs: Any) -> BetaRecorder:
    rec = BetaRecorder(**kwargs)
    await rec.session.start()
    return rec


def tone(ms: int, rate: int = 24000) -> bytes:
    t = np.arange(int(rate * ms / 1000)) / rate
    return (np.sin(2 * np.pi * 300 * t) * 8000).astype("<i2").tobytes()


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


# -- a GA session driven through the dialect ------------------------------------------------------


async def test_session_created_then_conversation_created() -> None:
    rec = await started()
    assert rec.types() == ["session.created", "conversation.created"]
    session = rec.events[0]["session"]
    assert session["object"] == "realtime.session" and session["modalities"] == ["text", "audio"]
    assert session["input_audio_format"] == "pcm16" and session["temperature"] == 0.8
    assert rec.events[1]["conversation"] == {
        "id": rec.session.conversation.id,
        "object": "realtime.conversation",
    }
    assert rec.events[1]["conversation"]["id"].startswith("conv_")
    await rec.session.close()


async def test_session_update_and_temperature() -> None:
    rec = await started()
    await rec.send(
        {
            "type": "session.update",
            "session": {"temperature": 1.0, "voice": "ash", "output_audio_format": "g711_ulaw"},
        }
    )
    updated = (await rec.wait_for("session.updated"))["session"]
    assert (updated["temperature"], updated["voice"], updated["output_audio_format"]) == (
        1.0,
        "ash",
        "g711_ulaw",
    )
    assert rec.session.config.temperature == 1.0
    assert rec.session.config.output["format"] == {"type": "audio/pcmu"}
    rec.events.clear()
    # An update the engine refuses changes nothing, temperature included; its param names beta fields.
    await rec.send(
        {"type": "session.update", "event_id": "bad", "session": {"temperature": 0.7, "speed": 3.0}}
    )
    error = await rec.error()
    assert (error["code"], error["param"], error["event_id"]) == (
        "decimal_above_max_value",
        "session.speed",
        "bad",
    )
    assert "'session.speed'" in error["message"] and "audio.output" not in error["message"]
    assert rec.session.config.temperature == 1.0
    await rec.send({"type": "session.update", "session": {"temperature": None}})
    assert (await rec.wait_for("session.updated"))["session"]["temperature"] == 0.8
    assert rec.session.config.temperature is None
    await rec.session.close()


async def test_text_turn_in_beta_names_with_temperatures_reaching_the_model() -> None:
    llm = FakeLLM(replies=[text_reply("Hello there!"), text_reply("Again."), text_reply("Once more.")])
    rec = await started(llm=llm)
    await rec.send(TEXT_MANUAL)
    await rec.send(USER_HI)
    await rec.send({"type": "response.create", "event_id": "c2"})
    done = await rec.wait_for("response.done")
    types = rec.types()
    start = types.index("response.created")
    assert types[types.index("session.updated") + 1 :] == [
        "conversation.item.created",
        "response.created",
        "rate_limits.updated",
        "response.output_item.added",
        "conversation.item.created",
        "response.content_part.added",
        "response.text.delta",
        "response.text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.done",
    ]
    created = rec.events[start]["response"]
    assert created["modalities"] == ["text"] and created["temperature"] == 0.8
    assert created["output_audio_format"] == "pcm16" and "output_modalities" not in created
    response = done["response"]
    assert response["status"] == "completed"
    assert response["output"][0]["content"] == [{"type": "text", "text": "Hello there!"}]
    assert set(response["usage"]["input_token_details"]) == {"cached_tokens", "text_tokens", "audio_tokens"}
    assert llm.requests[0].temperature is None  # never set: the model server's own default
    # The session's temperature, then a per-response one that does not stick.
    await rec.send({"type": "session.update", "session": {"temperature": 0.7}})
    await rec.wait_for("session.updated", 2)
    await rec.send({"type": "response.create", "response": {"temperature": 1.2}})
    second = await rec.wait_for("response.done", 2)
    assert (
        second["response"]["temperature"] == 1.2
        and rec.of_type("response.created")[1]["response"]["temperature"] == 1.2
    )
    await rec.send({"type": "response.create"})
    third = await rec.wait_for("response.done", 3)
    assert third["response"]["temperature"] == 0.7
    assert [r.temperature for r in llm.requests] == [None, 1.2, 0.7]
    await rec.session.close()


async def test_audio_turn_in_beta_names() -> None:
    tts = FakeTTS()
    rec = await started(llm=FakeLLM(replies=[text_reply("Hello there.")]), tts=tts)
    await rec.send(
        {"type": "session.update", "session": {"turn_detection": None, "output_audio_format": "g711_ulaw"}}
    )
    await rec.send(USER_HI)
    await rec.send({"type": "response.create"})
    done = await rec.wait_for("response.done")
    types = rec.types()
    assert {"response.audio.delta", "response.audio_transcript.delta", "response.audio.done"} <= set(types)
    assert rec.of_type("response.audio_transcript.done")[0]["transcript"] == "Hello there."
    assert rec.of_type("response.content_part.added")[0]["part"]["type"] == "audio"
    audio = b"".join(base64.b64decode(e["delta"]) for e in rec.of_type("response.audio.delta"))
    assert len(audio) > 0
    response = done["response"]
    assert response["modalities"] == ["text", "audio"] and response["output_audio_format"] == "g711_ulaw"
    assert response["voice"] == rec.session.config.output["voice"]
    assert response["output"][0]["content"][0] == {"type": "audio", "transcript": "Hello there."}
    await rec.session.close()


async def test_function_call_turn() -> None:
    tool = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
    llm = FakeLLM(replies=[tool_reply("get_weather", '{"city": "Paris"}'), text_reply("Sunny.")])
    rec = await started(llm=llm)
    await rec.send(
        {
            "type": "session.update",
            "session": {**TEXT_MANUAL["session"], "tools": [tool], "tool_choice": "get_weather"},
        }
    )
    updated = await rec.wait_for("session.updated")
    assert updated["session"]["tool_choice"] == "get_weather"
    await rec.send(USER_HI)
    await rec.send({"type": "response.create"})
    done = await rec.wait_for("response.done")
    call = done["response"]["output"][0]
    assert call["type"] == "function_call" and call["name"] == "get_weather"
    assert rec.of_type("response.function_call_arguments.done")[0]["arguments"] == '{"city": "Paris"}'
    assert llm.requests[0].tool_choice == "get_weather"
    output = {"type": "function_call_output", "call_id": call["call_id"], "output": '{"sky": "clear"}'}
    await rec.send({"type": "conversation.item.create", "item": output})
    await rec.send({"type": "response.create"})
    await rec.wait_for("response.done", 2)
    assert llm.requests[1].messages[-1]["role"] == "tool"
    await rec.session.close()


async def test_committed_audio_is_one_item_created() -> None:
    rec = await started(stt=FakeSTT(transcripts=["hello there"]))
    await rec.send(
        {
            "type": "session.update",
            "session": {"turn_detection": None, "input_audio_transcription": {"model": "whisper-1"}},
        }
    )
    await rec.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(tone(300)).decode()})
    await rec.send({"type": "input_audio_buffer.commit"})
    completed = await rec.wait_for("conversation.item.input_audio_transcription.completed")
    committed = rec.of_type("input_audio_buffer.committed")[0]
    [created] = [
        e for e in rec.of_type("conversation.item.created") if e["item"]["id"] == committed["item_id"]
    ]
    assert created["item"]["content"] == [{"type": "input_audio", "transcript": None}]
    assert completed["transcript"] == "hello there"
    await rec.session.close()


@pytest.mark.parametrize(
    ("event", "code", "param"),
    [
        ({"type": "session.update", "session": {"bogus": True}}, "unknown_parameter", "session.bogus"),
        (
            {"type": "session.update", "session": {"output_modalities": ["text"]}},
            "unknown_parameter",
            "session.output_modalities",
        ),
        ({"type": "session.update", "session": {"speed": 0.1}}, "decimal_below_min_value", "session.speed"),
        (
            {"type": "session.update", "session": {"max_response_output_tokens": 5000}},
            "invalid_value",
            "session.max_response_output_tokens",
        ),
        (
            {
                "type": "conversation.item.create",
                "item": {"type": "message", "role": "user", "content": [{"type": "text", "text": "x"}]},
            },
            "invalid_value",
            "item.content[0].type",
        ),
        (
            {"type": "response.create", "response": {"max_response_output_tokens": 0}},
            "integer_below_min_value",
            "response.max_response_output_tokens",
        ),
        ({"type": "response.cancel"}, "response_cancel_not_active", "response_id"),
        ({"type": "input_audio_buffer.commit"}, "input_audio_buffer_commit_empty", None),
        ({"type": "conversation.item.delete", "item_id": "nope"}, "item_not_found", "item_id"),
    ],
)
async def test_errors_echo_event_id_in_beta_terms(
    event: dict[str, Any], code: str, param: str | None
) -> None:
    rec = await started()
    rec.events.clear()
    await rec.send({**event, "event_id": "evt_c"})
    error = await rec.error()
    assert (error["code"], error["param"], error["event_id"]) == (code, param, "evt_c"), error
    await rec.send({"type": "session.update", "session": {"instructions": "still here"}})
    assert (await rec.wait_for("session.updated"))["session"]["instructions"] == "still here"
    await rec.session.close()


async def test_bad_json_gets_an_error() -> None:
    rec = await started()
    rec.events.clear()
    await rec.dialect.handle_text("{not json")
    assert (await rec.error())["code"] == "invalid_json"
    await rec.session.close()


async def test_transcription_session_through_the_dialect() -> None:
    rec = await started(session_type="transcription", stt=FakeSTT(transcripts=["one two"]))
    assert rec.types() == ["transcription_session.created"]
    session = rec.events[0]["session"]
    assert session["object"] == "realtime.transcription_session"
    assert session["input_audio_format"] == "pcm16" and session["modalities"] == ["text"]
    rec.events.clear()
    await rec.send(
        {
            "type": "transcription_session.update",
            "session": {"turn_detection": None, "input_audio_format": "g711_ulaw"},
        }
    )
    updated = (await rec.wait_for("transcription_session.updated"))["session"]
    assert updated["turn_detection"] is None and updated["input_audio_format"] == "g711_ulaw"
    await rec.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(bytes(800 * 3)).decode()})
    await rec.send({"type": "input_audio_buffer.commit"})
    completed = await rec.wait_for("conversation.item.input_audio_transcription.completed")
    assert completed["transcript"] == "one two"
    assert "conversation.item.created" in rec.types()
    rec.events.clear()
    await rec.send({"type": "response.create", "event_id": "r"})
    error = await rec.error()
    assert error["event_id"] == "r" and error["code"] == "invalid_event"
    await rec.session.close()
