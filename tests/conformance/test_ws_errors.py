"""Every refused client event gets an ``error`` event (code, JSON path in ``param``, the client's
``event_id``) and the session goes on: each case is followed by a successful event."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.request
from typing import Any

import pytest
from openai import AsyncOpenAI

from tests.conformance.conftest import Server, collect_until
from tests.conformance.helpers import (
    MANUAL_TURNS,
    add_item,
    b64,
    expect_error,
    opened,
    send_json,
    silence,
    still_serving,
    types_of,
    update_session,
    user_text,
)

MAX_APPEND_BYTES = 15 * 1024 * 1024


def _session(**fields: Any) -> dict[str, Any]:
    return {"type": "session.update", "event_id": "evt_bad", "session": {"type": "realtime", **fields}}


SCHEMA_ERRORS: list[tuple[str, dict[str, Any], str, str | None]] = [
    ("missing type", {"event_id": "evt_bad"}, "invalid_event", "type"),
    ("unknown type", {"type": "conversation.item.explode", "event_id": "evt_bad"}, "invalid_value", "type"),
    (
        "wrong field type",
        {"type": "conversation.item.delete", "item_id": 5, "event_id": "evt_bad"},
        "invalid_type",
        "item_id",
    ),
    ("wrong nested type", _session(instructions=5), "invalid_type", "session.instructions"),
    (
        "unknown top-level parameter",
        {"type": "input_audio_buffer.clear", "bogus": 1, "event_id": "evt_bad"},
        "unknown_parameter",
        "bogus",
    ),
    ("unknown session parameter", _session(bogus=1), "unknown_parameter", "session.bogus"),
    (
        "unknown nested parameter",
        _session(audio={"input": {"loudness": 11}}),
        "unknown_parameter",
        "session.audio.input.loudness",
    ),
    (
        "missing session.type",
        {"type": "session.update", "event_id": "evt_bad", "session": {"instructions": "x"}},
        "missing_required_parameter",
        "session.type",
    ),
    (
        "missing item_id",
        {"type": "conversation.item.delete", "event_id": "evt_bad"},
        "missing_required_parameter",
        "item_id",
    ),
    (
        "missing item content",
        {
            "type": "conversation.item.create",
            "event_id": "evt_bad",
            "item": {"type": "message", "role": "user"},
        },
        "missing_required_parameter",
        "item.content",
    ),
    (
        "bad speed",
        _session(audio={"output": {"speed": 3.0}}),
        "decimal_above_max_value",
        "session.audio.output.speed",
    ),
    (
        "invalid base64 audio",
        {"type": "input_audio_buffer.append", "audio": "%%% not base64 %%%", "event_id": "evt_bad"},
        "invalid_value",
        "audio",
    ),
    (
        "unknown item to retrieve",
        {"type": "conversation.item.retrieve", "item_id": "item_nope", "event_id": "evt_bad"},
        "item_not_found",
        "item_id",
    ),
    (
        "unknown item to delete",
        {"type": "conversation.item.delete", "item_id": "item_nope", "event_id": "evt_bad"},
        "item_not_found",
        "item_id",
    ),
    (
        "unknown item to truncate",
        {
            "type": "conversation.item.truncate",
            "item_id": "item_nope",
            "content_index": 0,
            "audio_end_ms": 100,
            "event_id": "evt_bad",
        },
        "item_not_found",
        "item_id",
    ),
    (
        "unknown previous_item_id",
        {
            "type": "conversation.item.create",
            "event_id": "evt_bad",
            "item": user_text("x"),
            "previous_item_id": "nope",
        },
        "item_not_found",
        "previous_item_id",
    ),
    (
        "unknown item_reference in response.input",
        {
            "type": "response.create",
            "event_id": "evt_bad",
            "response": {"conversation": "none", "input": [{"type": "item_reference", "id": "item_nope"}]},
        },
        "item_not_found",
        "response.input[0].id",
    ),
]


@pytest.mark.parametrize(
    ("event", "code", "param"),
    [pytest.param(event, code, param, id=name) for name, event, code, param in SCHEMA_ERRORS],
)
async def test_refused_event_keeps_the_session(
    client: AsyncOpenAI, event: dict[str, Any], code: str, param: str | None
) -> None:
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await opened(conn)
        await send_json(conn, event)
        await expect_error(conn, code, param=param, event_id=event.get("event_id"))
        await still_serving(conn)


@pytest.mark.parametrize("text", ["{not json", "[1, 2, 3]", '"just a string"'])
async def test_unparsable_frames(client: AsyncOpenAI, text: str) -> None:
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await opened(conn)
        await conn.send_raw(text)
        events = await collect_until(conn, "error")
        assert types_of(events) == ["error"]
        error = events[-1]["error"]
        assert error["type"] == "invalid_request_error"
        assert error["code"] in ("invalid_json", "invalid_event")
        assert error["event_id"] is None and error["message"]
        await still_serving(conn)


async def test_unknown_item_does_not_change_the_conversation(client: AsyncOpenAI) -> None:
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await opened(conn)
        first = await add_item(conn, user_text("one"))
        await conn.conversation.item.create(
            item=user_text("two"), previous_item_id="item_nope", event_id="c2"
        )
        await expect_error(conn, "item_not_found", param="previous_item_id", event_id="c2")
        third = await add_item(conn, user_text("three"))
        assert third["previous_item_id"] == first["item"]["id"]


async def test_commit_of_less_than_100_ms(client: AsyncOpenAI) -> None:
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await opened(conn)
        await update_session(conn, MANUAL_TURNS)
        await conn.input_audio_buffer.commit(event_id="commit_empty")
        error = await expect_error(conn, "input_audio_buffer_commit_empty", event_id="commit_empty")
        assert "100ms" in error["error"]["message"]
        await conn.input_audio_buffer.append(audio=b64(silence(60)))
        await conn.input_audio_buffer.commit(event_id="commit_short")
        error = await expect_error(conn, "input_audio_buffer_commit_empty", event_id="commit_short")
        assert "60.00ms" in error["error"]["message"]
        # 60 ms more make 120 ms: the buffer kept what was appended, and now commits.
        await conn.input_audio_buffer.append(audio=b64(silence(60)))
        await conn.input_audio_buffer.commit(event_id="commit_ok")
        events = await collect_until(conn, "conversation.item.done")
        assert types_of(events) == [
            "input_audio_buffer.committed",
            "conversation.item.added",
            "conversation.item.done",
        ]


async def test_cancel_with_nothing_active(client: AsyncOpenAI) -> None:
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await opened(conn)
        await conn.response.cancel(event_id="cancel_nothing")
        events = await collect_until(conn, "error")
        error = events[-1]["error"]
        assert error["code"] == "response_cancel_not_active"
        assert error["event_id"] == "cancel_nothing"
        assert error["param"] in (None, "response_id")
        await conn.response.cancel(response_id="resp_unknown", event_id="cancel_unknown")
        events = await collect_until(conn, "error")
        assert events[-1]["error"]["code"] == "response_cancel_not_active"
        assert events[-1]["error"]["event_id"] == "cancel_unknown"
        await still_serving(conn)


def _wait_until_responsive(http_url: str, limit_s: float) -> None:
    """Block until the server answers HTTP again (it may be busy digesting audio it accepted)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{http_url}/healthz", timeout=5):
                return
        except OSError:
            continue


