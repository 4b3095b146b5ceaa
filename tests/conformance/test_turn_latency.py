"""The per-turn latency breakdown: sent after each turn to a client that asked, never to others."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from openai import AsyncOpenAI

from tests.conformance.helpers import append_audio, opened, silence, speech, update_session
from tests.scripted_llm import ScriptedLLM
from tests.wire import validate_ga

STAGES = {"endpointing", "stt_final", "llm_first_token", "tts_first_audio", "speech_end_to_first_audio"}
TURN = {"type": "realtime", "audio": {"input": {"transcription": {"model": "whisper-1"}}}}


async def _events_after_a_spoken_turn(conn: Any, marker_after: bool) -> list[dict[str, Any]]:
    """Every event of one spoken turn, up to a text response that marks the end when asked."""
    await opened(conn)
    await update_session(conn, TURN)
    await append_audio(conn, silence(300) + speech("what time do you open") + silence(1200))
    events: list[dict[str, Any]] = []
    marked = False
    while True:
        event = json.loads(await asyncio.wait_for(conn.recv_bytes(), 60))
        if not event["type"].startswith("parley."):
            validate_ga(event)
        events.append(event)
        if event["type"] == "response.done" and not marked and marker_after:
            marked = True  # one more event-producing request: nothing hidden may come before its reply
            await conn.send({"type": "conversation.item.retrieve", "item_id": "no_such_item"})
        elif event["type"] == "parley.turn.latency" or (event["type"] == "error" and marked):
            return events


async def test_an_opted_in_client_gets_each_turns_latency(client: AsyncOpenAI, scripted: ScriptedLLM) -> None:
    scripted.script("We open at nine.")
    async with client.realtime.connect(model="gpt-realtime", extra_query={"parley_latency": "true"}) as conn:
        events = await _events_after_a_spoken_turn(conn, marker_after=False)
    done = next(e for e in events if e["type"] == "response.done")
    latency = events[-1]
    assert latency["type"] == "parley.turn.latency"
    assert latency["response_id"] == done["response"]["id"] and latency["status"] == "completed"
    stages = latency["latency_ms"]
    assert set(stages) >= STAGES, stages
    assert all(value >= 0 for value in stages.values())
    assert stages["response"] >= stages["llm_first_token"]
    assert latency["event_id"].startswith("event_")


async def test_no_latency_events_without_asking(client: AsyncOpenAI, scripted: ScriptedLLM) -> None:
    scripted.script("We open at nine.")
    async with client.realtime.connect(model="gpt-realtime") as conn:
        events = await _events_after_a_spoken_turn(conn, marker_after=True)
    types = [e["type"] for e in events]
    assert "response.done" in types and types[-1] == "error"
    assert not [t for t in types if t.startswith("parley.")]
