"""Audio out (speech with its transcript) and audio in (manual commit and server VAD), on a real socket.

Input speech is made with Debian's ``flite``, which the default recogniser understands well; the
checks look for keywords, never whole sentences.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest
from openai import AsyncOpenAI

from tests.conformance.conftest import collect_until
from tests.conformance.helpers import (
    AUDIO_TURN_END,
    BYTES_PER_MS,
    TEXT_ONLY,
    Event,
    add_item,
    append_audio,
    normalise,
    of_type,
    one,
    opened,
    rms,
    run_response,
    silence,
    speech,
    squash,
    types_of,
    update_session,
    user_text,
    voiced_span_ms,
    words,
)
from tests.scripted_llm import Reply, ScriptedLLM

REPLY = "Hello there. How can I help you today?"
ORDER = "I would like to check the status of my order"

AUDIO_TURN = [
    "response.created",
    "rate_limits.updated",
    "response.output_item.added",
    "conversation.item.added",
    "response.content_part.added",
]


@pytest.fixture(scope="module")
def order_speech() -> bytes:
    return speech(ORDER)


def _audio_of(events: list[Event]) -> bytes:
    return b"".join(base64.b64decode(e["delta"]) for e in of_type(events, "response.output_audio.delta"))


async def test_audio_turn_streams_speech_and_its_transcript(
    client: AsyncOpenAI, scripted: ScriptedLLM
) -> None:
    scripted.script(REPLY)
    async with client.realtime.connect(model="gpt-realtime") as conn:
        created = await opened(conn)
        assert created["session"]["output_modalities"] == ["audio"]
        await add_item(conn, user_text("Hello?"))
        events = await run_response(conn)

    types = squash(types_of(events))
    assert types[:5] == AUDIO_TURN
    assert types[-6:] == AUDIO_TURN_END
    assert set(types[5:-6]) == {"response.output_audio.delta", "response.output_audio_transcript.delta"}
    created_response = one(events, "response.created")["response"]
    assert created_response["output_modalities"] == ["audio"]
    assert created_response["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}

    item_id = one(events, "response.output_item.added")["item"]["id"]
    response_id = created_response["id"]
    for event in events:
        if event["type"].startswith("response.") and "item_id" in event:
            assert (event["response_id"], event["item_id"], event["output_index"]) == (
                response_id,
                item_id,
                0,
            )
            assert event["content_index"] == 0
    assert one(events, "response.content_part.added")["part"] == {"type": "audio", "transcript": ""}

    audio = _audio_of(events)
    assert len(audio) % 2 == 0
    pcm = np.frombuffer(audio, dtype="<i2")
    seconds = len(pcm) / 24000
    assert 1.0 < seconds < 15.0, seconds  # eight words of speech at 24 kHz
    assert rms(pcm) > 300, "the audio should be speech, not silence"
    assert np.abs(pcm).max() > 3000

    deltas = "".join(e["delta"] for e in of_type(events, "response.output_audio_transcript.delta"))
    transcript = one(events, "response.output_audio_transcript.done")["transcript"]
    assert deltas == transcript
    assert normalise(transcript) == REPLY
    part = one(events, "response.content_part.done")["part"]
    assert part["type"] == "audio" and part["transcript"] == transcript
    assert "audio" not in part or part["audio"] is None

    final_item = one(events, "response.output_item.done")["item"]
    assert final_item["status"] == "completed"
    assert final_item["content"] == [{"type": "output_audio", "transcript": transcript}]
    done = events[-1]["response"]
    assert done["status"] == "completed" and done["output"] == [final_item]
    assert done["usage"]["output_token_details"]["audio_tokens"] > 0


async def _committed_turn(conn: Any, audio: bytes) -> tuple[list[Event], list[Event]]:
    """Append ``audio`` in 100 ms chunks and commit by hand: the commit's events and the
    transcription's (up to ``completed``)."""
    await append_audio(conn, audio)
    await conn.input_audio_buffer.commit()
    committed = await collect_until(conn, "conversation.item.done")
    transcribed = await collect_until(conn, "conversation.item.input_audio_transcription.completed")
    return committed, transcribed


async def test_committed_speech_is_transcribed_and_reaches_the_model(
    client: AsyncOpenAI, scripted: ScriptedLLM, order_speech: bytes
) -> None:
    scripted.script("Sure, what is your order number?")
    audio = silence(300) + order_speech + silence(300)
    session = {
        **TEXT_ONLY,
        "audio": {"input": {"turn_detection": None, "transcription": {"model": "whisper-1"}}},
    }
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await opened(conn)
        updated = await update_session(conn, session)
        assert updated["session"]["audio"]["input"]["transcription"]["model"] == "whisper-1"
        committed, transcribed = await _committed_turn(conn, audio)

        assert types_of(committed) == [
            "input_audio_buffer.committed",
            "conversation.item.added",
            "conversation.item.done",
        ]
        item_id = committed[0]["item_id"]
        assert committed[0]["previous_item_id"] is None
        for event in committed[1:]:
            item = event["item"]
            assert item["id"] == item_id and item["role"] == "user" and item["type"] == "message"
            assert item["content"][0]["type"] == "input_audio"
            assert not item["content"][0].get("audio"), "item events carry no audio bytes"
        assert "response.created" not in types_of(transcribed)
        completed = transcribed[-1]
        assert completed["item_id"] == item_id and completed["content_index"] == 0
        assert {"order", "status"} & words(completed["transcript"]), completed["transcript"]
        assert "order" in words(completed["transcript"]), completed["transcript"]
        usage = completed["usage"]
        assert usage["type"] == "duration"
        assert usage["seconds"] == pytest.approx(len(audio) / BYTES_PER_MS / 1000, abs=0.2)
        for delta in of_type(transcribed, "conversation.item.input_audio_transcription.delta"):
            assert delta["item_id"] == item_id

        await conn.conversation.item.retrieve(item_id=item_id)
        retrieved = (await collect_until(conn, "conversation.item.retrieved"))[-1]["item"]
        assert retrieved["id"] == item_id
        assert base64.b64decode(retrieved["content"][0]["audio"]) == audio
        assert retrieved["content"][0]["transcript"] == completed["transcript"]

        events = await run_response(conn)
        assert events[-1]["response"]["status"] == "completed"
    user_messages = [m for m in scripted.last_request["messages"] if m["role"] == "user"]
    assert len(user_messages) == 1
    assert "order" in words(str(user_messages[0]["content"])), user_messages