@pytest.mark.parametrize("extra", [1024 * 1024, 1])
async def test_append_over_15_mib(client: AsyncOpenAI, server: Server, extra: int) -> None:
    """Decoded audio over 15 MiB in one append is refused (checked by its decoded size)."""
    audio = base64.b64encode(bytes(MAX_APPEND_BYTES + extra)).decode("ascii")
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await opened(conn)
        await update_session(conn, MANUAL_TURNS)
        await conn.send_raw(
            json.dumps({"type": "input_audio_buffer.append", "audio": audio, "event_id": "big"})
        )
        # A probe that always fails: if the append were accepted, its error would come first.
        await send_json(
            conn, {"type": "conversation.item.delete", "item_id": "item_probe", "event_id": "probe"}
        )
        events = await collect_until(conn, "error", timeout=120)
        error = events[-1]["error"]
        accepted = error["event_id"] == "probe"
        if not accepted:
            assert error["code"] == "invalid_value" and error["param"] == "audio"
            await expect_error(conn, "item_not_found", param="item_id", event_id="probe")
            await conn.input_audio_buffer.commit(event_id="after")
            await expect_error(conn, "input_audio_buffer_commit_empty", event_id="after")
            await still_serving(conn)
    if accepted:
        # Let the server digest what it accepted, so the tests after this one are not starved.
        await asyncio.to_thread(_wait_until_responsive, server.http_url, 300)
    assert not accepted, f"an append of {MAX_APPEND_BYTES + extra} decoded bytes (over 15 MiB) was accepted"
