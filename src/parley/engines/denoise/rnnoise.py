"""Noise suppression with RNNoise 0.2 (Xiph), the library inside the ``pyrnnoise`` wheel.

RNNoise is the recurrent-network suppressor of WebRTC-style stacks (Jitsi, OBS, Mumble, pipecat): it
estimates a gain per critical band every 10 ms frame of 48 kHz audio, plus a pitch filter, and says
how likely the frame is speech. Its weights are compiled into ``librnnoise.so``, so nothing is
downloaded. ``pyrnnoise``'s own Python modules import soundfile, tqdm (and, in later releases, PyAV and
matplotlib) to denoise files; this module loads the shared library with ctypes and imports none of it.
The native call releases the GIL (ctypes does), so streams can be cleaned in worker threads in
parallel. It costs about 60 ms of one core per second of audio (see ``bench/denoise.py``).

The pipeline, per stream: ``soxr`` to 48 kHz (unless the stream is at 48 kHz), RNNoise, a mix with
the dry signal and a speech gate, ``soxr`` back. The output is aligned with the input (RNNoise's own
20 ms delay is dropped; soxr streams are aligned), and emitted with a fixed latency (``LATENCY_S``)
that covers the resamplers' buffering, RNNoise's 10 ms frames and its delay, so that the output
length follows the input length exactly, whatever the chunk sizes (``NoiseSuppressor`` in base.py).

The two kinds of ``audio.input.noise_reduction`` (figures at ``strength`` 1) set two things on top
of RNNoise: an attenuation limit (RNNoise's output mixed with the dry signal at ``-limit_db``, as
DeepFilterNet's ``atten_lim_db`` does), and a gate driven by RNNoise's own speech probability that
lowers frames without speech by a further ``gate_db``. The gate opens at once, 20 ms ahead of the
audio (RNNoise's delay gives that look-ahead for free), and closes over 200 ms so word endings stay.

- ``near_field`` (headset, phone at the ear): speech is loud next to the noise, so the harm to avoid
  is damage to speech. Limit 24 dB, gate 6 dB: what RNNoise wrongly takes out of speech comes back at
  -24 dB, and the residual floor left in pauses is steady, which also keeps its "musical" remnants
  from looking like speech to the VAD (with a 60 dB limit, Silero called 34 % of frames of pink noise
  at -20 dBFS speech).
- ``far_field`` (laptop, conference-room microphone): diffuse room noise and reverberation reach the
  microphone at levels close to the speech, and what RNNoise leaves between words holds turns open
  and makes the recogniser hear words. Limit 40 dB, gate 12 dB: about 40 dB off stationary noise
  against 27 dB for near field, which on our 10 dB SNR white-noise set lifts pocketsphinx from 8 to
  14 of 23 keywords (1 of 23 without suppression), at the cost of 2 keywords at 20 dB SNR.

``strength`` (0..1) scales both decibel figures: 0 passes the audio through unchanged (still with
the fixed latency), 0.5 halves the limit and the gate's depth.
"""

from __future__ import annotations

import ctypes
import importlib.util
import math
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import soxr

from parley.config import Settings
from parley.engines.base import PCM, MissingDependencyError, NoiseReductionType

INSTALL = "pip install pyrnnoise==0.2.7"

RNNOISE_RATE = 48_000
FRAME = 480
"""RNNoise's frame: 10 ms at 48 kHz."""
RNNOISE_DELAY = 2 * FRAME
"""Samples (at 48 kHz) between a sample going into RNNoise and its cleaned copy coming out (measured
by cross-correlation on clean speech: 20 ms)."""

RESAMPLE_QUALITY = "QQ"
"""soxr's quick (cubic) resampler: it holds at most a few samples, where the windowed-sinc qualities
buffer up to 100 ms (300 ms at 8 kHz) in blocks, and it cleans as well as ``HQ`` on our test speech."""
LATENCY_S = 0.032
"""Fixed output latency: the audio held at any moment is at most one partial RNNoise frame (10 ms),
RNNoise's delay (20 ms) and a few samples in the resamplers; measured at 8 to 48 kHz with chunk
sizes from 1 sample to 3 s."""

_Floats = npt.NDArray[np.float32]
_EMPTY = np.zeros(0, dtype=np.int16)
_RAMP = np.arange(FRAME, dtype=np.float32) / FRAME


@dataclass(frozen=True)
class Profile:
    """How one ``noise_reduction.type`` uses RNNoise, at strength 1."""

    limit_db: float
    """The most RNNoise may lower anything: its output is mixed with the dry signal at -limit_db."""
    gate_db: float
    """Further attenuation of frames RNNoise scores as not speech (0: no gate)."""


PROFILES: dict[NoiseReductionType, Profile] = {
    "near_field": Profile(limit_db=24.0, gate_db=6.0),
    "far_field": Profile(limit_db=40.0, gate_db=12.0),
}

