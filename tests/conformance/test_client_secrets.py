"""Ephemeral client secrets through the real SDK: minted with a key, they open sessions with the
configuration they carry until they expire; a secret cannot mint another."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import openai
import pytest
from openai import AsyncOpenAI
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.conformance.conftest import Server
from tests.conformance.helpers import opened


def _client(server: Server, key: str) -> AsyncOpenAI:
    return AsyncOpenAI(api_key=key, base_url=f"{server.http_url}/v1", websocket_base_url=server.ws_base)


async def test_a_secret_opens_a_session_with_its_configuration(server: Server, client: AsyncOpenAI) -> None:
    minted = await client.realtime.client_secrets.create(
        expires_after={"anchor": "created_at", "seconds": 120},
        session={"type": "realtime", "instructions": "Answer in one word.", "output_modalities": ["text"]},
    )
    assert minted.value.startswith("ek_")
    assert minted.session is not None and minted.session.instructions == "Answer in one word."
    async with _client(server, minted.value).realtime.connect(model="gpt-realtime") as conn:
        created = await opened(conn)
    assert created["session"]["instructions"] == "Answer in one word."
    assert created["session"]["output_modalities"] == ["text"]

    # A secret cannot mint another one.
    with pytest.raises(openai.AuthenticationError) as refused:
        await _client(server, minted.value).realtime.client_secrets.create()
    assert "Only an API key" in str(refused.value)


async def test_bad_requests_name_the_field(client: AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as too_short:
        await client.realtime.client_secrets.create(expires_after={"anchor": "created_at", "seconds": 5})
    assert too_short.value.body["param"] == "expires_after.seconds"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as bad_session:
        await client.realtime.client_secrets.create(
            session={"type": "realtime", "output_modalities": ["video"]}
        )  # type: ignore[list-item]
    assert str(bad_session.value.body["param"]).startswith("session.output_modalities")  # type: ignore[index]


async def test_an_expired_or_unknown_secret_is_refused(server: Server, client: AsyncOpenAI) -> None:
    minted = await client.realtime.client_secrets.create(
        expires_after={"anchor": "created_at", "seconds": 10}
    )
    await asyncio.sleep(10.5)  # the shortest lifetime the API allows
    for value in (minted.value, "ek_not-a-secret"):
        with pytest.raises(InvalidStatus) as refused:
            headers = {"Authorization": f"Bearer {value}"}
            async with connect(
                f"{server.ws_base}/realtime?model=gpt-realtime", additional_headers=headers, proxy=None
            ):
                pass
        assert refused.value.response.status_code == 401
        error = json.loads(refused.value.response.body or b"{}")["error"]
        assert error["code"] == "invalid_api_key" and "expired" in error["message"]


async def test_a_session_without_its_type_is_a_realtime_session(server: Server) -> None:
    request = urllib.request.Request(
        f"{server.http_url}/v1/realtime/client_secrets",
        data=json.dumps({"session": {"instructions": "No type given."}}).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": "Bearer sk-dev"},
    )
    minted = json.loads(await asyncio.to_thread(lambda: urllib.request.urlopen(request, timeout=30).read()))
    assert minted["session"]["type"] == "realtime"
    async with _client(server, minted["value"]).realtime.connect(model="gpt-realtime") as conn:
        created = await opened(conn)
    assert created["session"]["instructions"] == "No type given."
