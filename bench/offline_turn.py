"""One spoken turn with the real offline engines: commit -> first audio, and where the time goes.

The server runs in-process with the engines ``load_engines`` builds from the settings (by default
stt=pocketsphinx, tts=espeak, vad=silero) and an instant language model: a scripted
OpenAI-compatible server on loopback (``tests/scripted_llm.py``) answering at once with two
sentences, reached through the real ``openai`` engine. Each utterance is 3 s of flite speech
(``flite -voice rms``), streamed at real time in 100 ms appends with ``turn_detection: null``, then
``input_audio_buffer.commit`` and at once ``response.create``.

Thin wrappers around the engines record ``time.perf_counter()`` as they work, so the time from
sending the commit to receiving the first ``response.output_audio.delta`` splits into:

- STT finalisation: commit sent -> the recogniser's ``finish()`` returned the transcript;
- LLM first token: the model's ``stream()`` started -> its first text delta;
- TTS first audio: ``synthesize()`` of the first sentence started -> its first chunk;
- plumbing: everything else (the session, the sentence chunker waiting for a whole first sentence,
  resampling, JSON, the socket), itemised below it.

    .venv/bin/python bench/offline_turn.py [-n 10] [--stt pocketsphinx] [--tts espeak] [-v]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import time
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np

# Run as a script: the benchmarks (common) and the repository root (tests) on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tests.scripted_llm import Reply, ScriptedLLM
from tests.speech import flite_speech

from common import (
    WIRE_RATE,
    RealtimeClient,
    Stamp,
    counted_parser,
    header,
    median,
    ms,
    pcm_chunks,
    percentile,
    running_server,
    table,
)
from parley.config import Settings
from parley.engines.base import (
    PCM,
    ChatRequest,
    EngineError,
    LanguageModel,
    LLMEvent,
    RecognitionStream,
    SpeechToText,
    TextDelta,
    TextToSpeech,
    Transcription,
)
from parley.engines.registry import Engines, UnknownEngineError, load_engines

UTTERANCE_S = 3.0
CHUNK_MS = 100
SENTENCES = (
    "What is the weather like tomorrow morning",
    "Please call my sister at six tonight",
    "How far is it from Paris to Berlin",
    "Turn off the lights in the kitchen",
    "When does the next train to the airport leave",
    "Tell me a story about a dragon",
    "I would like to order a large pizza",
    "How does a rainbow form in the sky",
    "Set an alarm for seven thirty please",
    "What should I cook for dinner tonight",
)
REPLIES = (
    "Sure, I can help you with that. Here is what I found for you.",
    "That sounds like a good plan. Let me know if you need anything else.",
    "Of course, I will take care of it right away. Is there anything else?",
)


# ----------------------------------------------------------------------------------------- speech


def utterance(text: str, seconds: float = UTTERANCE_S) -> bytes:
    """``text`` spoken by flite's rms voice (``tests/speech.py``) as 24 kHz PCM16, padded with
    silence to ``seconds`` (every sentence here speaks in under 3 s)."""
    try:
        speech = flite_speech(text, WIRE_RATE, "rms")
    except RuntimeError as exc:
        raise SystemExit(f"offline_turn: {exc}") from exc
    padded = np.zeros(max(len(speech), int(seconds * WIRE_RATE)), dtype=np.int16)
    padded[: len(speech)] = speech
    return padded.astype("<i2").tobytes()


# ----------------------------------------------------------------------------------------- timing


@dataclass
class Marks:
    """Engine timestamps (``time.perf_counter()``) in the order they happened."""

    log: list[tuple[str, float]] = field(default_factory=list)

    def add(self, name: str) -> None:
        self.log.append((name, time.perf_counter()))

    def first(self, name: str, after: float) -> float | None:
        return next((at for n, at in self.log if n == name and at >= after), None)


class TimedStream:
    def __init__(self, inner: RecognitionStream, marks: Marks) -> None:
        self.inner = inner
        self.marks = marks

    async def feed(self, pcm: PCM) -> str | None:
        return await self.inner.feed(pcm)

    async def finish(self) -> Transcription:
        self.marks.add("stt.finish.start")
        result = await self.inner.finish()
        self.marks.add("stt.finish.end")
        return result

    def close(self) -> None:
        self.inner.close()


Engine = TypeVar("Engine", SpeechToText, LanguageModel, TextToSpeech)


class Timed(Generic[Engine]):
    """Wraps an engine: the same name and warm-up; subclasses add the timestamps to ``marks``."""

    def __init__(self, inner: Engine, marks: Marks) -> None:
        self.inner: Engine = inner
        self.marks = marks
        self.name = inner.name

    async def warm_up(self) -> None:
        await self.inner.warm_up()


class TimedSTT(Timed[SpeechToText]):
    def __init__(self, inner: SpeechToText, marks: Marks) -> None:
        super().__init__(inner, marks)
        self.sample_rate = inner.sample_rate

    def start(
        self, *, language: str | None = None, prompt: str | None = None, channel: dict[str, Any] | None = None
    ) -> RecognitionStream:
        return TimedStream(self.inner.start(language=language, prompt=prompt, channel=channel), self.marks)


class TimedLLM(Timed[LanguageModel]):
    async def stream(self, request: ChatRequest) -> AsyncIterator[LLMEvent]:
        self.marks.add("llm.start")
        first = True
        async for event in self.inner.stream(request):
            if first and isinstance(event, TextDelta) and event.text:
                first = False
                self.marks.add("llm.first_token")
            yield event


class TimedTTS(Timed[TextToSpeech]):
    def __init__(self, inner: TextToSpeech, marks: Marks) -> None:
        super().__init__(inner, marks)
        self.sample_rate = inner.sample_rate

    def voices(self) -> list[str]:
        return self.inner.voices()

    async def synthesize(self, text: str, *, voice: str, speed: float = 1.0) -> AsyncIterator[PCM]:
        self.marks.add("tts.start")
        first = True
        async for chunk in self.inner.synthesize(text, voice=voice, speed=speed):
            if first and len(chunk):
                first = False
                self.marks.add("tts.first_audio")
            yield chunk


def timed(engines: Engines, marks: Marks) -> Engines:
    return Engines(
        vad=engines.vad,
        stt=TimedSTT(engines.stt, marks),
        llm=TimedLLM(engines.llm, marks),
        tts=TimedTTS(engines.tts, marks),
    )


# ----------------------------------------------------------------------------------------- the turn

PARTS = (
    ("total: commit sent -> first audio delta received", "total"),
    ("STT finalisation: commit sent -> transcript ready", "stt"),
    ("  commit sent -> finish() called (queued audio fed)", "commit_to_stt"),
    ("  finish() itself", "stt_finish"),
    ("LLM first token: stream() called -> first text", "llm"),
    ("TTS first audio: synthesize() -> first chunk", "tts"),
    ("plumbing: the rest", "plumbing"),
    ("  transcript ready -> LLM stream() called", "stt_to_llm"),
    ("  first token -> first sentence sent to TTS", "token_to_sentence"),
    ("  first TTS chunk -> audio delta received", "tts_to_client"),
    ("(wire: commit sent -> transcription.completed)", "transcript_event"),
)


@dataclass
class Turn:
    parts: dict[str, float]
    transcript: str
    spoken: str


async def stream_utterance(client: RealtimeClient, pcm: bytes) -> None:
    """Append ``pcm`` at real time: each 100 ms chunk is sent once all of its audio has 'happened'."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for index, chunk in enumerate(pcm_chunks(pcm, CHUNK_MS)):
        delay = start + (index + 1) * CHUNK_MS / 1000 - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await client.append_audio(chunk)


