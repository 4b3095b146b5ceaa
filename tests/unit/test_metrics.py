"""Metrics from a real session engine (fake engines) and structured logs with session ids."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from parley.logging_context import (
    JsonFormatter,
    SessionContextFilter,
    TextFormatter,
    bind_session,
    configure_logging,
)
from parley.server.metrics import METRICS, Metrics, SessionMetrics, metrics_handler, setup_metrics
from tests.fakes import FakeLLM, FakeSTT, FakeTTS, Recorder, text_reply, tool_reply
from tests.realtime_events import TEXT_ONLY, USER_HI, WITH_WEATHER

TRANSCRIBE = {
    "type": "session.update",
    "session": {"type": "realtime", "audio": {"input": {"transcription": {"model": "whisper-1"}}}},
}


class Watched:
    """A session with fake engines, watched by a fresh :class:`Metrics`."""

    def __init__(self, transport: str = "websocket", **kwargs: Any) -> None:
        self.metrics = Metrics(CollectorRegistry())
        self.rec = Recorder(**kwargs)
        self.observer: SessionMetrics = self.metrics.observer(transport)
        self.rec.session.observers.append(self.observer)

    def value(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    def samples(self, stage: str) -> float:
        return self.value("parley_stage_latency_seconds_count", stage=stage)

    async def close(self) -> None:
        await self.rec.session.close()
        self.observer.close()


async def watched(**kwargs: Any) -> Watched:
    w = Watched(**kwargs)
    await w.rec.session.start()
    return w


def tone(ms: int, rate: int = 24000) -> bytes:
    t = np.arange(int(rate * ms / 1000)) / rate
    return (np.sin(2 * np.pi * 300 * t) * 8000).astype("<i2").tobytes()


def append(audio: bytes) -> dict[str, object]:
    return {"type": "input_audio_buffer.append", "audio": base64.b64encode(audio).decode()}


async def speak_a_turn(w: Watched) -> None:
    """Silence, 1 s of speech, then enough silence for server VAD to end the turn."""
    for _ in range(3):
        await w.rec.send(append(bytes(48 * 100)))
    for _ in range(10):
        await w.rec.send(append(tone(100)))
    for _ in range(8):
        await w.rec.send(append(bytes(48 * 100)))


async def test_sessions_are_counted_by_transport_and_type_and_leave_the_active_gauge() -> None:
    w = await watched(transport="webrtc")
    assert w.value("parley_sessions_active", transport="webrtc") == 1
    assert w.value("parley_sessions_total", transport="webrtc", session_type="realtime") == 1
    assert w.observer.turn_breakdown() is None
    await w.close()
    w.observer.close()  # idempotent
    assert w.value("parley_sessions_active", transport="webrtc") == 0
    t = await watched(session_type="transcription")
    assert t.value("parley_sessions_total", transport="websocket", session_type="transcription") == 1
    await t.close()


async def test_text_turn_counts_events_and_times_the_first_token() -> None:
    w = await watched(llm=FakeLLM(replies=[text_reply("Hello there!")]))
    await w.rec.send(TEXT_ONLY)
    await w.rec.send(USER_HI)
    await w.rec.send({"type": "response.create"})
    await w.rec.wait_for("response.done")
    assert w.value("parley_client_events_total", type="conversation.item.create") == 1
    assert w.value("parley_client_events_total", type="response.create") == 1
    assert w.value("parley_server_events_total", type="response.output_text.delta") == 1
    assert w.value("parley_server_events_total", type="session.updated") == 1
    assert w.value("parley_responses_total", status="completed") == 1
    assert w.value("parley_response_duration_seconds_count", status="completed") == 1
    assert w.samples("llm_first_token") == 1
    assert w.samples("tts_first_audio") == 0  # text only: no audio
    breakdown = w.observer.turn_breakdown()
    assert breakdown is not None and breakdown["status"] == "completed"
    assert set(breakdown["stages"]) == {"llm_first_token", "response"}
    await w.close()


async def test_errors_are_counted_by_code_and_unknown_types_stay_one_label() -> None:
    w = await watched()
    await w.rec.send({"type": "session.update", "session": {"type": "realtime", "bogus": 1}})
    await w.rec.send({"type": "made.up.event"})
    await w.rec.session.handle_text("{not json")
    await w.rec.send({"type": {"not": "a string"}})
    await w.rec.wait_for("error", 4)
    assert w.value("parley_errors_total", code="unknown_parameter") == 1
    assert w.value("parley_errors_total", code="invalid_value") == 2  # unsupported types
    assert w.value("parley_errors_total", code="invalid_json") == 1
    assert w.value("parley_client_events_total", type="unknown") == 2
    assert w.value("parley_client_events_total", type="made.up.event") == 0
    assert w.value("parley_server_events_total", type="error") == 4
    await w.close()


async def test_responses_are_counted_by_status_including_cancelled_and_failed() -> None:
    llm = FakeLLM(replies=[text_reply("one")], delay_s=5)
    w = await watched(llm=llm)
    await w.rec.send(TEXT_ONLY)
    await w.rec.send(USER_HI)
    await w.rec.send({"type": "response.create"})
    await w.rec.wait_for("response.created")
    await w.rec.send({"type": "response.cancel"})
    await w.rec.wait_for("response.done")
    assert w.value("parley_responses_total", status="cancelled") == 1
    assert w.value("parley_response_duration_seconds_count", status="cancelled") == 1
    llm.delay_s, llm.fail = 0, True
    await w.rec.send({"type": "response.create"})
    await w.rec.wait_for("response.done", 2)
    assert w.value("parley_responses_total", status="failed") == 1
    assert w.value("parley_engine_failures_total", engine="llm") == 1
    assert w.value("parley_responses_total", status="completed") == 0
    await w.close()


async def test_audio_reply_times_first_token_and_first_audio() -> None:
    w = await watched(llm=FakeLLM(replies=[text_reply("Hello there. How are you?")]))
    await w.rec.send(USER_HI)
    await w.rec.send({"type": "response.create"})
    await w.rec.wait_for("response.done")
    assert w.value("parley_server_events_total", type="response.output_audio.delta") >= 1
    assert w.samples("llm_first_token") == 1
    assert w.samples("tts_first_audio") == 1
    assert w.samples("speech_end_to_first_audio") == 0  # typed, not spoken
    await w.close()


async def test_a_speech_failure_is_attributed_once_the_spoken_reply_began() -> None:
    w = await watched(tts=FakeTTS(fail=True))
    await w.rec.send(USER_HI)
    await w.rec.send({"type": "response.create"})
    done = await w.rec.wait_for("response.done")
    assert done["response"]["status"] == "failed"
    assert w.value("parley_engine_failures_total", engine="llm_or_tts") == 1
    assert w.value("parley_engine_failures_total", engine="llm") == 0
    await w.close()


async def test_spoken_turn_times_every_stage() -> None:
    w = await watched(stt=FakeSTT(transcripts=["what time is it"]))
    await w.rec.send(TRANSCRIBE)
    await speak_a_turn(w)
    await w.rec.wait_for("response.done")
    for stage in ("endpointing", "stt_final", "llm_first_token", "tts_first_audio"):
        assert w.samples(stage) == 1, stage
    assert w.samples("speech_end_to_first_audio") == 1
    breakdown = w.observer.turn_breakdown()
    assert breakdown is not None
    assert breakdown["response_id"] == (await w.rec.wait_for("response.done"))["response"]["id"]
    assert set(breakdown["stages"]) == {
        "endpointing",
        "stt_final",
        "llm_first_token",
        "tts_first_audio",
        "speech_end_to_first_audio",
        "response",
    }
    assert all(seconds >= 0 for seconds in breakdown["stages"].values())
    await w.close()


async def test_a_failed_transcription_is_an_stt_engine_failure() -> None:
    w = await watched(stt=FakeSTT(fail=True))
    await w.rec.send(TRANSCRIBE)
    await speak_a_turn(w)
    await w.rec.wait_for("conversation.item.input_audio_transcription.failed")
    assert w.value("parley_engine_failures_total", engine="stt") == 1
    assert w.samples("stt_final") == 0
    await w.close()


async def test_tool_calls_are_counted_by_kind_and_outcome() -> None:
    w = await watched(llm=FakeLLM(replies=[tool_reply("get_weather", '{"city": "Paris"}')]))
    await w.rec.send(WITH_WEATHER)
    await w.rec.send(USER_HI)
    await w.rec.send({"type": "response.create"})
    await w.rec.wait_for("response.done")
    assert w.value("parley_tool_calls_total", kind="function", outcome="completed") == 1
    assert w.samples("llm_first_token") == 1
    await w.close()


async def test_the_handler_serves_the_prometheus_text_format() -> None:
    app = web.Application()
    metrics = setup_metrics(app, Metrics(CollectorRegistry()))
    assert app[METRICS] is metrics
    observer = metrics.observer("websocket")
    observer("server", {"type": "response.done", "response": {"id": "resp_1", "status": "completed"}})
    response = await metrics_handler(make_mocked_request("GET", "/metrics", app=app))
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    assert isinstance(response.body, bytes)
    families = {f.name: f for f in text_string_to_metric_families(response.body.decode())}
    for name in (
        "parley_sessions_active",
        "parley_sessions",
        "parley_client_events",
        "parley_server_events",
        "parley_errors",
        "parley_responses",
        "parley_engine_failures",
        "parley_tool_calls",
        "parley_stage_latency_seconds",
        "parley_response_duration_seconds",
    ):
        assert name in families, name
    done = [s for s in families["parley_responses"].samples if s.name == "parley_responses_total"]
    assert [(s.labels, s.value) for s in done] == [({"status": "completed"}, 1.0)]
    assert any(r.resource.canonical == "/metrics" for r in app.router.routes())  # type: ignore[union-attr]


# -- logging ----------------------------------------------------------------------------------------


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(SessionContextFilter())
    logger = logging.getLogger("parley.test_metrics")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    yield logger, stream, handler
    logger.removeHandler(handler)
    logger.propagate = True


def test_json_records_carry_the_session_id_inside_bind_session(
    captured: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, stream, handler = captured
    handler.setFormatter(JsonFormatter())
    with bind_session("sess_x", call_id="rtc_1"):
        logger.info("inside %s", "the session")
    logger.info("outside")
    try:
        raise ValueError("boom")
    except ValueError:
        with bind_session("sess_y"):
            logger.exception("failed")
    inside, outside, failed = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside["session_id"] == "sess_x" and inside["call_id"] == "rtc_1"
    assert inside["message"] == "inside the session" and inside["level"] == "info"
    assert inside["logger"] == "parley.test_metrics" and "T" in inside["time"]
    assert "session_id" not in outside and "call_id" not in outside
    assert failed["session_id"] == "sess_y" and "ValueError: boom" in failed["exception"]


async def test_text_records_show_the_session_id_also_from_tasks_started_inside(
    captured: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, stream, handler = captured
    handler.setFormatter(TextFormatter())

    async def work() -> None:
        await asyncio.sleep(0)
        logger.info("from a task")

    with bind_session("sess_x"):
        task = asyncio.create_task(work())
    await task
    logger.info("no session")
    first, second = stream.getvalue().splitlines()
    assert "parley.test_metrics [sess_x]: from a task" in first
    assert "parley.test_metrics: no session" in second


def test_configure_logging_installs_the_filter_and_formatter() -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        handler = configure_logging("info", "json")
        assert isinstance(handler, logging.StreamHandler)
        stream = io.StringIO()
        handler.setStream(stream)
        with bind_session("sess_z"):
            logging.getLogger("parley.anything").info("hello")
        assert json.loads(stream.getvalue())["session_id"] == "sess_z"
        assert isinstance(configure_logging("debug", "text").formatter, TextFormatter)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
