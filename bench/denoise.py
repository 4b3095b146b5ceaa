"""Noise suppression (``audio.input.noise_reduction``): its cost, and what it does to SNR, VAD and STT.

Prints figures, never passes or fails (DESIGN.md §7). The speech is flite (``tests/speech.py``); the
noise is seeded white and pink noise mixed at a given SNR over the whole clip, silences included.

- cost: CPU time (``time.thread_time``) to clean 20 s of noisy speech fed in 20 ms chunks, per second
  of audio, with the real-time factor and how many streams one core keeps up with; the 20 ms calls'
  wall-clock p50/p95/max; and RNNoise's native call alone on the same audio at 48 kHz.
- SNR: spectral SNR (STFT magnitudes against the clean speech, ``tests.speech.spectral_snr``) before
  and after, at 20, 10 and 0 dB; and how much of the noise alone is removed, in dB.
- VAD: Silero's speech decisions (threshold 0.5, 32 ms frames) on noise alone and on the noise-only
  frames of noisy speech (frames at least 96 ms from any speech of the clean clip), before and after,
  with the recall of speech frames after.
- ``--asr``: pocketsphinx keywords heard in noisy speech before and after (about two minutes more).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.speech import flite_speech, mix_at_snr, pink_noise, silence, spectral_snr, white_noise

from common import header, median, percentile, table
from parley.engines.base import PCM, NoiseReductionType
from parley.engines.denoise import rnnoise
from parley.engines.denoise.rnnoise import RNNoiseSuppressor
from parley.engines.stt.pocketsphinx import CMN_INIT, PocketsphinxSTT
from parley.engines.vad.silero import SileroVAD

RATE = 16000
CHUNK = 320
KINDS: tuple[NoiseReductionType, ...] = ("near_field", "far_field")
SENTENCES = {
    "I would like to check the status of my order": {"check", "status", "order"},
    "The weather in London is cloudy with a chance of rain": {"weather", "london", "rain"},
    "Cancel my subscription and send me a refund": {"cancel", "subscription", "refund"},
    "Please transfer me to a human agent": {"transfer", "human", "agent"},
    "My account number is four five six seven": {"account", "number", "four", "five", "six", "seven"},
    "Can you book a table for two at eight tonight": {"book", "table", "two", "eight", "tonight"},
}
Noise = Callable[[float, int], PCM]
NOISES: dict[str, Noise] = {
    "white": lambda ms, seed: white_noise(ms, RATE, dbfs=-30, seed=seed),
    "pink": lambda ms, seed: pink_noise(ms, RATE, dbfs=-30, seed=seed),
}


def utterance(text: str) -> PCM:
    return np.concatenate([silence(300), flite_speech(text, RATE), silence(500)])


def mixed(clean: PCM, noise: str, snr_db: float, seed: int) -> PCM:
    return mix_at_snr(clean, NOISES[noise](len(clean) * 1000 / RATE, seed), snr_db)


def denoise(pcm: PCM, kind: NoiseReductionType, strength: float | None = None) -> PCM:
    suppressor = RNNoiseSuppressor(kind, strength, RATE)
    out = [suppressor.process(pcm[i : i + CHUNK]) for i in range(0, len(pcm), CHUNK)]
    return np.concatenate([*out, suppressor.flush()])


def level_db(pcm: npt.NDArray[np.int16]) -> float:
    return float(10 * np.log10(np.mean(pcm.astype(np.float64) ** 2) + 1e-9))


# -------------------------------------------------------------------------------------- cost


def cost() -> None:
    speech = np.concatenate([utterance(text) for text in SENTENCES])
    speech = np.resize(speech, 20 * RATE)
    noisy = mix_at_snr(speech, white_noise(20_000, RATE, seed=1), 10)
    seconds = len(noisy) / RATE
    rows = [["stream", "CPU ms per s", "RTF", "streams per core", "20 ms call p50 µs", "p95 µs", "max µs"]]
    for kind, rate in (
        ("near_field", 16000),
        ("far_field", 16000),
        ("near_field", 8000),
        ("far_field", 24000),
    ):
        audio = noisy if rate == RATE else np.asarray(resample(noisy, rate), dtype=np.int16)
        suppressor = RNNoiseSuppressor(kind, None, rate)  # type: ignore[arg-type]
        chunk = rate // 50
        suppressor.process(audio[: rate // 2])  # warm
        suppressor.reset()
        calls: list[float] = []
        cpu = time.thread_time()
        for start in range(0, len(audio), chunk):
            began = time.perf_counter()
            suppressor.process(audio[start : start + chunk])
            calls.append(time.perf_counter() - began)
        suppressor.flush()
        per_s = (time.thread_time() - cpu) * 1000 / seconds
        rows.append(
            [
                f"{kind} {rate // 1000} kHz",
                f"{per_s:.1f}",
                f"{per_s / 1000:.3f}",
                f"{1000 / per_s:.0f}",
                f"{median(calls) * 1e6:.0f}",
                f"{percentile(calls, 95) * 1e6:.0f}",
                f"{max(calls) * 1e6:.0f}",
            ]
        )
    rows.append(["RNNoise native call alone", f"{native_cost(noisy):.1f}", "", "", "", "", ""])
    print(table(rows))


def resample(pcm: PCM, rate: int) -> npt.NDArray[np.float32]:
    import soxr

    return np.clip(np.rint(soxr.resample(pcm.astype(np.float32), RATE, rate)), -32768, 32767)


def native_cost(noisy: PCM) -> float:
    """CPU ms per second of audio of ``rnnoise_process_frame`` alone, on the audio at 48 kHz."""
    library = rnnoise.library()
    audio48 = np.asarray(resample(noisy, 48000), dtype=np.float32)
    state = library.create()
    out = np.empty(rnnoise.FRAME, dtype=np.float32)
    frames = [np.ascontiguousarray(audio48[i : i + rnnoise.FRAME]) for i in range(0, len(audio48) - 479, 480)]
    cpu = time.thread_time()
    for frame in frames:
        library.process_frame(state, frame, out)
    spent = time.thread_time() - cpu
    library.destroy(state)
    return spent * 1000 / (len(frames) * rnnoise.FRAME / 48000)


# -------------------------------------------------------------------------------------- SNR


def snr_figures() -> None:
    rows = [["noise", "input SNR", "before", "near_field", "far_field", "gain near", "gain far"]]
    for noise in NOISES:
        for snr_db in (20, 10, 0):
            before: list[float] = []
            after: dict[str, list[float]] = {kind: [] for kind in KINDS}
            for seed, text in enumerate(SENTENCES, start=1):
                clean = utterance(text)
                dirty = mixed(clean, noise, snr_db, seed)
                before.append(spectral_snr(clean, dirty))
                for kind in KINDS:
                    after[kind].append(spectral_snr(clean, denoise(dirty, kind)))
            b, near, far = np.mean(before), np.mean(after["near_field"]), np.mean(after["far_field"])
            rows.append(
                [
                    noise,
                    f"{snr_db} dB",
                    f"{b:.1f}",
                    f"{near:.1f}",
                    f"{far:.1f}",
                    f"{near - b:+.1f}",
                    f"{far - b:+.1f}",
                ]
            )
    print("spectral SNR (dB, mean over the sentences):")
    print(table(rows))
    rows = [["noise alone, -30 dBFS", "near_field", "far_field", "near 0.5", "far 0.5"]]
    for noise in NOISES:
        pcm = NOISES[noise](5000, 9)
        steady = slice(RATE, None)
        removed = [
            level_db(pcm[steady]) - level_db(denoise(pcm, kind, strength)[steady])
            for strength in (None, 0.5)
            for kind in KINDS
        ]
        rows.append([noise, *(f"{r:.1f} dB" for r in removed)])
    print("noise removed (level of the noise alone before minus after, from the second second on):")
    print(table(rows))


# -------------------------------------------------------------------------------------- VAD


def vad_decisions(pcm: PCM) -> npt.NDArray[np.bool_]:
    vad = SileroVAD()
    size = vad.frame_samples
    return np.array(
        [vad.speech_probability(pcm[i : i + size]) >= 0.5 for i in range(0, len(pcm) - size + 1, size)]
    )


def vad_figures() -> None:
    rows = [["noise alone (10 s)", "before", "near_field", "far_field"]]
    for noise in NOISES:
        for dbfs in (-30, -20, -10):
            pcm = np.asarray(NOISES[noise](10_000, 3), dtype=np.float64) * 10 ** ((dbfs + 30) / 20)
            pcm16 = np.clip(np.rint(pcm), -32768, 32767).astype(np.int16)
            rates = [vad_decisions(pcm16).mean()] + [
                vad_decisions(denoise(pcm16, kind)).mean() for kind in KINDS
            ]
            rows.append([f"{noise} {dbfs} dBFS", *(f"{r:.1%}" for r in rates)])
    print("Silero: share of noise-only frames called speech")
    print(table(rows))

    texts = list(SENTENCES)
    rows = [["noisy speech", "before", "near_field", "far_field", "recall before", "near", "far"]]
    size = SileroVAD.frame_samples
    for noise in NOISES:
        for snr_db in (10, 0):
            false = np.zeros(3)
            hits = np.zeros(3)
            quiet_total = speech_total = 0
            for seed, text in enumerate(texts, start=1):
                clean = np.concatenate(
                    [
                        silence(1000),
                        flite_speech(text),
                        silence(1500),
                        flite_speech(texts[seed % len(texts)]),
                        silence(1500),
                    ]
                )
                energy = np.array(
                    [level_db(clean[i : i + size]) for i in range(0, len(clean) - size + 1, size)]
                )
                speech = energy > 20 * np.log10(32768) - 45
                quiet = np.convolve(speech, np.ones(7), "same") == 0
                dirty = mixed(clean, noise, snr_db, seed)
                for index, pcm in enumerate([dirty, *(denoise(dirty, kind) for kind in KINDS)]):
                    decided = vad_decisions(pcm)[: len(speech)]
                    false[index] += np.sum(decided & quiet)
                    hits[index] += np.sum(decided & speech)
                quiet_total += int(np.sum(quiet))
                speech_total += int(np.sum(speech))
            rows.append(
                [
                    f"{noise} {snr_db} dB SNR",
                    *(f"{f / quiet_total:.1%}" for f in false),
                    *(f"{h / speech_total:.2f}" for h in hits),
                ]
            )
    print("Silero: share of noise-only frames of noisy speech called speech, and recall of speech frames")
    print(table(rows))


# -------------------------------------------------------------------------------------- ASR


async def asr_figures() -> None:
    stt = PocketsphinxSTT(max_decoders=1)

    async def heard(pcm: PCM) -> set[str]:
        stt.pool.cmn = CMN_INIT
        stream = stt.start()
        for start in range(0, len(pcm), 1600):
            await stream.feed(pcm[start : start + 1600])
        return set((await stream.finish()).text.split())

    total = sum(len(words) for words in SENTENCES.values())
    rows = [["condition", "before", "near_field", "far_field"]]
    for noise, snr_db in (
        ("clean", 0),
        ("white", 20),
        ("white", 10),
        ("white", 5),
        ("pink", 10),
        ("pink", 5),
    ):
        found = [0, 0, 0]
        for seed, (text, words) in enumerate(SENTENCES.items(), start=1):
            clean = utterance(text)
            dirty = clean if noise == "clean" else mixed(clean, noise, snr_db, seed)
            for index, pcm in enumerate([dirty, *(denoise(dirty, kind) for kind in KINDS)]):
                found[index] += len(words & await heard(pcm))
        label = "clean" if noise == "clean" else f"{noise} {snr_db} dB SNR"
        rows.append([label, *(f"{f}/{total}" for f in found)])
    print("pocketsphinx: keywords heard")
    print(table(rows))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--asr", action="store_true", help="also count pocketsphinx keywords (about two minutes more)"
    )
    args = parser.parse_args()
    header(
        "noise suppression (RNNoise)",
        f"flite speech, {len(SENTENCES)} sentences, 16 kHz, 20 ms chunks; latency "
        f"{RNNoiseSuppressor().latency_ms:.0f} ms",
    )
    cost()
    print()
    snr_figures()
    print()
    vad_figures()
    if args.asr:
        print()
        asyncio.run(asr_figures())


if __name__ == "__main__":
    main()