@dataclass(frozen=True)
class ClientSide:
    """What the client saw of one turn; times are ``time.perf_counter()`` (CLOCK_MONOTONIC on Linux,
    so they compare across processes)."""

    commit_at: float
    first_delta_at: float
    transcribed_at: float
    transcript: str
    spoken: str


async def client_turn(url: str, pcm: bytes) -> ClientSide:
    """One session, one spoken turn: stream ``pcm`` at real time, commit, ask for a response."""
    async with RealtimeClient.connect(url) as client:
        await client.wait_for("session.created")
        transcription = {"model": "whisper-1", "language": "en"}
        await client.session_update(
            {"audio": {"input": {"turn_detection": None, "transcription": transcription}}}
        )
        await stream_utterance(client, pcm)
        since = client.mark()
        commit: Stamp = await client.send({"type": "input_audio_buffer.commit"})
        await client.send({"type": "response.create"})
        done = await client.wait_for("response.done", since, timeout_s=120)
        response = done.event["response"]
        if response["status"] != "completed":
            raise RuntimeError(f"response ended {response['status']}: {response.get('status_details')}")
        first_delta = await client.wait_for("response.output_audio.delta", since)
        transcribed = await client.wait_for("conversation.item.input_audio_transcription.completed", since)
    spoken = "".join(
        part.get("transcript") or "" for item in response["output"] for part in item.get("content", [])
    )
    return ClientSide(
        commit.at, first_delta.at, transcribed.at, str(transcribed.event.get("transcript", "")), spoken
    )


def client_turn_blocking(url: str, pcm: bytes) -> ClientSide:
    """:func:`client_turn` on its own event loop (in the client process)."""
    return asyncio.run(client_turn(url, pcm))


