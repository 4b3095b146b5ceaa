"""The input audio that VAD and recognition hear: decoded, and cleaned when noise reduction is on.

``audio.input.noise_reduction`` puts a noise suppressor (engines ``NoiseSuppressor``) between the
wire and turn detection / recognition; the buffer and the committed items keep the client's own
audio. The suppressor runs at the input's own rate, in a worker thread (its native code releases the
GIL), and lags its input by a fixed latency, which positions account for. (A resampler in front of it
would hold back a varying 6-38 ms more, which turn detection would hear as late speech.) A short
history of what was heard lets a turn's recognition start at its onset, prefix padding included.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import numpy as np

from parley.engines.base import PCM, NoiseSuppressor
from parley.engines.registry import Engines

HISTORY_MS = 3000
"""Heard audio kept for replay at a turn's onset: more than any prefix padding plus a detection."""


class HeardAudio:
    """Input audio as the detectors hear it, at ``rate``, with a replayable recent history."""

    def __init__(self, engines: Engines, noise_reduction: dict[str, Any] | None, rate: int) -> None:
        self.noise_reduction = dict(noise_reduction) if noise_reduction is not None else None
        self.rate = rate
        self._suppressor: NoiseSuppressor | None = None
        if noise_reduction is not None:
            self._suppressor = engines.denoise(
                noise_reduction["type"], noise_reduction.get("strength"), sample_rate=rate
            )
            if self._suppressor.sample_rate != rate:
                raise ValueError(f"the {self._suppressor.name} suppressor cannot run at {rate} Hz")
        self.latency_ms = self._suppressor.latency_ms if self._suppressor is not None else 0.0
        self._history: deque[PCM] = deque()
        self._history_samples = 0
        self._keep = self.rate * HISTORY_MS // 1000

    async def process(self, pcm: PCM) -> PCM:
        """Decoded input audio in; the audio heard out (cleaned, possibly shorter: it lags)."""
        if self._suppressor is not None:
            pcm = await asyncio.to_thread(self._suppressor.process, pcm)
        if len(pcm):  # chunks are kept as they come: nothing is copied on this per-append path
            self._history.append(pcm)
            self._history_samples += len(pcm)
            while self._history_samples - len(self._history[0]) >= self._keep:
                self._history_samples -= len(self._history.popleft())
        return pcm

    def since(self, position_ms: float, end_ms: float) -> PCM:
        """The heard audio from session position ``position_ms``, the input being at ``end_ms``."""
        heard_end_ms = end_ms - self.latency_ms
        samples = max(0, round((heard_end_ms - position_ms) * self.rate / 1000))
        if not samples or not self._history:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(self._history)[-samples:]
