"""The audit trail: a ``SessionRecorder`` watching a real session engine (fake engines), written
to SQLite and to PostgreSQL; and the ``SessionLog`` state machine with controlled clocks."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from parley.store import Redactor, SessionDetail, Store, open_store
from parley.store import recorder as recorder_module
from parley.store.session_log import SessionLog
from tests.fakes import FakeLLM, FakeSTT, Recorder, text_reply, tool_reply

pytest_plugins = ("tests.postgres",)

CHARGE = {"type": "function", "name": "charge", "parameters": {"type": "object"}}


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    store = await asyncio.to_thread(open_store, database_url)
    yield store
    await store.aclose()


def user_text(text: str) -> dict[str, Any]:
    return {
        "type": "conversation.item.create",
        "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]},
    }


def tone(ms: int, rate: int = 24000) -> bytes:
    t = np.arange(int(rate * ms / 1000)) / rate
    return (np.sin(2 * np.pi * 300 * t) * 8000).astype("<i2").tobytes()


def output_audio(rec: Recorder) -> bytes:
    deltas = [e for e in rec.events if e["type"] == "response.output_audio.delta"]
    return b"".join(base64.b64decode(e["delta"]) for e in deltas)


async def detail_of(store: Store, session_id: str) -> SessionDetail:
    detail = await store.run(store.sessions.get, session_id)
    assert detail is not None
    return detail


async def test_text_and_tool_turns_are_recorded_redacted_and_only_written_on_close(store: Store) -> None:
    replies = [
        text_reply("Write to me at bob@example.org."),
        tool_reply("charge", '{"card": "4111 1111 1111 1111"}'),
        text_reply("Done."),
    ]
    rec = Recorder(llm=FakeLLM(replies=replies))
    recorder = store.recorder(
        transport="websocket", redactor=Redactor([r"secret-\w+"]), flush_interval_s=3600
    )
    rec.session.observers.append(recorder)
    await rec.session.start()
    update = {"type": "realtime", "output_modalities": ["text"], "tools": [CHARGE]}
    await rec.send(
        {"type": "session.update", "session": {**update, "instructions": "Never say secret-sauce."}}
    )
    await rec.send(user_text("my email is ann@example.com"))
    await rec.send({"type": "response.create"})
    await rec.wait_for("response.done")
    await rec.send(user_text("pay it"))
    await rec.send({"type": "response.create"})
    await rec.wait_for("response.done", 2)
    output = '{"ok": true, "receipt": "call +1 415 555 2671"}'
    call_output = {"type": "function_call_output", "call_id": "call_1", "output": output}
    await rec.send({"type": "conversation.item.create", "item": call_output})
    await rec.send({"type": "response.create"})
    await rec.wait_for("response.done", 3)
    first_user = rec.events[[e["type"] for e in rec.events].index("conversation.item.done")]["item"]["id"]
    await rec.send({"type": "conversation.item.delete", "item_id": first_user})
    await rec.send({"type": "response.cancel", "event_id": "evt_c"})
    await rec.wait_for("error")

    assert await store.run(store.sessions.get, rec.session.id) is None  # batched: nothing yet
    await rec.session.close()
    await recorder.close("client_disconnected")

    detail = await detail_of(store, rec.session.id)
    assert (detail.transport, detail.model, detail.end_reason) == (
        "websocket",
        "gpt-realtime",
        "client_disconnected",
    )
    assert detail.ended_at is not None and detail.key_id is None
    assert detail.config is not None and detail.config["instructions"] == "Never say [redacted]."
    assert detail.config["tools"][0]["name"] == "charge"
    items = [(i["type"], i["role"], i["text"] or i["arguments"] or i["output"]) for i in detail.items]
    assert items == [
        ("message", "user", "my email is [email]"),
        ("message", "assistant", "Write to me at [email]."),
        ("message", "user", "pay it"),
        ("function_call", None, '{"card": "[card]"}'),
        ("function_call_output", None, '{"ok": true, "receipt": "call [phone]"}'),
        ("message", "assistant", "Done."),
    ]
    assert detail.items[0]["deleted_at"] is not None and detail.items[1]["deleted_at"] is None
    assert detail.items[3]["name"] == "charge" and detail.items[3]["call_id"] == "call_1"
    assert all(i["status"] == "completed" and i["in_conversation"] for i in detail.items)
    dones = [e["response"] for e in rec.events if e["type"] == "response.done"]
    assert [(r["id"], r["status"]) for r in detail.responses] == [(r["id"], "completed") for r in dones]
    assert [r["total_tokens"] for r in detail.responses] == [r["usage"]["total_tokens"] for r in dones]
    assert detail.total_tokens == sum(r["usage"]["total_tokens"] for r in dones) > 0
    assert detail.items[1]["response_id"] == dones[0]["id"]
    assert [(e["code"], e["event_id"]) for e in detail.errors] == [("response_cancel_not_active", "evt_c")]
    stored = json.dumps(detail.to_dict())
    assert "ann@example.com" not in stored and "4111" not in stored and "secret-sauce" not in stored


async def test_audio_turn_with_transcript_latency_truncation_and_raw_audio(store: Store) -> None:
    rec = Recorder(
        stt=FakeSTT(transcripts=["what is the weather"]), llm=FakeLLM(replies=[text_reply("Sunny.")])
    )
    recorder = store.recorder(record_audio=True, flush_interval_s=0.01)
    rec.session.observers.append(recorder)
    await rec.session.start()
    transcription = {"audio": {"input": {"transcription": {"model": "whisper-1"}}}}
    await rec.send({"type": "session.update", "session": {"type": "realtime", **transcription}})
    audio = bytes(48 * 300) + tone(800) + bytes(48 * 1000)
    await rec.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(audio).decode()})
    done = await rec.wait_for("response.done")
    await rec.wait_for("conversation.item.input_audio_transcription.completed")
    assistant = done["response"]["output"][0]["id"]
    truncate = {
        "type": "conversation.item.truncate",
        "item_id": assistant,
        "content_index": 0,
        "audio_end_ms": 30,
    }
    await rec.send(truncate)
    await rec.wait_for("conversation.item.truncated")
    await recorder.flush()
    user = rec.events[[e["type"] for e in rec.events].index("input_audio_buffer.committed")]["item_id"]
    early = await detail_of(store, rec.session.id)
    assert early.ended_at is None and [i["id"] for i in early.items] == [user, assistant]
    await rec.session.close()
    await recorder.close()

    detail = await detail_of(store, rec.session.id)
    assert detail.audio_in_seconds == pytest.approx(len(audio) / 48_000)
    assert (
        detail.audio_out_seconds == pytest.approx(len(output_audio(rec)) / 48_000)
        and detail.audio_out_seconds > 0
    )
    heard, said = detail.items
    assert (heard["id"], heard["role"], heard["transcript"]) == (user, "user", "what is the weather")
    assert (said["id"], said["transcript"], said["truncated_audio_end_ms"]) == (assistant, "Sunny.", 30)
    [response] = detail.responses
    assert response["input_item_id"] == user and response["status"] == "completed"
    assert response["latency_ms"] is not None and response["latency_ms"] >= response["first_output_ms"] >= 0
    assert response["output_audio_tokens"] > 0
    assert {(a["item_id"], a["direction"], a["format"]) for a in detail.audio} == {
        (user, "input", "audio/pcm;rate=24000"),
        (assistant, "output", "audio/pcm;rate=24000"),
    }
    assert await store.run(store.sessions.audio, rec.session.id, user, "input") == audio
    assert await store.run(store.sessions.audio, rec.session.id, assistant, "output") == output_audio(rec)


async def test_a_disconnect_mid_response_keeps_what_was_said(store: Store) -> None:
    rec = Recorder(llm=FakeLLM(delay_s=0.05))
    recorder = store.recorder(flush_interval_s=3600)
    rec.session.observers.append(recorder)
    await rec.session.start()
    await rec.send(user_text("tell me a long story about the sea"))
    await rec.send({"type": "response.create"})
    await rec.wait_for("response.output_audio_transcript.delta")
    await rec.session.close()  # the client went away
    await recorder.close("client_disconnected")
    detail = await detail_of(store, rec.session.id)
    [response] = detail.responses
    assert (response["status"], response["status_reason"]) == ("cancelled", "client_cancelled")
    user, assistant = detail.items
    assert user["text"] == "tell me a long story about the sea"
    deltas = [e for e in rec.events if e["type"] == "response.output_audio_transcript.delta"]
    said = "".join(e["delta"] for e in deltas)
    assert assistant["status"] == "incomplete" and said and assistant["transcript"] == said


async def test_a_failed_write_is_retried_with_the_next_batch(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = recorder_module.write_batch
    calls: list[int] = []

    def flaky(*args: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("database went away")
        real(*args)

    monkeypatch.setattr(recorder_module, "write_batch", flaky)
    rec = Recorder(llm=FakeLLM(replies=[text_reply("Hi.")]))
    recorder = store.recorder(flush_interval_s=3600)
    rec.session.observers.append(recorder)
    await rec.session.start()
    await rec.send(user_text("hello"))
    await recorder.flush()  # fails; the rows are kept
    await rec.send({"type": "response.create"})
    await rec.wait_for("response.done")
    await rec.session.close()
    await recorder.close()
    assert recorder.failed_writes == 1 and len(calls) == 2
    detail = await detail_of(store, rec.session.id)
    assert [i["text"] or i["transcript"] for i in detail.items] == ["hello", "Hi."]


async def test_store_shutdown_writes_open_recorders(database_url: str) -> None:
    store = await asyncio.to_thread(open_store, database_url)
    rec = Recorder()
    recorder = store.recorder(flush_interval_s=3600)
    rec.session.observers.append(recorder)
    await rec.session.start()
    await rec.send(user_text("still here"))
    await rec.session.close()
    await store.aclose()  # the server stops without the session's own close
    reopened = await asyncio.to_thread(open_store, database_url)
    detail = await detail_of(reopened, rec.session.id)
    assert detail.end_reason == "server_shutdown" and detail.items[0]["text"] == "still here"
    await reopened.aclose()


# -- SessionLog, with controlled clocks ---------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_session_log_latency_formats_and_config_secrets() -> None:
    clock = Clock()
    log = SessionLog(clock=lambda: datetime(2026, 1, 1, tzinfo=UTC), monotonic=clock)
    log.observe(
        "client", {"type": "input_audio_buffer.append", "audio": base64.b64encode(bytes(800)).decode()}
    )
    assert log.take().empty  # no session id yet: everything waits
    mcp = {
        "type": "mcp",
        "server_label": "crm",
        "server_url": "https://x",
        "authorization": "tok",
        "headers": {"a": "b"},
    }
    g711 = {"input": {"format": {"type": "audio/pcmu"}}, "output": {"format": {"type": "audio/pcma"}}}
    config = {"type": "realtime", "id": "sess_1", "model": "m", "tools": [mcp], "audio": g711}
    log.observe("server", {"type": "session.created", "session": config})
    log.observe(
        "client", {"type": "input_audio_buffer.append", "audio": base64.b64encode(bytes(800)).decode()}
    )
    clock.now = 110.0
    log.observe(
        "server", {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 150, "item_id": "item_u"}
    )
    clock.now = 110.1
    log.observe(
        "server", {"type": "input_audio_buffer.committed", "item_id": "item_u", "previous_item_id": None}
    )
    clock.now = 110.2
    log.observe(
        "server", {"type": "response.created", "response": {"id": "resp_1", "conversation_id": "conv_1"}}
    )
    clock.now = 110.5
    delta = {"type": "response.output_audio.delta", "response_id": "resp_1", "item_id": "item_a"}
    log.observe("server", {**delta, "delta": base64.b64encode(bytes(160)).decode()})
    clock.now = 111.0
    log.observe("server", {**delta, "delta": base64.b64encode(bytes(160)).decode()})

    batch = log.take()
    assert batch.session is not None and batch.session["id"] == "sess_1"
    # before session.created the format is unknown (pcm 24 kHz assumed); then µ-law, 8 bytes/ms
    assert batch.session["audio_in_seconds"] == pytest.approx(800 / 48_000 + 800 / 8_000)
    assert batch.session["audio_out_seconds"] == pytest.approx(320 / 8 / 1000)
    assert batch.session["config"]["tools"] == [
        {"type": "mcp", "server_label": "crm", "server_url": "https://x"}
    ]
    assert config["tools"][0]["authorization"] == "tok"  # the session's own config is untouched
    [response] = batch.responses
    assert response["latency_ms"] == pytest.approx(500) and response["first_output_ms"] == pytest.approx(300)
    assert response["input_item_id"] == "item_u"
    assert log.take().empty
    log.restore(batch)
    assert [r["id"] for r in log.take().responses] == ["resp_1"]
