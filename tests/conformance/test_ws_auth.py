"""The WebSocket handshake: API keys (header, browser subprotocol, Azure-style) and subprotocol choice.

A second server is started with ``PARLEY_API_KEYS`` set; the shared one runs in dev mode.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from openai import AsyncOpenAI
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from tests.conformance.conftest import LLMThread, Server, collect_until, start_server, stop_server
from tests.conformance.helpers import update_session

GOOD_KEY = "sk-good"


@pytest.fixture(scope="module")
def keyed_server(llm_thread: LLMThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {
        "PARLEY_API_KEYS": f"sk-other,{GOOD_KEY}",
        "PARLEY_LLM_BASE_URL": llm_thread.llm.base_url,
        "PARLEY_LLM_MODEL": "scripted-model",
    }
    server = start_server(tmp_path_factory.mktemp("parley-keyed"), env, name="keyed")
    yield server
    stop_server(server)


def _url(server: Server, query: str = "model=gpt-realtime") -> str:
    return f"{server.ws_base}/realtime?{query}"


def _open(
    url: str, *, headers: dict[str, str] | None = None, subprotocols: list[str] | None = None
) -> connect:
    return connect(
        url,
        additional_headers=headers,
        subprotocols=[Subprotocol(p) for p in subprotocols] if subprotocols is not None else None,
        proxy=None,
        open_timeout=30,
    )


async def _first_event(ws: ClientConnection) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(await ws.recv())
    return event


async def _refused(url: str, **kwargs: Any) -> tuple[int, dict[str, Any], str]:
    """The HTTP status, JSON error body and content type of a refused handshake."""
    with pytest.raises(InvalidStatus) as refused:
        async with _open(url, **kwargs):
            pass
    response = refused.value.response
    body: dict[str, Any] = json.loads(response.body or b"{}")
    return response.status_code, body, response.headers.get("Content-Type", "")


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        pytest.param({"headers": {"Authorization": "Bearer sk-wrong"}}, "invalid_api_key", id="bearer"),
        pytest.param(
            {"subprotocols": ["realtime", "openai-insecure-api-key.sk-wrong"]},
            "invalid_api_key",
            id="subprotocol",
        ),
        pytest.param({"headers": {"api-key": "sk-wrong"}}, "invalid_api_key", id="api-key-header"),
        pytest.param({}, "missing_api_key", id="no-key"),
    ],
)
async def test_wrong_or_missing_key_is_refused_with_401(
    keyed_server: Server, kwargs: dict[str, Any], code: str
) -> None:
    status, body, content_type = await _refused(_url(keyed_server), **kwargs)
    assert status == 401
    assert content_type.startswith("application/json")
    error = body["error"]
    assert error["code"] == code
    assert error["type"] == "invalid_request_error"
    assert isinstance(error["message"], str) and error["message"]
    assert "param" in error


async def test_wrong_key_in_the_query_is_refused(keyed_server: Server) -> None:
    status, body, _ = await _refused(_url(keyed_server, "model=gpt-realtime&api-key=sk-wrong"))
    assert status == 401 and body["error"]["code"] == "invalid_api_key"


async def test_openai_client_with_a_wrong_key_cannot_connect(keyed_server: Server) -> None:
    client = AsyncOpenAI(api_key="sk-wrong", websocket_base_url=keyed_server.ws_base, max_retries=0)
    with pytest.raises(InvalidStatus) as refused:
        async with client.realtime.connect(model="gpt-realtime"):
            pass
    assert refused.value.response.status_code == 401


async def test_right_key_as_bearer_through_the_openai_client(keyed_server: Server) -> None:
    client = AsyncOpenAI(api_key=GOOD_KEY, websocket_base_url=keyed_server.ws_base)
    async with client.realtime.connect(model="gpt-realtime") as conn:
        created = (await collect_until(conn, "session.created"))[-1]
        assert created["session"]["model"] == "gpt-realtime"
        updated = await update_session(conn, {"type": "realtime", "instructions": "Authorised."})
        assert updated["session"]["instructions"] == "Authorised."


@pytest.mark.parametrize(
    ("query", "kwargs"),
    [
        pytest.param("model=gpt-realtime", {"headers": {"Authorization": f"Bearer {GOOD_KEY}"}}, id="bearer"),
        pytest.param(
            "model=gpt-realtime",
            {"subprotocols": ["realtime", f"openai-insecure-api-key.{GOOD_KEY}"]},
            id="subprotocol",
        ),
        pytest.param("model=gpt-realtime", {"headers": {"api-key": GOOD_KEY}}, id="api-key-header"),
        pytest.param(f"model=gpt-realtime&api-key={GOOD_KEY}", {}, id="api-key-query"),
    ],
)
async def test_right_key_connects(keyed_server: Server, query: str, kwargs: dict[str, Any]) -> None:
    async with _open(_url(keyed_server, query), **kwargs) as ws:
        if "subprotocols" in kwargs:
            assert ws.subprotocol == "realtime"
        else:
            assert ws.subprotocol is None
        created = await _first_event(ws)
    assert created["type"] == "session.created"
    assert created["session"]["type"] == "realtime"


@pytest.mark.parametrize(
    "offered",
    [
        ["realtime", "openai-insecure-api-key.sk-anything"],
        [
            "realtime",
            "openai-insecure-api-key.sk-anything",
            "openai-organization.org_1",
            "openai-project.proj_1",
        ],
        ["realtime", "openai-insecure-api-key.sk-anything", "openai-agents-sdk.v0.1.0"],
    ],
)
async def test_browser_subprotocols_select_realtime(server: Server, offered: list[str]) -> None:
    async with _open(_url(server), subprotocols=offered) as ws:
        assert ws.subprotocol == "realtime"
        assert ws.response is not None
        assert ws.response.headers.get("Sec-WebSocket-Protocol") == "realtime"
        created = await _first_event(ws)
        assert created["type"] == "session.created"
        await ws.send(
            json.dumps({"type": "session.update", "session": {"type": "realtime", "instructions": "ok"}})
        )
        updated: dict[str, Any] = json.loads(await ws.recv())
    assert updated["type"] == "session.updated" and updated["session"]["instructions"] == "ok"


async def test_dev_mode_accepts_any_key_and_none(server: Server) -> None:
    for headers in ({"Authorization": "Bearer sk-whatever"}, {}):
        async with _open(_url(server), headers=headers) as ws:
            assert ws.subprotocol is None
            assert (await _first_event(ws))["type"] == "session.created"
