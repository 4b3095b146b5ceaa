"""Small helpers shared by the WebSocket conformance tests (events, items, speech)."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import numpy as np
import numpy.typing as npt
from openai.types.realtime import ConversationItemParam, RealtimeConversationItemUserMessageParam

from tests.conformance.conftest import collect_until, next_event
from tests.speech import flite_speech

Event = dict[str, Any]
RATE = 24000
BYTES_PER_MS = 48
"""pcm16 mono at 24 kHz."""

TEXT_ONLY: dict[str, Any] = {"type": "realtime", "output_modalities": ["text"]}
MANUAL_TURNS: dict[str, Any] = {"type": "realtime", "audio": {"input": {"turn_detection": None}}}
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "name": "get_weather",
    "description": "The current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
TIME_TOOL: dict[str, Any] = {
    "type": "function",
    "name": "get_time",
    "description": "The current time in a time zone.",
    "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
}


def user_text(text: str, item_id: str | None = None) -> RealtimeConversationItemUserMessageParam:
    item: RealtimeConversationItemUserMessageParam = {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": text}],
    }
    if item_id is not None:
        item["id"] = item_id
    return item


async def send_json(conn: Any, event: Any) -> None:
    """Send an event exactly as given (no SDK transformation), for malformed or raw events."""
    await conn.send_raw(json.dumps(event))


async def opened(conn: Any) -> Event:
    """The first event of a connection, which must be ``session.created``."""
    created = await next_event(conn)
    assert created["type"] == "session.created", created
    return created


async def update_session(conn: Any, session: dict[str, Any]) -> Event:
    """``session.update`` and its ``session.updated`` (failing on an error in between)."""
    await conn.session.update(session=session)
    events = await collect_until(conn, "session.updated")
    assert [e["type"] for e in events] == ["session.updated"], events
    return events[-1]


async def start_text_session(conn: Any, **session: Any) -> Event:
    """Wait for ``session.created``, switch to text output without turn detection; the updated session."""
    await opened(conn)
    update = {**TEXT_ONLY, "audio": {"input": {"turn_detection": None}}, **session}
    return await update_session(conn, update)


async def add_item(conn: Any, item: ConversationItemParam, previous_item_id: str | None = None) -> Event:
    """``conversation.item.create``; returns the ``conversation.item.done`` event."""
    if previous_item_id is None:
        await conn.conversation.item.create(item=item)
    else:
        await conn.conversation.item.create(item=item, previous_item_id=previous_item_id)
    events = await collect_until(conn, "conversation.item.done")
    types = [e["type"] for e in events]
    assert types == ["conversation.item.added", "conversation.item.done"], events
    assert events[0]["item"]["id"] == events[1]["item"]["id"]
    return events[1]


async def run_response(conn: Any, **response: Any) -> list[Event]:
    """``response.create`` and every event up to its ``response.done``."""
    if response:
        await conn.response.create(response=response)
    else:
        await conn.response.create()
    return await collect_until(conn, "response.done")


async def expect_error(
    conn: Any, code: str, *, param: str | None = None, event_id: str | None = None
) -> Event:
    """The next events up to an ``error``; checks its code, param and echoed client event_id."""
    events = await collect_until(conn, "error")
    error = events[-1]["error"]
    assert error["code"] == code, error
    assert error["param"] == param, error
    assert error["event_id"] == event_id, error
    assert error["type"] == "invalid_request_error", error
    assert isinstance(error["message"], str) and error["message"], error
    return events[-1]


async def still_serving(conn: Any, marker: str = "still here") -> None:
    """A successful ``session.update`` round trip: the connection survived what came before."""
    updated = await update_session(conn, {"type": "realtime", "instructions": marker})
    assert updated["session"]["instructions"] == marker


def types_of(events: list[Event]) -> list[str]:
    return [e["type"] for e in events]


def squash(types: list[str]) -> list[str]:
    """Consecutive repeats of one event type collapsed to one (streams of deltas)."""
    return [t for i, t in enumerate(types) if i == 0 or types[i - 1] != t]


def of_type(events: list[Event], type_: str) -> list[Event]:
    return [e for e in events if e["type"] == type_]


def one(events: list[Event], type_: str) -> Event:
    found = of_type(events, type_)
    assert len(found) == 1, (type_, types_of(events))
    return found[0]


def normalise(text: str) -> str:
    return " ".join(text.split())


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower()))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# -- audio ----------------------------------------------------------------------------------------


def silence(ms: int) -> bytes:
    return bytes(BYTES_PER_MS * ms)


def chunks(audio: bytes, ms: int = 100) -> list[bytes]:
    step = BYTES_PER_MS * ms
    return [audio[i : i + step] for i in range(0, len(audio), step)]


async def append_audio(conn: Any, audio: bytes, chunk_ms: int = 100) -> None:
    for piece in chunks(audio, chunk_ms):
        await conn.input_audio_buffer.append(audio=b64(piece))


def rms(pcm: npt.NDArray[np.int16]) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if len(pcm) else 0.0


def speech(text: str) -> bytes:
    """pcm16 24 kHz speech saying ``text``, from Debian's flite."""
    return flite_speech(text, RATE).astype("<i2").tobytes()


def voiced_span_ms(audio: bytes, frame_ms: int = 20) -> tuple[int, int]:
    """(first, last) ms of frames with clear speech energy in pcm16 24 kHz audio."""
    pcm = np.frombuffer(audio, dtype="<i2")
    step = RATE * frame_ms // 1000
    levels = [rms(pcm[i : i + step]) for i in range(0, len(pcm) - step + 1, step)]
    loud = [i for i, level in enumerate(levels) if level > 0.1 * max(levels)]
    return loud[0] * frame_ms, (loud[-1] + 1) * frame_ms


# How every audio message turn ends, completed or cancelled (PROTOCOL.md §4.5, §4.7).
AUDIO_TURN_END = [
    "response.output_audio.done",
    "response.output_audio_transcript.done",
    "response.content_part.done",
    "response.output_item.done",
    "conversation.item.done",
    "response.done",
]
