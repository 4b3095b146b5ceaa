"""The session engine driven directly with fake engines: event orders, state, errors."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

import numpy as np
import pytest

from parley.engines.base import ChatRequest, Finish, LLMEvent, TextDelta, ToolCallDelta
from parley.realtime import input_audio
from tests.fakes import FakeLLM, FakeSTT, FakeTTS, Recorder, text_reply, tool_reply
from tests.realtime_events import TEXT_ONLY, TEXT_TURN, USER_HI, WITH_WEATHER
from tests.wire import validate_ga


def tone(ms: int, rate: int = 24000, amplitude: int = 8000) -> bytes:
    t = np.arange(int(rate * ms / 1000)) / rate
    return (np.sin(2 * np.pi * 300 * t) * amplitude).astype("<i2").tobytes()


def append(audio: bytes) -> dict[str, object]:
    return {"type": "input_audio_buffer.append", "audio": base64.b64encode(audio).decode()}


async def started(**kwargs: object) -> Recorder:
    rec = Recorder(**kwargs)
    await rec.session.start()
    return rec


def assert_all_valid(rec: Recorder) -> None:
    for event in rec.events:
        validate_ga(event)


async def test_session_created_first_with_full_defaults() -> None:
    rec = await started()
    created = rec.events[0]
    assert created["type"] == "session.created"
    session = created["session"]
    assert session["type"] == "realtime" and session["id"].startswith("sess_")
    assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    assert session["output_modalities"] == ["audio"]
    assert_all_valid(rec)
    await rec.session.close()


async def test_text_turn_event_order_and_ids() -> None:
    rec = await started(llm=FakeLLM(replies=[text_reply("Hello there!")]))
    await rec.send(TEXT_ONLY)
    await rec.send(USER_HI)
    await rec.send({"type": "response.create", "event_id": "c2"})
    done = await rec.wait_for("response.done")
    types = rec.types()
    start = types.index("response.created")
    assert types[start:] == TEXT_TURN
    response = done["response"]
    assert response["status"] == "completed"
    assert response["output"][0]["content"] == [{"type": "output_text", "text": "Hello there!"}]
    assert response["usage"]["total_tokens"] > 0
    user_id = rec.events[types.index("conversation.item.added")]["item"]["id"]
    added = [e for e in rec.events if e["type"] == "conversation.item.added"][-1]
    assert added["previous_item_id"] == user_id
    assert_all_valid(rec)
    await rec.session.close()


async def test_audio_turn_streams_audio_with_exact_transcript() -> None:
    tts = FakeTTS()
    reply = [
        TextDelta("Hello there. "),
        TextDelta("How can I help"),
        TextDelta(" you today?"),
        Finish("stop"),
    ]
    rec = await started(llm=FakeLLM(replies=[reply]), tts=tts)
    await rec.send(USER_HI)
    await rec.send({"type": "response.create"})
    done = await rec.wait_for("response.done")
    deltas = [e for e in rec.events if e["type"] == "response.output_audio_transcript.delta"]
    transcript = "".join(d["delta"] for d in deltas)
    assert transcript == "Hello there. How can I help you today?"
    assert tts.spoken == ["Hello there.", "How can I help you today?"]
    audio = b"".join(
        base64.b64decode(e["delta"]) for e in rec.events if e["type"] == "response.output_audio.delta"
    )
    assert len(audio) > 48 * 100  # more than 100 ms of pcm16 at 24 kHz
    item = done["response"]["output"][0]
    assert item["content"] == [{"type": "output_audio", "transcript": transcript}]
    assert done["response"]["usage"]["output_token_details"]["audio_tokens"] > 0
    assert "audio" not in item["content"][0]
    assert_all_valid(rec)
    await rec.session.close()


async def test_function_call_turn() -> None:
    rec = await started(llm=FakeLLM(replies=[tool_reply("get_weather", '{"city": "Paris"}')]))
    await rec.send(WITH_WEATHER)
    await rec.send(USER_HI)
    await rec.send({"type": "response.create"})
    done = await rec.wait_for("response.done")
    args_done = next(e for e in rec.events if e["type"] == "response.function_call_arguments.done")
    assert args_done["name"] == "get_weather" and args_done["arguments"] == '{"city": "Paris"}'
    deltas = [e["delta"] for e in rec.events if e["type"] == "response.function_call_arguments.delta"]
    assert "".join(deltas) == '{"city": "Paris"}'
    call = done["response"]["output"][0]
    assert call["type"] == "function_call" and call["status"] == "completed" and call["call_id"] == "call_1"
    # The client answers, and the next response sees the output right after the call.
    await rec.send(
        {
            "type": "conversation.item.create",
            "item": {"type": "function_call_output", "call_id": "call_1", "output": '{"temp": 21}'},
        }
    )
    await rec.send({"type": "response.create"})
    await rec.wait_for("response.done", 2)
    llm = rec.engines.llm
    assert isinstance(llm, FakeLLM)
    messages = llm.requests[-1].messages
    assert messages[-2]["tool_calls"][0]["id"] == "call_1"
    assert messages[-1] == {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'}
    assert_all_valid(rec)
    await rec.session.close()


class HalfCallLLM(FakeLLM):
    """Writes the first half of a call, then waits (for a cancel)."""

    def __init__(self) -> None:
        super().__init__()
        self.half_written = asyncio.Event()

    async def stream(self, request: ChatRequest) -> AsyncIterator[LLMEvent]:
        if self.half_written.is_set():  # later requests: the usual echo
            async for event in super().stream(request):
                yield event
            return
        self.requests.append(request)
        yield ToolCallDelta(0, call_id="call_x", name="hang_up", arguments='{"now":')
        self.half_written.set()
        await asyncio.Event().wait()
        yield ToolCallDelta(0, arguments=" true}")
        yield Finish("tool_calls")


async def test_cancel_leaves_calls_incomplete_and_unannounced() -> None:
    llm = HalfCallLLM()
    rec = await started(llm=llm)
    hang_up = {"type": "function", "name": "hang_up", "parameters": {"type": "object"}}
    await rec.send({"type": "session.update", "session": {"type": "realtime", "tools": [hang_up]}})
    await rec.send(USER_HI)
    await rec.send({"type": "response.create"})
    await asyncio.wait_for(llm.half_written.wait(), 10)
    await rec.send({"type": "response.cancel"})
    done = await rec.wait_for("response.done")
    assert done["response"]["status"] == "cancelled"
    assert done["response"]["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
    [call] = done["response"]["output"]
    assert (call["name"], call["status"], call["arguments"]) == ("hang_up", "incomplete", "")
    assert "response.function_call_arguments.done" not in rec.types()
    assert "response.function_call_arguments.delta" not in rec.types()
    assert rec.session.active is None
    # The next response never shows the model the abandoned call.
    await rec.send({"type": "response.create"})
    await rec.wait_for("response.done", 2)
    assert all("tool_calls" not in m for m in llm.requests[-1].messages)
    assert_all_valid(rec)
    await rec.session.close()


async def test_second_response_refused_and_cancel_without_active() -> None:
    rec = await started(llm=FakeLLM(delay_s=0.2))
    await rec.send(USER_HI)
    await rec.send({"type": "response.create", "event_id": "first"})
    await rec.send({"type": "response.create", "event_id": "second"})
    error = await rec.wait_for("error")
    assert error["error"]["code"] == "conversation_already_has_active_response"
    assert error["error"]["event_id"] == "second"
    await rec.wait_for("response.done")
    await rec.send({"type": "response.cancel", "event_id": "c"})
    error = await rec.wait_for("error", 2)
    assert error["error"]["code"] == "response_cancel_not_active" and error["error"]["event_id"] == "c"
    await rec.session.close()


async def test_out_of_band_response_runs_beside_and_stays_out_of_conversation() -> None:
    rec = await started(llm=FakeLLM(delay_s=0.05))
    await rec.send(TEXT_ONLY)
    await rec.send(USER_HI)
    await rec.send({"type": "response.create"})
    await rec.send(
        {
            "type": "response.create",
            "response": {
                "conversation": "none",
                "metadata": {"topic": "summary"},
                "input": [{"type": "item_reference", "id": rec.session.conversation.items()[0].id}],
            },
        }
    )
    await rec.wait_for("response.done", 2)
    dones = [e["response"] for e in rec.events if e["type"] == "response.done"]
    oob = next(r for r in dones if r["metadata"] == {"topic": "summary"})
    assert oob["conversation_id"] is None and oob["status"] == "completed"
    assert len(rec.session.conversation) == 2  # the user item and the default response's reply
    added_ids = {e["item"]["id"] for e in rec.events if e["type"] == "conversation.item.added"}
    assert oob["output"][0]["id"] not in added_ids
    assert_all_valid(rec)
    await rec.session.close()


async def test_commit_audio_is_transcribed_for_the_model() -> None:
    stt = FakeSTT(transcripts=["what is my balance"])
    llm = FakeLLM()
    rec = await started(stt=stt, llm=llm)
    await rec.send(
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "audio": {"input": {"turn_detection": None, "transcription": {"model": "whisper-1"}}},
            },
        }
    )
    await rec.send(append(tone(500)))
    await rec.send({"type": "input_audio_buffer.commit"})
    committed = await rec.wait_for("input_audio_buffer.committed")
    completed = await rec.wait_for("conversation.item.input_audio_transcription.completed")
    assert completed["item_id"] == committed["item_id"]
    assert completed["transcript"] == "what is my balance"
    assert completed["usage"]["type"] == "duration"
    await rec.send({"type": "response.create"})
    await rec.wait_for("response.done")
    assert llm.requests[-1].messages[-1] == {"role": "user", "content": "what is my balance"}
    assert "response.created" not in rec.types()[: rec.types().index("input_audio_buffer.committed") + 3]
    assert_all_valid(rec)
    await rec.session.close()


@pytest.mark.parametrize(
    ("event", "code", "param"),
    [
        ({"type": "input_audio_buffer.commit", "event_id": "e"}, "input_audio_buffer_commit_empty", None),
        ({"type": "conversation.item.delete", "item_id": "nope"}, "item_not_found", "item_id"),
        ({"type": "conversation.item.retrieve", "item_id": "nope"}, "item_not_found", "item_id"),
        (
            {"type": "conversation.item.truncate", "item_id": "nope", "content_index": 0, "audio_end_ms": 5},
            "item_not_found",
            "item_id",
        ),
        ({**USER_HI, "previous_item_id": "missing"}, "item_not_found", "previous_item_id"),
        (
            {"type": "session.update", "session": {"type": "realtime", "bogus": 1}},
            "unknown_parameter",
            "session.bogus",
        ),
        ({"type": "session.update", "session": {}}, "missing_required_parameter", "session.type"),
        (
            {"type": "response.create", "response": {"input": [{"type": "item_reference", "id": "x"}]}},
            "item_not_found",
            "response.input[0].id",
        ),
        ({"type": "input_audio_buffer.append", "audio": "%%%"}, "invalid_value", "audio"),
        ({"type": "output_audio_buffer.clear"}, "invalid_event", None),
    ],
)
async def test_errors_keep_the_session_going(event: dict[str, object], code: str, param: str | None) -> None:
    rec = await started()
    await rec.send({**event, "event_id": "evt_42"})
    error = await rec.wait_for("error")
    assert error["error"]["code"] == code
    assert error["error"]["param"] == param
    assert error["error"]["event_id"] == "evt_42"
    await rec.send(USER_HI)
    await rec.wait_for("conversation.item.done")
    assert_all_valid(rec)
    await rec.session.close()


async def test_malformed_json_and_missing_type() -> None:
    rec = await started()
    await rec.session.handle_text("{not json")
    await rec.session.handle_text('{"event_id": "x"}')
    first = await rec.wait_for("error")
    second = await rec.wait_for("error", 2)
    assert first["error"]["code"] == "invalid_json"
    assert second["error"]["code"] == "invalid_event" and second["error"]["event_id"] == "x"
    await rec.session.close()


async def test_engine_failure_fails_the_response_only() -> None:
    rec = await started(llm=FakeLLM(fail=True))
    await rec.send(USER_HI)
    await rec.send({"type": "response.create"})
    done = await rec.wait_for("response.done")
    assert done["response"]["status"] == "failed"
    assert done["response"]["status_details"]["error"]["message"] == "fake language model failure"
    rec.engines.llm.fail = False  # type: ignore[attr-defined]
    await rec.send({"type": "response.create"})
    second = await rec.wait_for("response.done", 2)
    assert second["response"]["status"] == "completed"
    assert_all_valid(rec)
    await rec.session.close()


async def test_truncate_cuts_audio_and_unheard_transcript() -> None:
    reply = [TextDelta("First sentence here. Second one is longer than the first."), Finish("stop")]
    rec = await started(llm=FakeLLM(replies=[reply]))
    await rec.send(USER_HI)
    await rec.send({"type": "response.create"})
    done = await rec.wait_for("response.done")
    item_id = done["response"]["output"][0]["id"]
    first_piece_ms = len("First sentence here.") * 10  # the fake TTS speaks 10 ms per character
    await rec.send(
        {
            "type": "conversation.item.truncate",
            "item_id": item_id,
            "content_index": 0,
            "audio_end_ms": first_piece_ms + 50,
        }
    )
    truncated = await rec.wait_for("conversation.item.truncated")
    assert truncated["audio_end_ms"] == first_piece_ms + 50
    item = rec.session.conversation.get(item_id)
    assert item.data["content"][0]["transcript"] == "First sentence here. "
    assert abs(item.audio_ms(0) - (first_piece_ms + 50)) < 1
    await rec.send(
        {
            "type": "conversation.item.truncate",
            "item_id": item_id,
            "content_index": 0,
            "audio_end_ms": 100_000,
        }
    )
    error = await rec.wait_for("error")
    assert error["error"]["param"] == "audio_end_ms"
    await rec.send({"type": "conversation.item.retrieve", "item_id": item_id})
    retrieved = await rec.wait_for("conversation.item.retrieved")
    assert len(base64.b64decode(retrieved["item"]["content"][0]["audio"])) == (first_piece_ms + 50) * 48
    await rec.session.close()


async def test_server_vad_turn_and_barge_in() -> None:
    stt = FakeSTT(transcripts=["first turn", "second turn"])
    rec = await started(stt=stt, llm=FakeLLM(delay_s=0.3))
    silence = bytes(48 * 100)
    for _ in range(5):
        await rec.send(append(silence))
    for _ in range(10):
        await rec.send(append(tone(100)))
    for _ in range(8):
        await rec.send(append(silence))
    started_ev = await rec.wait_for("input_audio_buffer.speech_started")
    stopped = await rec.wait_for("input_audio_buffer.speech_stopped")
    committed = await rec.wait_for("input_audio_buffer.committed")
    assert started_ev["item_id"] == stopped["item_id"] == committed["item_id"]
    assert 150 <= started_ev["audio_start_ms"] <= 250  # speech at 500 ms minus 300 ms padding
    assert 1450 <= stopped["audio_end_ms"] <= 1600
    await rec.wait_for("response.created")
    # The user speaks again while the reply is generated: barge-in.
    for _ in range(6):
        await rec.send(append(tone(100)))
    done = await rec.wait_for("response.done")
    assert done["response"]["status"] == "cancelled"
    assert done["response"]["status_details"]["reason"] == "turn_detected"
    assert_all_valid(rec)
    await rec.session.close()


async def test_close_cancels_running_work() -> None:
    rec = await started(llm=FakeLLM(delay_s=5))
    await rec.send(USER_HI)
    await rec.send({"type": "response.create"})
    await rec.wait_for("response.created")
    await asyncio.wait_for(rec.session.close(), 5)
    assert rec.types()[-1] == "response.done"


async def test_rate_limits_are_reported_and_enforced() -> None:
    from parley.config import Settings

    rec = Recorder()
    rec.session.settings = Settings(requests_per_minute=2)
    rec.session.rate_limits.requests_per_minute = 2
    await rec.session.start()
    await rec.send(TEXT_ONLY)
    await rec.send(USER_HI)
    for count in (1, 2):
        await rec.send({"type": "response.create"})
        await rec.wait_for("response.done", count)
    limits = [e for e in rec.events if e["type"] == "rate_limits.updated"]
    assert [next(r for r in e["rate_limits"] if r["name"] == "requests")["remaining"] for e in limits] == [
        1,
        0,
    ]
    await rec.send({"type": "response.create", "event_id": "third"})
    error = await rec.wait_for("error")
    assert error["error"]["code"] == "rate_limit_exceeded" and error["error"]["event_id"] == "third"
    await rec.session.close()


def _vad_update(**turn: object) -> dict[str, object]:
    turn = {"type": "server_vad", **turn}
    return {
        "type": "session.update",
        "session": {"type": "realtime", "audio": {"input": {"turn_detection": turn}}},
    }


async def test_idle_timeout_commits_the_silence_and_responds() -> None:
    llm = FakeLLM(replies=[text_reply("Are you still there?")])
    rec = await started(llm=llm)
    await rec.send(_vad_update(idle_timeout_ms=1000))
    for _ in range(9):
        await rec.send(append(bytes(48 * 100)))
    assert "input_audio_buffer.timeout_triggered" not in rec.types()
    for _ in range(3):
        await rec.send(append(bytes(48 * 100)))
    timeout = await rec.wait_for("input_audio_buffer.timeout_triggered")
    assert timeout["audio_end_ms"] == 1000
    assert timeout["audio_start_ms"] < timeout["audio_end_ms"]
    committed = await rec.wait_for("input_audio_buffer.committed")
    assert committed["item_id"] == timeout["item_id"]
    done = await rec.wait_for("response.done")
    assert done["response"]["status"] == "completed"
    assert rec.types().count("input_audio_buffer.timeout_triggered") == 1
    user_messages = [m for m in llm.requests[-1].messages if m["role"] == "user"]
    assert user_messages[-1]["content"] == "(no words were heard)"
    assert_all_valid(rec)
    await rec.session.close()


async def test_idle_timeout_waits_for_the_reply_to_finish_playing() -> None:
    reply = "One two three four five six seven eight nine ten."  # 10 ms of fake speech per character
    rec = await started(llm=FakeLLM(replies=[text_reply(reply)]))
    await rec.send(_vad_update(idle_timeout_ms=300))
    await rec.send(USER_HI)
    await rec.send({"type": "response.create"})
    await rec.wait_for("response.done")
    played_ms = len(reply) * 10
    for _ in range((played_ms + 200) // 100):
        await rec.send(append(bytes(48 * 100)))
    assert "input_audio_buffer.timeout_triggered" not in rec.types()
    for _ in range(3):
        await rec.send(append(bytes(48 * 100)))
    assert "input_audio_buffer.timeout_triggered" in rec.types()
    await rec.session.close()


async def _backchannel_during_a_reply(stt: FakeSTT) -> Recorder:
    """The user asks for something (800 ms of voice), then says "yeah" (600 ms) during the reply; the
    recorder once the reply is done."""
    rec = await started(stt=stt, llm=FakeLLM(delay_s=1.0))
    for _ in range(3):
        await rec.send(append(bytes(48 * 100)))
    for _ in range(8):
        await rec.send(append(tone(100)))
    for _ in range(8):
        await rec.send(append(bytes(48 * 100)))
    await rec.wait_for("response.created")
    for _ in range(6):
        await rec.send(append(tone(100)))
    for _ in range(8):
        await rec.send(append(bytes(48 * 100)))
    await rec.wait_for("response.done")
    return rec


async def test_a_backchannel_does_not_interrupt_the_assistant() -> None:
    rec = await _backchannel_during_a_reply(FakeSTT(transcripts=["tell me a story", "yeah"]))
    assert (await rec.wait_for("response.done"))["response"]["status"] == "completed"
    assert rec.types().count("input_audio_buffer.speech_started") == 1
    await rec.session.close()


async def test_a_recogniser_slow_to_finish_does_not_hold_a_barge_in_decision(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(input_audio, "FINAL_TRANSCRIPT_WAIT_S", 0.05)
    # The final transcript of "yeah" never comes: it is judged on the partial.
    rec = await _backchannel_during_a_reply(FakeSTT(transcripts=["tell me a story", "yeah"], hang_on="yeah"))
    assert (await rec.wait_for("response.done"))["response"]["status"] == "completed"
    assert rec.types().count("input_audio_buffer.speech_started") == 1
    await asyncio.wait_for(rec.session.close(), 5)


async def test_transcription_deltas_stream_while_the_user_speaks() -> None:
    stt = FakeSTT(transcripts=["please book a table"])
    rec = await started(stt=stt, llm=FakeLLM(replies=[text_reply("Sure.")]))
    await rec.send(
        {
            "type": "session.update",
            "session": {"type": "realtime", "audio": {"input": {"transcription": {"model": "whisper-1"}}}},
        }
    )
    for _ in range(3):
        await rec.send(append(bytes(48 * 100)))
    for _ in range(8):
        await rec.send(append(tone(100)))
    delta = await rec.wait_for("conversation.item.input_audio_transcription.delta")
    assert "input_audio_buffer.speech_stopped" not in rec.types()  # still speaking
    for _ in range(8):
        await rec.send(append(bytes(48 * 100)))
    completed = await rec.wait_for("conversation.item.input_audio_transcription.completed")
    deltas = [e["delta"] for e in rec.events if e["type"].endswith("transcription.delta")]
    assert delta["delta"] == "please"
    assert "".join(deltas) == completed["transcript"] == "please book a table"
    assert completed["item_id"] == delta["item_id"]
    assert_all_valid(rec)
    await rec.session.close()


async def test_transcription_session_transcribes_and_never_responds() -> None:
    stt = FakeSTT(transcripts=["first caption", "second caption"])
    llm = FakeLLM(replies=[text_reply("never")])
    rec = Recorder(stt=stt, llm=llm, session_type="transcription")
    await rec.session.start()
    created = rec.events[0]["session"]
    assert created["type"] == "transcription" and created["object"] == "realtime.transcription_session"
    assert created["audio"]["input"]["transcription"]["model"]
    for _ in range(2):
        for _ in range(3):
            await rec.send(append(bytes(48 * 100)))
        for _ in range(6):
            await rec.send(append(tone(100)))
        for _ in range(7):
            await rec.send(append(bytes(48 * 100)))
    await rec.wait_for("conversation.item.input_audio_transcription.completed", 2)
    transcripts = [e["transcript"] for e in rec.events if e["type"].endswith("transcription.completed")]
    assert transcripts == ["first caption", "second caption"]
    added = [e for e in rec.events if e["type"] == "conversation.item.added"]
    assert added[1]["previous_item_id"] == added[0]["item"]["id"]
    await rec.send({"type": "response.create", "event_id": "r1"})
    error = await rec.wait_for("error")
    assert error["error"]["code"] == "invalid_event" and error["error"]["event_id"] == "r1"
    await rec.send({"type": "session.update", "session": {"type": "realtime", "instructions": "x"}})
    assert (await rec.wait_for("error", 2))["error"]["param"] == "session.type"
    await rec.send(
        {
            "type": "session.update",
            "session": {
                "type": "transcription",
                "audio": {"input": {"transcription": {"model": "whisper-1", "language": "en"}}},
            },
        }
    )
    updated = await rec.wait_for("session.updated")
    assert updated["session"]["audio"]["input"]["transcription"]["language"] == "en"
    assert "response.created" not in rec.types() and llm.requests == []
    assert_all_valid(rec)
    assert len(rec.session.conversation.items()) == 0
    await rec.session.close()


async def test_closing_right_after_a_commit_leaves_no_recogniser_running() -> None:
    rec = await started()
    manual = {
        "type": "session.update",
        "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}},
    }
    await rec.send(manual)
    await rec.send(append(tone(500)))
    await rec.send({"type": "input_audio_buffer.commit"})  # its transcription job has not run yet
    await rec.session.close()
    for _ in range(3):  # let the cancelled tasks finish
        await asyncio.sleep(0)
    running = [t for t in asyncio.all_tasks() if "LiveRecognition._run" in repr(t.get_coro())]
    assert running == []