async def test_server_vad_commits_the_turn_and_responds(
    client: AsyncOpenAI, scripted: ScriptedLLM, order_speech: bytes
) -> None:
    scripted.script("Let me look that order up.")
    lead_ms = 600
    audio = silence(lead_ms) + order_speech + silence(1200)
    speech_from, speech_to = voiced_span_ms(order_speech)
    total_ms = len(audio) // BYTES_PER_MS
    session = {**TEXT_ONLY, "audio": {"input": {"transcription": {"model": "whisper-1"}}}}
    async with client.realtime.connect(model="gpt-realtime") as conn:
        created = await opened(conn)
        assert created["session"]["audio"]["input"]["turn_detection"]["type"] == "server_vad"
        await update_session(conn, session)
        await append_audio(conn, audio)
        events = await collect_until(conn, "response.done", timeout=120)
        if "conversation.item.input_audio_transcription.completed" not in types_of(events):
            events += await collect_until(conn, "conversation.item.input_audio_transcription.completed")

    started = one(events, "input_audio_buffer.speech_started")
    stopped = one(events, "input_audio_buffer.speech_stopped")
    committed = one(events, "input_audio_buffer.committed")
    item_id = started["item_id"]
    assert stopped["item_id"] == item_id and committed["item_id"] == item_id
    types = types_of(events)
    assert types.index("input_audio_buffer.speech_started") < types.index("input_audio_buffer.speech_stopped")
    assert types.index("input_audio_buffer.speech_stopped") < types.index("input_audio_buffer.committed")
    assert types.index("input_audio_buffer.committed") < types.index("response.created")

    # audio_start_ms: the speech onset less up to the 300 ms prefix padding (VAD frames blur ±100 ms).
    onset = lead_ms + speech_from
    assert onset - 300 - 150 <= started["audio_start_ms"] <= onset + 150, (started, onset)
    # audio_end_ms: after the last voiced frame, before the end of all audio appended.
    end = lead_ms + speech_to
    assert end - 150 <= stopped["audio_end_ms"] <= total_ms, (stopped, end, total_ms)
    assert stopped["audio_end_ms"] > started["audio_start_ms"]

    user_added = [e for e in of_type(events, "conversation.item.added") if e["item"]["id"] == item_id]
    assert len(user_added) == 1 and user_added[0]["item"]["content"][0]["type"] == "input_audio"
    transcript = one(events, "conversation.item.input_audio_transcription.completed")["transcript"]
    assert "order" in words(transcript), transcript
    done = one(events, "response.done")["response"]
    assert done["status"] == "completed" and done["conversation_id"] is not None
    user_messages = [m for m in scripted.last_request["messages"] if m["role"] == "user"]
    assert len(user_messages) == 1 and "order" in words(str(user_messages[0]["content"]))


async def test_silence_alone_triggers_nothing(client: AsyncOpenAI, scripted: ScriptedLLM) -> None:
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await opened(conn)
        await append_audio(conn, silence(2000))
        await conn.input_audio_buffer.clear()
        events = await collect_until(conn, "input_audio_buffer.cleared")
    assert types_of(events) == ["input_audio_buffer.cleared"]
    assert scripted.requests == []


async def test_speech_during_a_reply_interrupts_it(
    client: AsyncOpenAI, scripted: ScriptedLLM, order_speech: bytes
) -> None:
    slow = Reply(text=" ".join(f"word{i}" for i in range(40)), chunk_delay_s=0.25)
    scripted.script(slow, "Checking your order now.")
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await opened(conn)
        await update_session(conn, TEXT_ONLY)
        await add_item(conn, user_text("Tell me a long story."))
        await conn.response.create()
        first = await collect_until(conn, "response.output_text.delta")
        interrupted_id = one(first, "response.created")["response"]["id"]
        await append_audio(conn, silence(300) + order_speech + silence(1200))
        events = await collect_until(conn, "input_audio_buffer.committed", timeout=120)
        while len(of_type(events, "response.done")) < 2:
            events += await collect_until(conn, "response.done", timeout=120)

    types = types_of(events)
    dones = [e["response"] for e in of_type(events, "response.done")]
    assert dones[0]["id"] == interrupted_id
    assert dones[0]["status"] == "cancelled"
    assert dones[0]["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
    assert dones[0]["output"][0]["status"] == "incomplete"
    # The interruption follows speech_started; the new turn's response comes after its commit.
    assert types.index("input_audio_buffer.speech_started") < types.index("response.done")
    assert types.index("input_audio_buffer.committed") < len(types) - 1 - types[::-1].index(
        "response.created"
    )
    assert dones[1]["status"] == "completed" and dones[1]["id"] != interrupted_id
    user_messages = [m for m in scripted.last_request["messages"] if m["role"] == "user"]
    assert "order" in words(str(user_messages[-1]["content"])), user_messages
