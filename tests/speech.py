"""Test audio: speech from Debian's ``flite``, silence, white noise, and mixing at a given SNR.

Every function returns mono ``int16`` numpy arrays. flite is what the recogniser understands best
(DESIGN.md section 5); it is installed by ``make setup-test``. Noise is seeded, so tests repeat.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import soxr

PCM = npt.NDArray[np.int16]

_cache: dict[tuple[str, int, str], PCM] = {}


def flite_speech(text: str, rate: int = 16000, voice: str = "rms") -> PCM:
    """``text`` spoken by flite's ``voice`` (rms, slt, kal, awb...), resampled to ``rate`` Hz.

    Results are cached per (text, rate, voice); the returned array is read-only, copy it to change it.
    """
    key = (text, rate, voice)
    cached = _cache.get(key)
    if cached is not None:
        return cached
    flite = shutil.which("flite")
    if flite is None:
        raise RuntimeError(
            "Debian's `flite` is not installed, and the speech tests need it: run `make setup-test`."
        )
    with tempfile.TemporaryDirectory(prefix="parley-flite-") as tmp:
        path = Path(tmp) / "speech.wav"
        done = subprocess.run(
            [flite, "-voice", voice, "-t", text, "-o", str(path)], capture_output=True, text=True
        )
        if done.returncode != 0 or not path.exists():
            raise RuntimeError(f"flite failed for voice {voice!r}: {done.stderr.strip() or done.stdout}")
        with wave.open(str(path), "rb") as wav:
            if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
                raise RuntimeError("flite did not write 16-bit mono audio")
            native = wav.getframerate()
            pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.int16)
    if native != rate:
        pcm = soxr.resample(pcm, native, rate)
    pcm = np.asarray(pcm, dtype=np.int16)
    pcm.flags.writeable = False
    _cache[key] = pcm
    return pcm


def silence(ms: float, rate: int = 16000) -> PCM:
    """``ms`` milliseconds of digital silence."""
    return np.zeros(round(rate * ms / 1000), dtype=np.int16)


def white_noise(ms: float, rate: int = 16000, dbfs: float = -40.0, seed: int = 0) -> PCM:
    """``ms`` milliseconds of Gaussian white noise whose RMS is ``dbfs`` relative to full scale."""
    rng = np.random.default_rng(seed)
    rms = 32768.0 * 10 ** (dbfs / 20)
    noise = rng.standard_normal(round(rate * ms / 1000)) * rms
    return np.clip(np.round(noise), -32768, 32767).astype(np.int16)


def _rms(pcm: npt.NDArray[Any]) -> float:
    return float(np.sqrt(np.mean(np.square(pcm.astype(np.float64))))) if len(pcm) else 0.0


def mix_at_snr(speech: PCM, noise: PCM, snr_db: float) -> PCM:
    """``speech`` plus ``noise`` scaled so the speech-to-noise RMS ratio is ``snr_db`` dB.

    The noise is repeated or cut to the length of the speech; the sum is clipped to int16.
    """
    if not len(noise) or _rms(noise) == 0.0:
        raise ValueError("the noise must not be empty or silent")
    reps = -(-len(speech) // len(noise))
    bed = np.tile(noise, reps)[: len(speech)].astype(np.float64)
    scale = _rms(speech) / (_rms(bed) * 10 ** (snr_db / 20)) if _rms(bed) else 0.0
    mixed = speech.astype(np.float64) + bed * scale
    return np.clip(np.round(mixed), -32768, 32767).astype(np.int16)


def pink_noise(ms: float, rate: int = 16000, dbfs: float = -40.0, seed: int = 0) -> PCM:
    """``ms`` milliseconds of Gaussian pink (1/f) noise whose RMS is ``dbfs`` relative to full scale."""
    rng = np.random.default_rng(seed)
    samples = round(rate * ms / 1000)
    spectrum = np.fft.rfft(rng.standard_normal(samples))
    freqs = np.fft.rfftfreq(samples, 1 / rate)
    freqs[0] = freqs[1] if samples > 2 else 1.0
    noise = np.fft.irfft(spectrum / np.sqrt(freqs), samples)
    noise *= 32768.0 * 10 ** (dbfs / 20) / _rms(noise)
    return np.clip(np.round(noise), -32768, 32767).astype(np.int16)


def spectral_snr(reference: PCM, processed: PCM, frame: int = 512) -> float:
    """SNR in dB of ``processed`` against the clean ``reference``, on STFT magnitudes.

    Counts both the noise left and the speech lost, but not phase: a waveform SNR would also count
    the phase shift of an all-pass or DC-blocking filter, which no listener or recogniser hears.
    """
    count = min(len(reference), len(processed))
    hop = frame // 2
    window = np.hanning(frame)

    def magnitudes(pcm: PCM) -> npt.NDArray[np.float64]:
        samples = pcm[:count].astype(np.float64)
        frames = [samples[i : i + frame] * window for i in range(0, count - frame + 1, hop)]
        return np.abs(np.fft.rfft(np.array(frames), axis=1))

    clean, other = magnitudes(reference), magnitudes(processed)
    error = float(np.sum((other - clean) ** 2))
    return float(10 * np.log10(np.sum(clean**2) / max(error, 1e-9)))
