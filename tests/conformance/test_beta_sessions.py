"""The beta ephemeral-token routes through the real SDK: ``client.beta.realtime.sessions.create`` and
``client.beta.realtime.transcription_sessions.create`` mint the same ``ek_`` secrets as
``client_secrets``, reply with the beta session objects (checked strictly against the SDK's models),
and the secrets open beta and GA sessions that start with that configuration."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import openai
import pytest
from aiohttp import web
from openai import AsyncOpenAI
from openai.types.beta.realtime import SessionCreateResponse, TranscriptionSession

from parley.config import Settings
from parley.server.app import create_app
from tests.conformance.conftest import Server, free_port, next_event
from tests.fakes import fake_engines
from tests.wire import validate_beta

MODEL = "gpt-4o-realtime-preview"
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "name": "get_weather",
    "description": "The current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
SERVER_SET = ("id", "expires_at", "client_secret")
"""Fields of the REST reply that a session opened with the secret does not repeat."""


def _client(server: Server, key: str) -> AsyncOpenAI:
    return AsyncOpenAI(api_key=key, base_url=f"{server.http_url}/v1", websocket_base_url=server.ws_base)


async def _next_beta(conn: Any) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(await asyncio.wait_for(conn.recv_bytes(), 30))
    validate_beta(event)
    return event


def _config(session: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in session.items() if key not in SERVER_SET}


def _assert_expires_in(expires_at: int, seconds: int) -> None:
    assert isinstance(expires_at, int)
    assert abs(expires_at - (time.time() + seconds)) < 30, expires_at


async def test_a_beta_session_secret_opens_beta_and_ga_sessions_with_its_configuration(
    server: Server, client: AsyncOpenAI
) -> None:
    raw = await client.beta.realtime.sessions.with_raw_response.create(
        model=MODEL,
        modalities=["text"],
        instructions="You are the front desk.",
        voice="verse",
        input_audio_format="g711_ulaw",
        output_audio_format="g711_alaw",
        input_audio_transcription={"model": "whisper-1", "language": "en"},
        input_audio_noise_reduction={"type": "near_field"},
        turn_detection={"type": "server_vad", "threshold": 0.7, "silence_duration_ms": 400},
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice="get_weather",
        max_response_output_tokens=300,
        speed=1.2,
        client_secret={"expires_after": {"anchor": "created_at", "seconds": 120}},
    )
    assert raw.status_code == 200
    reply: dict[str, Any] = raw.http_response.json()
    SessionCreateResponse.model_validate(reply, strict=True)
    parsed = raw.parse()
    assert parsed.client_secret.value.startswith("ek_")
    _assert_expires_in(parsed.client_secret.expires_at, 120)
    assert reply["object"] == "realtime.session" and reply["id"].startswith("sess_")
    assert reply["expires_at"] == parsed.client_secret.expires_at
    assert parsed.modalities == ["text"] and parsed.instructions == "You are the front desk."
    assert parsed.voice == "verse" and parsed.speed == 1.2
    assert (parsed.input_audio_format, parsed.output_audio_format) == ("g711_ulaw", "g711_alaw")
    assert reply["input_audio_transcription"]["model"] == "whisper-1"
    assert reply["input_audio_transcription"]["language"] == "en"
    assert reply["input_audio_noise_reduction"] == {"type": "near_field"}
    assert reply["turn_detection"]["type"] == "server_vad"
    assert reply["turn_detection"]["threshold"] == 0.7
    assert reply["turn_detection"]["silence_duration_ms"] == 400
    assert [tool["name"] for tool in reply["tools"]] == ["get_weather"]
    assert parsed.tool_choice == "get_weather" and parsed.max_response_output_tokens == 300

    secret = parsed.client_secret.value
    async with _client(server, secret).beta.realtime.connect(model=MODEL) as conn:
        created = await _next_beta(conn)
        assert created["type"] == "session.created", created
        assert (await _next_beta(conn))["type"] == "conversation.created"
    assert _config(created["session"]) == _config(reply)

    # The same secret opens a GA session too (until it expires), with the GA shape of that config.
    async with _client(server, secret).realtime.connect(model="gpt-realtime") as conn:
        ga = (await next_event(conn))["session"]
    assert ga["type"] == "realtime" and ga["output_modalities"] == ["text"]
    assert ga["instructions"] == "You are the front desk."
    assert ga["audio"]["output"] == {"format": {"type": "audio/pcma"}, "voice": "verse", "speed": 1.2}
    assert ga["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert ga["tool_choice"] == {"type": "function", "name": "get_weather"}


async def test_temperature_and_defaults_are_reported(server: Server, client: AsyncOpenAI) -> None:
    defaults = await client.beta.realtime.sessions.with_raw_response.create()
    reply: dict[str, Any] = defaults.http_response.json()
    SessionCreateResponse.model_validate(reply, strict=True)
    _assert_expires_in(reply["client_secret"]["expires_at"], 600)
    assert reply["modalities"] == ["text", "audio"] and reply["input_audio_format"] == "pcm16"
    assert reply["temperature"] == 0.8 and reply["tools"] == []

    warmer = await client.beta.realtime.sessions.create(temperature=1.1)
    assert warmer.temperature == 1.1
    # The secret carries it (GA sessions have no field for it): the session starts with it.
    async with _client(server, warmer.client_secret.value).beta.realtime.connect(model=MODEL) as conn:
        created = await _next_beta(conn)
    assert created["session"]["temperature"] == 1.1


async def test_a_transcription_secret_opens_a_transcription_session(
    server: Server, client: AsyncOpenAI
) -> None:
    raw = await client.beta.realtime.transcription_sessions.with_raw_response.create(
        input_audio_format="g711_ulaw",
        input_audio_transcription={"model": "whisper-1", "language": "en", "prompt": "Order numbers."},
        input_audio_noise_reduction={"type": "far_field"},
        turn_detection={"type": "server_vad", "threshold": 0.6, "prefix_padding_ms": 200},
        client_secret={"expires_at": {"anchor": "created_at", "seconds": 300}},
    )
    reply: dict[str, Any] = raw.http_response.json()
    TranscriptionSession.model_validate(reply, strict=True)
    parsed = raw.parse()
    assert reply["object"] == "realtime.transcription_session"
    assert parsed.client_secret.value.startswith("ek_")
    _assert_expires_in(parsed.client_secret.expires_at, 300)
    assert parsed.modalities == ["text"] and parsed.input_audio_format == "g711_ulaw"
    assert reply["input_audio_transcription"] == {
        "model": "whisper-1",
        "language": "en",
        "prompt": "Order numbers.",
    }
    assert reply["input_audio_noise_reduction"] == {"type": "far_field"}
    assert reply["turn_detection"]["threshold"] == 0.6 and reply["turn_detection"]["prefix_padding_ms"] == 200
    assert reply["include"] is None

    secret = parsed.client_secret.value
    async with _client(server, secret).beta.realtime.connect(model=MODEL) as conn:
        created = await _next_beta(conn)
    assert created["type"] == "transcription_session.created", created
    assert _config(created["session"]) == _config(reply)

    async with _client(server, secret).realtime.connect(model="gpt-realtime") as conn:
        ga = (await next_event(conn))["session"]
    assert ga["type"] == "transcription"
    assert ga["audio"]["input"]["transcription"]["model"] == "whisper-1"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        (
            {"client_secret": {"expires_after": {"anchor": "created_at", "seconds": 5}}},
            "client_secret.expires_after.seconds",
        ),
        (
            {"client_secret": {"expires_after": {"anchor": "created_at", "seconds": 7201}}},
            "client_secret.expires_after.seconds",
        ),
        ({"modalities": ["video"]}, "modalities[0]"),
        ({"modalities": ["audio", "audio"]}, "modalities"),
        ({"input_audio_format": "mp3"}, "input_audio_format"),
        ({"temperature": 2.0}, "temperature"),
        ({"speed": 3.0}, "speed"),  # refused by the GA session: the param still names the beta field
        ({"colour": "blue"}, "colour"),
    ],
)
async def test_bad_session_requests_name_the_field(
    client: AsyncOpenAI, fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        await client.beta.realtime.sessions.create(extra_body=fields)
    assert refused.value.status_code == 400
    assert refused.value.body["param"] == param, refused.value.body  # type: ignore[index]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        (
            {"client_secret": {"expires_at": {"anchor": "created_at", "seconds": 9000}}},
            "client_secret.expires_at.seconds",
        ),
        ({"input_audio_transcription": {"model": "whisper-2"}}, "input_audio_transcription.model"),
        ({"voice": "verse"}, "voice"),
        ({"include": ["item.input_audio_transcription.logprobs"]}, "include"),  # not available here
    ],
)
async def test_bad_transcription_requests_name_the_field(
    client: AsyncOpenAI, fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        await client.beta.realtime.transcription_sessions.create(extra_body=fields)
    assert refused.value.body["param"] == param, refused.value.body  # type: ignore[index]


async def test_a_secret_cannot_mint_another(server: Server, client: AsyncOpenAI) -> None:
    secret = (await client.beta.realtime.sessions.create()).client_secret.value
    with_secret = _client(server, secret)
    for mint in (
        with_secret.beta.realtime.sessions.create,
        with_secret.beta.realtime.transcription_sessions.create,
    ):
        with pytest.raises(openai.AuthenticationError) as refused:
            await mint()
        assert refused.value.body["code"] == "invalid_api_key"  # type: ignore[index]


async def test_without_a_database_there_are_no_secrets() -> None:
    app = create_app(Settings(), fake_engines(), with_store=False)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        client = AsyncOpenAI(api_key="sk-dev", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0)
        for mint in (
            client.beta.realtime.sessions.create,
            client.beta.realtime.transcription_sessions.create,
        ):
            with pytest.raises(openai.APIStatusError) as refused:
                await mint()
            assert refused.value.status_code == 503
    finally:
        await runner.cleanup()
