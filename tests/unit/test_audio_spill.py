"""A long session's item audio stays within its memory budget, and none of it is lost."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest

from parley.config import Settings
from parley.engines.base import Finish, TextDelta
from parley.realtime.audio_spill import AudioSpill
from parley.realtime.conversation import Conversation, Item
from tests.fakes import FakeLLM, FakeSTT, Recorder

SECOND = 48_000  # bytes of one second of 24 kHz pcm16


def _audio(seconds: float, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return rng.integers(-8000, 8000, int(seconds * 24000), dtype=np.int16).astype("<i2").tobytes()


def _item(n: int, audio: bytes, status: str = "completed") -> Item:
    from parley.audio.pcm import AudioFormat

    data = {"id": f"item_{n}", "type": "message", "role": "user", "status": status, "content": [{}]}
    return Item(
        data=data, audio={0: bytearray(audio)}, audio_format=AudioFormat.from_wire({"type": "audio/pcm"})
    )


def test_the_oldest_finished_audio_moves_to_disk(tmp_path: Path) -> None:
    spill = AudioSpill(2 * SECOND, tmp_path)
    conversation = Conversation(spill)
    clips = [_audio(1, seed) for seed in range(6)]
    for n, clip in enumerate(clips):
        conversation.insert(_item(n, clip, status="in_progress" if n == 1 else "completed"))
    held = sum(item.audio_in_memory() for item in conversation.items())
    in_memory = [bool(item.audio) for item in conversation.items()]
    # item 1 is not finished, the last two are recent: those stay; 0, 2 and 3 went to disk
    assert in_memory == [False, True, False, False, True, True] and held == 3 * SECOND
    assert spill.spilled_bytes == 3 * SECOND
    for n, item in enumerate(conversation.items()):
        assert item.audio_bytes(0) == clips[n] and item.audio_ms(0) == pytest.approx(1000)
        assert base64.b64decode(item.wire(with_audio=True)["content"][0]["audio"]) == clips[n]
    spill.close()


def test_without_a_spill_everything_stays_in_memory() -> None:
    conversation = Conversation()
    for n in range(4):
        conversation.insert(_item(n, _audio(1, n)))
    assert all(item.audio for item in conversation.items())


async def test_a_long_session_keeps_its_budget_and_loses_nothing(tmp_path: Path) -> None:
    settings = Settings(session_audio_memory_mb=0.1, data_dir=tmp_path)  # ~1 s of 24 kHz audio
    replies = [[TextDelta(f"Reply number {n} is here."), Finish("stop")] for n in range(5)]
    rec = Recorder(settings=settings, stt=FakeSTT(transcripts=["hello"] * 5), llm=FakeLLM(replies=replies))
    await rec.send(
        {
            "type": "session.update",
            "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}},
        }
    )
    sent: list[bytes] = []
    for n in range(5):
        clip = _audio(1, n)
        sent.append(clip)
        await rec.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(clip).decode()})
        await rec.send({"type": "input_audio_buffer.commit"})
        await rec.send({"type": "response.create"})
        await rec.wait_for("response.done", count=n + 1)
    items = rec.session.conversation.items()
    assert sum(item.audio_in_memory() for item in items) <= 2 * SECOND + 0.1 * 1024 * 1024
    assert rec.session.conversation.spill is not None and rec.session.conversation.spill.spilled_bytes > 0
    first_user, first_reply = items[0], items[1]
    assert first_user.spilled and first_reply.spilled
    await rec.send({"type": "conversation.item.retrieve", "item_id": first_user.id})
    retrieved = await rec.wait_for("conversation.item.retrieved")
    assert base64.b64decode(retrieved["item"]["content"][0]["audio"]) == sent[0]
    # truncating a spilled reply brings it back and cuts it
    await rec.send(
        {
            "type": "conversation.item.truncate",
            "item_id": first_reply.id,
            "content_index": 0,
            "audio_end_ms": 100,
        }
    )
    await rec.wait_for("conversation.item.truncated")
    assert first_reply.audio_ms(0) == pytest.approx(100, abs=1)
    await rec.session.close()