GATE_OPEN = 0.5
"""RNNoise speech probability at which the gate is fully open."""
GATE_CLOSED = 0.1
"""Probability at or below which the gate is fully closed."""
GATE_RELEASE_MS = 200.0
"""Time for the gate to close completely after speech."""


class _Library:
    """``librnnoise.so`` from the pyrnnoise wheel, found without importing the package."""

    def __init__(self, path: Path) -> None:
        lib = ctypes.CDLL(str(path))
        lib.rnnoise_create.argtypes = [ctypes.c_void_p]
        lib.rnnoise_create.restype = ctypes.c_void_p
        lib.rnnoise_destroy.argtypes = [ctypes.c_void_p]
        lib.rnnoise_destroy.restype = None
        lib.rnnoise_get_frame_size.restype = ctypes.c_int
        lib.rnnoise_process_frame.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        lib.rnnoise_process_frame.restype = ctypes.c_float
        if lib.rnnoise_get_frame_size() != FRAME:
            raise RuntimeError(f"{path}: RNNoise frames are not {FRAME} samples")
        self.lib = lib

    def create(self) -> int:
        state: int | None = self.lib.rnnoise_create(None)
        if not state:
            raise MemoryError("rnnoise_create failed")
        return state

    def destroy(self, state: int) -> None:
        self.lib.rnnoise_destroy(state)

    def process_frame(self, state: int, frame: _Floats, out: _Floats) -> float:
        return float(self.lib.rnnoise_process_frame(state, out.ctypes.data, frame.ctypes.data))

    def process_frames(self, state: int, frames: _Floats, out: _Floats) -> list[float]:
        """Run every whole frame of the contiguous ``frames`` into ``out``; their speech probabilities."""
        call = self.lib.rnnoise_process_frame
        into, source, step = out.ctypes.data, frames.ctypes.data, FRAME * frames.itemsize
        return [
            call(state, into + offset, source + offset)
            for offset in range(0, len(frames) // FRAME * step, step)
        ]


@cache
def library() -> _Library:
    spec = importlib.util.find_spec("pyrnnoise")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("rnnoise", INSTALL)
    path = Path(next(iter(spec.submodule_search_locations))) / "librnnoise.so"
    if not path.is_file():
        raise MissingDependencyError("rnnoise", INSTALL)
    return _Library(path)


def _to_pcm(samples: _Floats) -> PCM:
    return np.clip(np.rint(samples), -32768, 32767).astype(np.int16)


class _Gate:
    """Per-frame gains from RNNoise's speech probabilities: open at once, close over the release."""

    def __init__(self, depth_db: float) -> None:
        self.floor = 10 ** (-depth_db / 20)
        self.step = (1.0 - self.floor) / max(1.0, GATE_RELEASE_MS / 10.0)
        self.recent: list[float] = [0.0, 0.0]
        self.gain = self.floor

    def gains(self, probabilities: list[float]) -> _Floats:
        """Per-sample gains for the frames that come out with these probabilities (each frame's audio
        is two frames older than its probability): a ramp from one frame's gain to the next."""
        ends = np.empty(len(probabilities) + 1, dtype=np.float32)
        ends[0] = self.gain
        for index, probability in enumerate(probabilities, start=1):
            look = max(probability, *self.recent)
            self.recent = [self.recent[1], probability]
            openness = min(1.0, max(0.0, (look - GATE_CLOSED) / (GATE_OPEN - GATE_CLOSED)))
            self.gain = max(self.floor + (1.0 - self.floor) * openness, self.gain - self.step)
            ends[index] = self.gain
        ramps = ends[:-1, None] + (ends[1:] - ends[:-1])[:, None] * _RAMP[None, :]
        return np.asarray(ramps.reshape(-1), dtype=np.float32)


class RNNoiseSuppressor:
    """One stream of RNNoise noise suppression (see the module docstring)."""

    name = "rnnoise"

    def __init__(
        self,
        kind: NoiseReductionType = "near_field",
        strength: float | None = None,
        sample_rate: int = 16_000,
    ) -> None:
        if kind not in PROFILES:
            raise ValueError(f"unknown noise reduction type {kind!r}; choose near_field or far_field")
        strength = 1.0 if strength is None else float(strength)
        if not 0.0 <= strength <= 1.0 or math.isnan(strength):
            raise ValueError(f"noise reduction strength must be between 0 and 1, got {strength}")
        if not 8000 <= sample_rate <= RNNOISE_RATE:
            raise ValueError(f"noise suppression runs at 8 to 48 kHz, not {sample_rate} Hz")
        self.kind: NoiseReductionType = kind
        self.strength = strength
        self.sample_rate = sample_rate
        self.latency_samples = math.ceil(sample_rate * LATENCY_S)
        self.latency_ms = self.latency_samples * 1000 / sample_rate
        profile = PROFILES[kind]
        self.bypass = strength == 0.0
        self._dry_level = 10 ** (-strength * profile.limit_db / 20)
        self._gate_db = strength * profile.gate_db
        self._lib = None if self.bypass else library()
        self._state: int | None = None
        self._lock = threading.Lock()
        self._start()

    # ---------------------------------------------------------------------------------- streaming

    def process(self, pcm: PCM) -> PCM:
        samples = _check(pcm)
        with self._lock:
            self._taken += len(samples)
            if self.bypass:
                self._held.append(samples.astype(np.float32))
            else:
                self._held.append(self._clean(self._upsample(samples, last=False), last=False))
            return self._emit(self._taken - self.latency_samples)

    def flush(self) -> PCM:
        with self._lock:
            if not self.bypass and self._taken:
                tail = self._upsample(_EMPTY, last=True)
                whole = -(len(self._pending) + len(tail)) % FRAME + RNNOISE_DELAY
                padded = np.concatenate([tail, np.zeros(whole, dtype=np.float32)])
                self._held.append(self._clean(padded, last=True))
            out = self._emit(self._taken)
            short = self._taken - self._given
            if short > 0:  # never seen: the padding above pushes every sample through
                out = np.concatenate([out, np.zeros(short, dtype=np.int16)])
            self._close()
            self._start()
            return out

    def reset(self) -> None:
        with self._lock:
            self._close()
            self._start()

    def close(self) -> None:
        """Free the native state now rather than when garbage collected."""
        with self._lock:
            self._close()

    def __del__(self) -> None:
        self._close()

    # ---------------------------------------------------------------------------------- internals

    def _start(self) -> None:
        self._taken = 0
        self._given = 0
        self._held: list[_Floats] = []
        self._pending: _Floats = np.zeros(0, dtype=np.float32)
        self._dry: _Floats = np.zeros(RNNOISE_DELAY, dtype=np.float32)
        """The last input that has not come out of RNNoise yet, to mix with its output."""
        self._skip = RNNOISE_DELAY
        self._gate = _Gate(self._gate_db) if self._gate_db > 0 else None
        self._up: Any = None
        self._down: Any = None
        if self.bypass or self._lib is None:
            return
        self._state = self._lib.create()
        if self.sample_rate != RNNOISE_RATE:
            self._up = soxr.ResampleStream(
                self.sample_rate, RNNOISE_RATE, 1, dtype="float32", quality=RESAMPLE_QUALITY
            )
            self._down = soxr.ResampleStream(
                RNNOISE_RATE, self.sample_rate, 1, dtype="float32", quality=RESAMPLE_QUALITY
            )

    def _close(self) -> None:
        state, self._state = getattr(self, "_state", None), None
        if state and self._lib is not None:
            self._lib.destroy(state)

    def _upsample(self, samples: PCM, *, last: bool) -> _Floats:
        floats = samples.astype(np.float32)
        if self._up is None:
            return floats
        return np.asarray(self._up.resample_chunk(floats, last=last), dtype=np.float32)

    def _clean(self, samples48: _Floats, *, last: bool) -> _Floats:
        """Run whole RNNoise frames of 48 kHz audio; return the aligned cleaned audio at our rate."""
        assert self._lib is not None and self._state is not None
        pending = np.concatenate([self._pending, samples48])
        whole = len(pending) // FRAME * FRAME
        self._pending = pending[whole:]
        frames = np.ascontiguousarray(pending[:whole])
        out = np.empty(whole, dtype=np.float32)
        probabilities = self._lib.process_frames(self._state, frames, out)
        dry = np.concatenate([self._dry, frames])
        self._dry = dry[whole:]
        out += self._dry_level * (dry[:whole] - out)
        if self._gate is not None:
            out *= self._gate.gains(probabilities)
        if self._skip:
            dropped = min(self._skip, len(out))
            out = out[dropped:]
            self._skip -= dropped
        if self._down is None:
            return out
        return np.asarray(self._down.resample_chunk(out, last=last), dtype=np.float32)

    def _emit(self, due_total: int) -> PCM:
        due = min(due_total - self._given, sum(len(chunk) for chunk in self._held))
        if due <= 0:
            return _EMPTY.copy()
        held = np.concatenate(self._held) if len(self._held) > 1 else self._held[0]
        self._held = [held[due:]] if len(held) > due else []
        self._given += due
        return _to_pcm(held[:due])


def _check(pcm: PCM) -> PCM:
    if pcm.dtype != np.int16:
        raise TypeError(f"noise suppression takes int16 samples, got {pcm.dtype}")
    if pcm.ndim != 1:
        raise ValueError(f"noise suppression takes mono audio (one dimension), got shape {pcm.shape}")
    return pcm


def create(
    settings: Settings,
    kind: NoiseReductionType = "near_field",
    strength: float | None = None,
    *,
    sample_rate: int = 16_000,
) -> RNNoiseSuppressor:
    """A new suppressor with fresh state (one per input stream)."""
    return RNNoiseSuppressor(kind, strength, sample_rate)
