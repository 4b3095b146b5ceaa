"""Turn-taking through the real SDK on a real socket, with real engines (Silero VAD, pocketsphinx).

Speech is made by flite and streamed in 100 ms appends, mixed with silence and non-speech sounds.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from openai import AsyncOpenAI

from parley.audio.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from parley.audio.resample import resample
from tests.conformance.conftest import LLMThread, collect_until, start_server, stop_server
from tests.conformance.helpers import (
    BYTES_PER_MS,
    RATE,
    TEXT_ONLY,
    Event,
    add_item,
    append_audio,
    b64,
    chunks,
    of_type,
    one,
    opened,
    silence,
    speech,
    types_of,
    update_session,
    user_text,
    words,
)
from tests.scripted_llm import Reply, ScriptedLLM
from tests.speech import mix_at_snr, white_noise

SLOW_REPLY = Reply(text=" ".join(f"word{i}" for i in range(60)), chunk_delay_s=0.1)


def _turn_detection(**turn: Any) -> dict[str, Any]:
    return {
        **TEXT_ONLY,
        "audio": {"input": {"turn_detection": turn, "transcription": {"model": "whisper-1"}}},
    }


def _cough(seed: int) -> bytes:
    """Two bursts of band-limited noise with a fast attack: a cough's shape, not a voice."""
    rng = np.random.default_rng(seed)
    out = []
    for length_ms in (180, 140):
        n = RATE * length_ms // 1000
        noise = np.convolve(rng.standard_normal(n), np.ones(6) / 6, mode="same")
        envelope = np.exp(-np.arange(n) / (n / 4)) * np.minimum(1, np.arange(n) / (RATE * 0.01))
        out += [noise * envelope * 12000, np.zeros(RATE * 80 // 1000)]
    return np.concatenate(out).clip(-32768, 32767).astype("<i2").tobytes()


def _clicks() -> bytes:
    pcm = np.zeros(RATE * 400 // 1000)
    for at_ms in (0, 90, 200, 310):
        start = RATE * at_ms // 1000
        pcm[start : start + 48] = np.hanning(48) * 20000
    return pcm.astype("<i2").tobytes()


async def _text_session_with_slow_reply(conn: Any, scripted: ScriptedLLM, **turn: Any) -> str:
    """A reply is streaming (the assistant is talking); its response id."""
    await opened(conn)
    await update_session(conn, _turn_detection(type="server_vad", **turn))
    scripted.script(SLOW_REPLY)
    await add_item(conn, user_text("Tell me a long story."))
    await conn.response.create()
    first = await collect_until(conn, "response.output_text.delta")
    return str(one(first, "response.created")["response"]["id"])


@pytest.fixture
def fresh_client(llm_thread: LLMThread, tmp_path: Path) -> Iterator[AsyncOpenAI]:
    """A server of its own. Pocketsphinx's pooled decoders carry state from earlier utterances
    (an abandoned one changes the partials of the next), so whether a lone "okay" is heard as
    "okay" depends on what the shared server recognised before; this test's sounds are judged by a
    recogniser in the same state every run."""
    env = {"PARLEY_LLM_BASE_URL": llm_thread.llm.base_url, "PARLEY_LLM_MODEL": "scripted-model"}
    server = start_server(tmp_path, env, name="fresh")
    yield AsyncOpenAI(api_key="sk-test", base_url=f"{server.http_url}/v1", websocket_base_url=server.ws_base)
    stop_server(server)


async def test_noise_coughs_clicks_and_backchannels_do_not_interrupt(
    fresh_client: AsyncOpenAI, scripted: ScriptedLLM
) -> None:
    sounds = [_cough(1), _clicks(), speech("okay"), _cough(2), speech("right")]
    async with fresh_client.realtime.connect(model="gpt-realtime") as conn:
        response_id = await _text_session_with_slow_reply(conn, scripted)
        for sound in sounds:
            await append_audio(conn, silence(200) + sound + silence(700))
        events = await collect_until(conn, "response.done", timeout=120)
    done = one(events, "response.done")["response"]
    assert done["id"] == response_id and done["status"] == "completed", done["status_details"]
    assert "input_audio_buffer.speech_started" not in types_of(events)
    assert "input_audio_buffer.committed" not in types_of(events)


async def test_words_interrupt_and_the_start_is_the_onset(client: AsyncOpenAI, scripted: ScriptedLLM) -> None:
    words_audio = speech("wait please stop talking")
    async with client.realtime.connect(model="gpt-realtime") as conn:
        response_id = await _text_session_with_slow_reply(conn, scripted)
        scripted.script("Sorry, go ahead.")
        await append_audio(conn, silence(500) + words_audio + silence(1200))
        events = await collect_until(conn, "input_audio_buffer.committed", timeout=120)
        while len(of_type(events, "response.done")) < 2:
            events += await collect_until(conn, "response.done", timeout=120)
    started = one(events, "input_audio_buffer.speech_started")
    cancelled = of_type(events, "response.done")[0]["response"]
    assert cancelled["id"] == response_id and cancelled["status"] == "cancelled"
    assert cancelled["status_details"]["reason"] == "turn_detected"
    types = types_of(events)
    assert types.index("input_audio_buffer.speech_started") < types.index("response.done")
    # The speech began at 500 ms: audio_start_ms is that less the 300 ms prefix (±100 ms of frames).
    assert 100 <= started["audio_start_ms"] <= 400, started


async def test_interrupt_response_false_lets_the_reply_finish(
    client: AsyncOpenAI, scripted: ScriptedLLM
) -> None:
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await _text_session_with_slow_reply(conn, scripted, interrupt_response=False, create_response=False)
        await append_audio(conn, silence(300) + speech("wait please stop talking") + silence(900))
        events = await collect_until(conn, "response.done", timeout=120)
    assert one(events, "response.done")["response"]["status"] == "completed"
    assert "input_audio_buffer.speech_started" in types_of(events)


NUMBER_FIRST = "my number is five five five"
NUMBER_REST = "one two three four"


async def _number_with_a_pause(
    client: AsyncOpenAI, scripted: ScriptedLLM, turn: dict[str, Any]
) -> list[Event]:
    scripted.script("Thanks.", "Thanks.")
    audio = silence(400) + speech(NUMBER_FIRST) + silence(1100) + speech(NUMBER_REST) + silence(3500)
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await opened(conn)
        await update_session(conn, _turn_detection(**turn))
        await append_audio(conn, audio)
        events = await collect_until(conn, "response.done", timeout=120)
        if "conversation.item.input_audio_transcription.completed" not in types_of(events):
            events += await collect_until(conn, "conversation.item.input_audio_transcription.completed")
        await conn.input_audio_buffer.clear()
        events += await collect_until(conn, "input_audio_buffer.cleared", timeout=60)
    return events


async def test_semantic_vad_waits_through_a_pause_in_a_phone_number(
    client: AsyncOpenAI, scripted: ScriptedLLM
) -> None:
    events = await _number_with_a_pause(client, scripted, {"type": "semantic_vad", "eagerness": "medium"})
    assert len(of_type(events, "input_audio_buffer.speech_stopped")) == 1, types_of(events)
    transcript = of_type(events, "conversation.item.input_audio_transcription.completed")[-1]["transcript"]
    assert {"five", "four"} <= words(transcript), transcript


async def test_server_vad_ends_the_turn_at_the_same_pause(client: AsyncOpenAI, scripted: ScriptedLLM) -> None:
    events = await _number_with_a_pause(client, scripted, {"type": "server_vad", "silence_duration_ms": 500})
    assert len(of_type(events, "input_audio_buffer.speech_stopped")) == 2, types_of(events)


async def test_semantic_vad_ends_a_finished_question_without_the_long_wait(
    client: AsyncOpenAI, scripted: ScriptedLLM
) -> None:
    scripted.script("We open at nine.")
    question = speech("what time do you open tomorrow")
    audio = silence(400) + question + silence(3000)
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await opened(conn)
        await update_session(conn, _turn_detection(type="semantic_vad", eagerness="low"))
        await append_audio(conn, audio)
        events = await collect_until(conn, "input_audio_buffer.speech_stopped", timeout=120)
        events += await collect_until(conn, "response.done", timeout=120)
    # The whole clip is appended at once, so the stop's timing shows in what came before the commit:
    # low eagerness waits 8 s for an unfinished turn, but a finished question ends within 3 s.
    stopped = one(events, "input_audio_buffer.speech_stopped")
    assert stopped["audio_end_ms"] < 400 + len(question) // BYTES_PER_MS + 200
    assert one(events, "response.done")["response"]["status"] == "completed"


async def test_idle_timeout_prompts_the_user(client: AsyncOpenAI, scripted: ScriptedLLM) -> None:
    scripted.script("Are you still there?")
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await opened(conn)
        await update_session(conn, _turn_detection(type="server_vad", idle_timeout_ms=1000))
        await append_audio(conn, silence(1500))
        events = await collect_until(conn, "response.done", timeout=60)
    timeout = one(events, "input_audio_buffer.timeout_triggered")
    assert timeout["audio_end_ms"] == 1000 and timeout["audio_start_ms"] < 1000
    types = types_of(events)
    assert types.index("input_audio_buffer.timeout_triggered") < types.index("input_audio_buffer.committed")
    assert one(events, "input_audio_buffer.committed")["item_id"] == timeout["item_id"]
    assert one(events, "response.done")["response"]["status"] == "completed"


async def test_transcription_deltas_arrive_while_the_user_speaks(
    client: AsyncOpenAI, scripted: ScriptedLLM
) -> None:
    scripted.script("Sure.")
    said = speech("I would like to book a table for four people tonight at seven")
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await opened(conn)
        await update_session(conn, _turn_detection(type="server_vad"))
        for piece in chunks(silence(300) + said + silence(1200)):  # in real time, as a microphone would
            await conn.input_audio_buffer.append(audio=b64(piece))
            await asyncio.sleep(0.1)
        events = await collect_until(
            conn, "conversation.item.input_audio_transcription.completed", timeout=120
        )
    types = types_of(events)
    deltas = of_type(events, "conversation.item.input_audio_transcription.delta")
    assert deltas and types.index("conversation.item.input_audio_transcription.delta") < types.index(
        "input_audio_buffer.speech_stopped"
    )
    completed = one(events, "conversation.item.input_audio_transcription.completed")
    assert all(d["item_id"] == completed["item_id"] for d in deltas)
    # The deltas spell the recogniser's settled words as it goes; its final pass may still revise the
    # last of them (completed is authoritative), never the start.
    first = deltas[0]["delta"].split()
    assert first == completed["transcript"].split()[: len(first)], (first, completed["transcript"])
    assert {"table", "people"} & words(completed["transcript"]), completed["transcript"]
    assert completed["usage"]["type"] == "duration" and completed["usage"]["seconds"] > 0


@pytest.mark.parametrize(
    ("fmt", "encode", "decode"),
    [("audio/pcmu", ulaw_encode, ulaw_decode), ("audio/pcma", alaw_encode, alaw_decode)],
    ids=["pcmu", "pcma"],
)
async def test_g711_in_and_out(
    client: AsyncOpenAI, scripted: ScriptedLLM, fmt: str, encode: Any, decode: Any
) -> None:
    scripted.script("Your order has shipped.")
    pcm8k = resample(np.frombuffer(speech("please check my order"), dtype="<i2"), RATE, 8000)
    wire = encode(np.concatenate([np.zeros(2400, np.int16), pcm8k, np.zeros(9600, np.int16)]))
    session = {
        "type": "realtime",
        "audio": {
            "input": {"format": {"type": fmt}, "transcription": {"model": "whisper-1"}},
            "output": {"format": {"type": fmt}},
        },
    }
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await opened(conn)
        updated = await update_session(conn, session)
        assert updated["session"]["audio"]["output"]["format"] == {"type": fmt}
        for i in range(0, len(wire), 800):  # 100 ms of G.711 per append
            await conn.input_audio_buffer.append(audio=b64(wire[i : i + 800]))
        events = await collect_until(conn, "response.done", timeout=120)
        if "conversation.item.input_audio_transcription.completed" not in types_of(events):
            events += await collect_until(conn, "conversation.item.input_audio_transcription.completed")
    started = one(events, "input_audio_buffer.speech_started")
    stopped = one(events, "input_audio_buffer.speech_stopped")
    assert 0 <= started["audio_start_ms"] <= 400  # G.711 counts 8 bytes per ms: speech at 300 ms
    assert stopped["audio_end_ms"] <= len(wire) // 8
    transcript = one(events, "conversation.item.input_audio_transcription.completed")["transcript"]
    assert "order" in words(transcript), transcript
    audio_out = b"".join(base64.b64decode(e["delta"]) for e in of_type(events, "response.output_audio.delta"))
    pcm_out = decode(audio_out)
    assert len(audio_out) > 8 * 500  # at least half a second of 8 kHz speech, one byte a sample
    assert float(np.sqrt(np.mean(pcm_out.astype(np.float64) ** 2))) > 300


async def test_transcription_session(client: AsyncOpenAI, scripted: ScriptedLLM) -> None:
    first = speech("please check my order status")
    second = speech("thank you very much")
    audio = silence(400) + first + silence(1000) + second + silence(1200)
    async with client.realtime.connect(extra_query={"intent": "transcription"}) as conn:
        created = await opened(conn)
        session = created["session"]
        assert session["type"] == "transcription" and session["object"] == "realtime.transcription_session"
        await update_session(
            conn,
            {
                "type": "transcription",
                "audio": {"input": {"transcription": {"model": "gpt-4o-transcribe", "language": "en"}}},
            },
        )
        await append_audio(conn, audio)
        events = await collect_until(
            conn, "conversation.item.input_audio_transcription.completed", timeout=120
        )
        events += await collect_until(
            conn, "conversation.item.input_audio_transcription.completed", timeout=120
        )
        await conn.response.create()
        events += await collect_until(conn, "error")
    # Completions may come in any order (as OpenAI's do); match them to the commits.
    transcripts = {
        e["item_id"]: e["transcript"]
        for e in of_type(events, "conversation.item.input_audio_transcription.completed")
    }
    committed = [e["item_id"] for e in of_type(events, "input_audio_buffer.committed")]
    assert len(committed) == 2 and set(committed) == set(transcripts)
    assert "order" in words(transcripts[committed[0]]), transcripts
    assert "much" in words(transcripts[committed[1]]), transcripts
    assert "response.created" not in types_of(events)
    assert events[-1]["error"]["code"] == "invalid_event"
    assert scripted.requests == []


@pytest.mark.parametrize("kind", ["near_field", "far_field"])
async def test_noise_reduction_cleans_what_vad_and_recognition_hear(
    client: AsyncOpenAI, scripted: ScriptedLLM, kind: str
) -> None:
    scripted.script("Let me check.")
    clean = np.frombuffer(silence(600) + speech("please check my order status") + silence(1500), dtype="<i2")
    noisy = mix_at_snr(clean, white_noise(len(clean) / 24, rate=RATE, seed=3), 5).astype("<i2").tobytes()
    session = _turn_detection(type="server_vad")
    session["audio"]["input"]["noise_reduction"] = {"type": kind}
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await opened(conn)
        updated = await update_session(conn, session)
        assert updated["session"]["audio"]["input"]["noise_reduction"]["type"] == kind
        await append_audio(conn, noisy)
        events = await collect_until(
            conn, "conversation.item.input_audio_transcription.completed", timeout=120
        )
        await conn.conversation.item.retrieve(item_id=one(events, "input_audio_buffer.committed")["item_id"])
        events += await collect_until(conn, "conversation.item.retrieved")
    started = one(events, "input_audio_buffer.speech_started")
    assert 200 <= started["audio_start_ms"] <= 600, started  # speech at 600 ms, less the prefix
    transcript = one(events, "conversation.item.input_audio_transcription.completed")["transcript"]
    assert {"check", "order"} <= words(transcript), transcript
    # The item keeps the client's own audio, noise and all.
    item_audio = base64.b64decode(
        of_type(events, "conversation.item.retrieved")[0]["item"]["content"][0]["audio"]
    )
    noisy_pcm = np.frombuffer(noisy, dtype="<i2")
    kept = np.frombuffer(item_audio, dtype="<i2")
    start = started["audio_start_ms"] * 24
    assert np.array_equal(kept[:4800], noisy_pcm[start : start + 4800])
