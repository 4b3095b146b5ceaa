"""Sample-rate conversion of int16 mono audio with soxr (streaming and one-shot).

soxr runs in float32 and the result is rounded back to int16 here: soxr's own int16 output adds
random dither, which would make identical input give different output.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import soxr

PCM = npt.NDArray[np.int16]


def _as_pcm(pcm: npt.ArrayLike) -> PCM:
    return np.ascontiguousarray(pcm, dtype=np.int16).reshape(-1)


def _to_pcm(samples: npt.NDArray[np.float32]) -> PCM:
    return np.clip(np.rint(samples), -32768, 32767).astype(np.int16)


class StreamResampler:
    """Resamples a stream chunk by chunk, keeping filter state between chunks.

    ``process(chunk)`` returns what is ready so far (soxr holds back a few ms of delay);
    ``process(chunk, last=True)`` flushes the tail, after which the stream starts afresh.
    Equal rates pass audio through untouched.
    """

    def __init__(self, in_rate: int, out_rate: int, *, quality: str = "HQ") -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"sample rates must be positive, not {in_rate} -> {out_rate}")
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._quality = quality
        self._stream: soxr.ResampleStream | None = None
        self._fed = False
        if in_rate != out_rate:
            self._stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality=quality)

    @property
    def passthrough(self) -> bool:
        return self._stream is None

    def process(self, pcm: npt.ArrayLike, last: bool = False) -> PCM:
        data = _as_pcm(pcm)
        if self._stream is None:
            return data.copy()
        if not last and data.size == 0:
            return np.zeros(0, dtype=np.int16)
        if last and not self._fed and data.size == 0:
            return np.zeros(0, dtype=np.int16)
        self._fed = True
        out = _to_pcm(self._stream.resample_chunk(data.astype(np.float32), last=last))
        if last:
            self.reset()
        return out

    def flush(self) -> PCM:
        """The audio still held back; the stream then starts afresh."""
        return self.process(np.zeros(0, dtype=np.int16), last=True)

    def reset(self) -> None:
        """Forget buffered audio and filter state."""
        if self._stream is not None:
            self._stream.clear()
        self._fed = False


def resample(pcm: npt.ArrayLike, in_rate: int, out_rate: int, *, quality: str = "HQ") -> PCM:
    """Resample a whole buffer at once."""
    data = _as_pcm(pcm)
    if in_rate == out_rate or data.size == 0:
        return data.copy()
    return _to_pcm(soxr.resample(data.astype(np.float32), in_rate, out_rate, quality=quality))