def turn_parts(seen: ClientSide, marks: Marks) -> Turn:
    def mark(name: str) -> float:
        at = marks.first(name, seen.commit_at)
        if at is None:
            raise RuntimeError(f"no {name} after the commit")
        return at

    stt_start, stt_end = mark("stt.finish.start"), mark("stt.finish.end")
    llm_start, llm_token = mark("llm.start"), mark("llm.first_token")
    tts_start, tts_audio = mark("tts.start"), mark("tts.first_audio")
    total = seen.first_delta_at - seen.commit_at
    parts = {
        "total": total,
        "stt": stt_end - seen.commit_at,
        "llm": llm_token - llm_start,
        "tts": tts_audio - tts_start,
        "commit_to_stt": stt_start - seen.commit_at,
        "stt_finish": stt_end - stt_start,
        "stt_to_llm": llm_start - stt_end,
        "token_to_sentence": tts_start - llm_token,
        "tts_to_client": seen.first_delta_at - tts_audio,
        "transcript_event": seen.transcribed_at - seen.commit_at,
    }
    # total = stt + stt_to_llm + llm + token_to_sentence + tts + tts_to_client, exactly.
    parts["plumbing"] = total - parts["stt"] - parts["llm"] - parts["tts"]
    return Turn(parts, seen.transcript, seen.spoken)


async def bench(args: argparse.Namespace) -> tuple[list[Turn], str]:
    marks = Marks()
    utterances = [utterance(SENTENCES[i % len(SENTENCES)]) for i in range(args.utterances + args.warmup)]
    turns: list[Turn] = []
    # The client runs in a process of its own unless asked otherwise: sharing the server's event
    # loop, it would only read a frame once the server's next piece of work (the rest of the
    # reply, the next sentence) yields, which a remote client does not wait for.
    clients = None
    if not args.in_process_client:
        if time.get_clock_info("perf_counter").implementation != "clock_gettime(CLOCK_MONOTONIC)":
            raise SystemExit(
                "offline_turn: perf_counter is not CLOCK_MONOTONIC here; use --in-process-client"
            )
        clients = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    loop = asyncio.get_running_loop()
    try:
        async with ScriptedLLM() as llm:
            llm.script(*(Reply(text=REPLIES[i % len(REPLIES)]) for i in range(len(utterances))))
            settings = Settings(
                stt=args.stt,
                tts=args.tts,
                vad=args.vad,
                llm="openai",
                llm_base_url=llm.base_url,
                llm_model="scripted-model",
            )
            try:
                engines = load_engines(settings)
            except (ImportError, UnknownEngineError, EngineError) as exc:
                raise SystemExit(
                    f"offline_turn: cannot load the engines ({exc}); is `make setup` done?"
                ) from exc
            names = f"stt={engines.stt.name} tts={engines.tts.name} vad={settings.vad} llm=scripted (instant)"
            async with running_server(settings, timed(engines, marks)) as server:
                for index, pcm in enumerate(utterances):
                    # A session per utterance, as independent one-turn conversations.
                    if clients is None:
                        seen = await client_turn(server.ws_url, pcm)
                    else:
                        seen = await loop.run_in_executor(clients, client_turn_blocking, server.ws_url, pcm)
                    turn = turn_parts(seen, marks)
                    marks.log.clear()
                    if index < args.warmup:
                        continue
                    turns.append(turn)
                    if args.verbose:
                        print(
                            f"[{index - args.warmup + 1}] heard {turn.transcript!r} "
                            f"| total {ms(turn.parts['total'])} ms, stt {ms(turn.parts['stt'])} ms, "
                            f"llm {ms(turn.parts['llm'])} ms, tts {ms(turn.parts['tts'])} ms",
                            flush=True,
                        )
    finally:
        if clients is not None:
            clients.shutdown()
    return turns, names


def report(turns: list[Turn], names: str, args: argparse.Namespace) -> None:
    header(
        "offline turn: commit -> first response.output_audio.delta, real engines",
        f"engines: {names}\n"
        f"utterances: {len(turns)} measured after {args.warmup} warm-up, {UTTERANCE_S:g} s of flite speech "
        f"each, streamed at real time in {CHUNK_MS} ms appends, turn_detection null, one session each\n"
        f"client: {'on the server event loop' if args.in_process_client else 'in its own process'}, "
        "server in this process, loopback WebSocket",
    )
    rows = [["part (ms)", "median", "p95", "min", "max"]]
    for label, key in PARTS:
        values = [t.parts[key] for t in turns]
        rows.append([label, ms(median(values)), ms(percentile(values, 95)), ms(min(values)), ms(max(values))])
    print(table(rows))
    total = median([t.parts["total"] for t in turns])
    shares = ", ".join(
        f"{key} {median([t.parts[key] for t in turns]) / total:.0%}"
        for key in ("stt", "llm", "tts", "plumbing")
    )
    print(f"share of the median total: {shares} (medians of parts need not add up to the total's)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = counted_parser(__doc__, "utterances", "utterances", 10, 1, "utterances run first, not measured")
    parser.add_argument("--stt", default="pocketsphinx", help="speech-to-text engine (default pocketsphinx)")
    parser.add_argument("--tts", default="espeak", help="text-to-speech engine (default espeak)")
    parser.add_argument("--vad", default="silero", help="voice activity detector (default silero)")
    parser.add_argument(
        "--in-process-client",
        action="store_true",
        help="run the client on the server's event loop instead of in a process of its own",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="print each utterance's transcript and parts"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    turns, names = asyncio.run(bench(args))
    report(turns, names, args)


if __name__ == "__main__":
    main()
