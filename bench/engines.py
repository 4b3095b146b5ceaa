"""Every engine that runs here: load time, time to first result, real-time factor, and for recognisers
the word error rate on a generated test set (the method of ENGINES.md: 20 customer-support sentences
spoken by flite's rms voice at 16 kHz, streamed in real time in 100 ms chunks). A recogniser's cost is
the CPU time of this whole process (every thread, including a loopback server's) per second of audio:
on 2 cores, 0.5 means one core busy half the time. A synthesiser's RTF is wall time per second of
audio made.

No real Whisper, Piper, Kokoro or GGUF weights can be downloaded on this machine, so unless a model
is named on the command line those engines run tiny RANDOM models the tests write: their figures
measure Parley's plumbing and the libraries' overhead, not what a real model costs, and their WER is
meaningless (printed as such). Give real files to measure real models:

    .venv/bin/python bench/engines.py [--only stt,tts,llm,vad] [-n 20] [--whisper-model DIR]
        [--piper-voice X.onnx] [--kokoro-model X.onnx --kokoro-voices voices.bin] [--llama-model X.gguf]

The ``openai`` engines talk to the tests' OpenAI-compatible speech server on loopback (itself backed
by pocketsphinx and espeak-ng), and in realtime mode to another Parley; their figures are the remote
protocol's overhead on top of those engines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tests.speech import flite_speech
from tests.speech_server import SpeechServer

from common import header, median, percentile, running_server, table
from parley.config import Settings
from parley.engines import registry
from parley.engines.base import ChatRequest, TextDelta
from parley.protocol.session_config import VOICES

SENTENCES = [
    "I would like to check the status of order four five six",
    "My account number is seven three nine two",
    "Can you tell me when my package will arrive",
    "I want to cancel my subscription",
    "Please send me a refund for the broken item",
    "What time does the store open on Sunday",
    "I need to change my delivery address",
    "The payment did not go through yesterday",
    "Can I speak to a human agent please",
    "How much does the premium plan cost",
    "I forgot my password and cannot log in",
    "Please book a table for two at eight tonight",
    "Is there a charge for returning the shoes",
    "My phone number is five five five one two three four",
    "The order arrived damaged and the box was open",
    "Do you ship to Canada and Mexico",
    "I would like to upgrade my internet speed",
    "Thank you that is all I needed today",
    "Can you repeat the last thing you said",
    "Where is the nearest store to my home",
]
REPLY = (
    "Your order four five six was shipped yesterday and should arrive on Friday. "
    "Is there anything else I can help you with today?"
)
CHUNK = 1600  # 100 ms at 16 kHz


def wer(reference: str, hypothesis: str) -> tuple[int, int]:
    """(word edits, reference words) by Levenshtein over lower-cased words."""
    ref, hyp = reference.lower().split(), hypothesis.lower().split()
    row = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, 1):
        previous, row[0] = row[0], i
        for j, other in enumerate(hyp, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (word != other))
    return row[-1], len(ref)


async def timed(make: Callable[[], Any]) -> tuple[Any, float]:
    """An engine and the seconds its creation and warm-up took."""
    started = time.perf_counter()
    engine = make()
    await engine.warm_up()
    return engine, time.perf_counter() - started


async def bench_stt(name: str, settings: Settings, count: int, random_model: bool) -> list[str]:
    """Each sentence streamed in real time (100 ms chunks), as a session feeds the recogniser."""
    engine, load_s = await timed(lambda: registry.create("stt", name, settings))
    edits = words = 0
    first_partials, finals, cpu_s, audio_s = [], [], 0.0, 0.0
    for text in SENTENCES[:count]:
        pcm = flite_speech(text, 16000)
        stream = engine.start(language="en")
        cpu_before, started = time.process_time(), time.perf_counter()
        first = None
        for n, i in enumerate(range(0, len(pcm), CHUNK)):
            await asyncio.sleep(max(0.0, started + n * CHUNK / 16000 - time.perf_counter()))
            if await stream.feed(pcm[i : i + CHUNK]) and first is None:
                first = time.perf_counter() - started
        finish_at = time.perf_counter()
        result = await stream.finish()
        finals.append(time.perf_counter() - finish_at)
        cpu_s += time.process_time() - cpu_before
        stream.close()
        audio_s += len(pcm) / 16000
        if first is not None:
            first_partials.append(first)
        e, n = wer(text, result.text)
        edits, words = edits + e, words + n
    label = f"{name} (tiny random model)" if random_model else name
    return [
        label,
        f"{load_s * 1000:.0f}",
        f"{median(first_partials) * 1000:.0f}" if first_partials else "none",
        f"{median(finals) * 1000:.0f} / {percentile(finals, 95) * 1000:.0f}",
        f"{cpu_s / audio_s:.3f}",
        "meaningless" if random_model else f"{100 * edits / words:.1f} %",
    ]


async def bench_tts(name: str, settings: Settings, random_model: bool) -> list[str]:
    engine, load_s = await timed(lambda: registry.create("tts", name, settings))
    firsts, rtfs = [], []
    for voice in VOICES[:5]:
        started = time.perf_counter()
        first, samples = None, 0
        async for chunk in engine.synthesize(REPLY, voice=voice):
            first = first if first is not None else time.perf_counter() - started
            samples += len(chunk)
        elapsed = time.perf_counter() - started
        firsts.append(first or elapsed)
        rtfs.append(elapsed / max(samples / engine.sample_rate, 1e-9))
    label = f"{name} (tiny random model)" if random_model else name
    return [label, f"{load_s * 1000:.0f}", f"{median(firsts) * 1000:.1f}", f"{median(rtfs):.4f}"]


async def bench_llm(name: str, settings: Settings, random_model: bool) -> list[str]:
    engine, load_s = await timed(lambda: registry.create("llm", name, settings))
    firsts, rates = [], []
    request = ChatRequest(
        messages=[{"role": "user", "content": "Where is my order four five six?"}], max_output_tokens=64
    )
    for _ in range(5):
        started = time.perf_counter()
        first, deltas = None, 0
        async for event in engine.stream(request):
            if isinstance(event, TextDelta):
                first = first if first is not None else time.perf_counter() - started
                deltas += 1
        elapsed = time.perf_counter() - started
        firsts.append(first or elapsed)
        rates.append(deltas / max(elapsed - (first or 0), 1e-9))
    label = f"{name} (tiny random model)" if random_model else name
    return [label, f"{load_s * 1000:.0f}", f"{median(firsts) * 1000:.1f}", f"{median(rates):.0f}"]


def bench_vad(name: str, settings: Settings) -> list[str]:
    make = registry._factory("vad", name)
    pcm = flite_speech(" ".join(SENTENCES[:3]), 16000)
    frames = [pcm[i : i + 512] for i in range(0, len(pcm) - 511, 512)]
    vad = make(settings)
    started = time.perf_counter()
    for frame in frames:
        vad.speech_probability(frame)
    per_frame = (time.perf_counter() - started) / len(frames)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    detectors = [make(settings) for _ in range(100)]
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    del detectors
    return [name, f"{per_frame * 1e6:.0f}", f"{100 * per_frame / 0.032:.2f} %", f"{grown_kib / 100:.0f}"]


@contextlib.asynccontextmanager
async def models(args: argparse.Namespace) -> AsyncIterator[tuple[Settings, set[str]]]:
    """Settings naming a model for every engine (tiny random ones unless given), and which are random."""
    from tests.engine_models.gguf import write_tiny_gguf
    from tests.engine_models.onnx_tts import write_kokoro_model, write_kokoro_voices, write_piper_voice
    from tests.engine_models.whisper import build_whisper_model

    random: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="parley-bench-models-") as tmp_dir:
        tmp = Path(tmp_dir)
        if args.whisper_model is None:
            args.whisper_model = build_whisper_model(tmp / "whisper")
            random.add("faster-whisper")
        if args.piper_voice is None:
            args.piper_voice = write_piper_voice(tmp / "piper")
            random.add("piper")
        if args.kokoro_model is None:
            args.kokoro_model = write_kokoro_model(tmp / "kokoro.onnx")
            args.kokoro_voices = write_kokoro_voices(tmp / "voices.bin", ["af_heart", "am_echo"])
            random.add("kokoro")
        if args.llama_model is None:
            args.llama_model = write_tiny_gguf(tmp / "tiny.gguf")
            random.add("llama-cpp")
        async with SpeechServer() as speech:
            await speech.stt.warm_up()
            await speech.tts.warm_up()
            settings = Settings(
                stt_whisper_model=str(args.whisper_model),
                tts_piper_voice=args.piper_voice,
                tts_kokoro_model=args.kokoro_model,
                tts_kokoro_voices=args.kokoro_voices,
                llm_llama_model=args.llama_model,
                stt_openai_base_url=speech.base_url,
                tts_openai_base_url=speech.base_url,
            )
            yield settings, random


async def run(args: argparse.Namespace) -> None:
    only = set(args.only.split(","))
    header("Engines", f"{args.n} sentences of flite speech for recognisers; a 7 s two-sentence reply for TTS")
    async with models(args) as (settings, random):
        if "stt" in only:
            rows = [
                ["engine", "load ms", "first partial ms", "final ms (median / p95)", "CPU s / audio s", "WER"]
            ]
            for name in ("pocketsphinx", "faster-whisper", "openai"):
                rows.append(await bench_stt(name, settings, args.n, name in random))
            parley = registry.load_engines(Settings(llm="echo"))
            async with running_server(Settings(), parley) as server:
                realtime = settings.model_copy(
                    update={
                        "stt_openai_base_url": f"http://127.0.0.1:{server.port}/v1",
                        "stt_openai_realtime": True,
                    }
                )
                row = await bench_stt("openai", realtime, args.n, False)
                rows.append([f"{row[0]} (realtime socket to a Parley)", *row[1:]])
            print("Speech to text\n" + table(rows) + "\n", flush=True)
        if "tts" in only:
            rows = [["engine", "load ms", "first audio ms", "RTF"]]
            for name in ("espeak", "piper", "kokoro", "openai"):
                rows.append(await bench_tts(name, settings, name in random))
            print("Text to speech\n" + table(rows) + "\n", flush=True)
        if "llm" in only:
            rows = [["engine", "load ms", "first token ms", "tokens/s"]]
            rows.append(await bench_llm("llama-cpp", settings, "llama-cpp" in random))
            print("Language model (64 tokens at most)\n" + table(rows) + "\n", flush=True)
        if "vad" in only:
            rows = [["engine", "µs per 32 ms frame", "of one core", "KiB per session"]]
            for name in ("silero", "silero-onnx"):
                rows.append(bench_vad(name, settings))
            print("Voice activity detection\n" + table(rows) + "\n", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default="stt,tts,llm,vad")
    parser.add_argument("-n", type=int, default=len(SENTENCES), help="sentences for the recognisers")
    parser.add_argument("--whisper-model", type=Path)
    parser.add_argument("--piper-voice", type=Path)
    parser.add_argument("--kokoro-model", type=Path)
    parser.add_argument("--kokoro-voices", type=Path)
    parser.add_argument("--llama-model", type=Path)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download a model here
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
