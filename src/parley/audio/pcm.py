"""The Realtime API's wire audio formats and PCM16 byte helpers.

``audio/pcm`` is 16-bit little-endian mono at 24 kHz; ``audio/pcmu`` and ``audio/pcma`` are G.711
µ-law and A-law at 8 kHz. Milliseconds follow the wire: 48 bytes per ms for PCM16, 8 for G.711.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import numpy as np
import numpy.typing as npt

from parley.audio import g711

PCM = npt.NDArray[np.int16]
Bytes = bytes | bytearray | memoryview
FormatType = Literal["audio/pcm", "audio/pcmu", "audio/pcma"]

_RATES: dict[str, int] = {"audio/pcm": 24000, "audio/pcmu": 8000, "audio/pcma": 8000}
_BETA: dict[str, FormatType] = {"pcm16": "audio/pcm", "g711_ulaw": "audio/pcmu", "g711_alaw": "audio/pcma"}


def pcm16_bytes_to_array(data: Bytes) -> PCM:
    """Little-endian PCM16 bytes to a writable int16 array; an odd trailing byte is dropped."""
    view = memoryview(data).cast("B")
    usable = len(view) - (len(view) % 2)
    return np.frombuffer(view[:usable], dtype="<i2").astype(np.int16)


def array_to_pcm16_bytes(pcm: npt.ArrayLike) -> bytes:
    """An int16 array (any shape, flattened) to little-endian PCM16 bytes."""
    return np.ascontiguousarray(pcm, dtype="<i2").tobytes()


@dataclass(frozen=True)
class AudioFormat:
    """One wire audio format. ``decode``/``encode`` convert at ``sample_rate``; callers resample."""

    type: FormatType
    sample_rate: int = field(default=0)

    def __post_init__(self) -> None:
        if self.type not in _RATES:
            raise ValueError(f"unsupported audio format type {self.type!r}")
        expected = _RATES[self.type]
        if self.sample_rate == 0:
            object.__setattr__(self, "sample_rate", expected)
        elif self.sample_rate != expected:
            raise ValueError(f"{self.type} must have rate {expected}, not {self.sample_rate}")

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any]) -> AudioFormat:
        """From the GA shape: ``{"type": "audio/pcm", "rate": 24000}`` or ``{"type": "audio/pcmu"}``."""
        kind = obj.get("type")
        if kind not in _RATES:
            raise ValueError(f"unsupported audio format type {kind!r}")
        rate = obj.get("rate")
        if rate is None:
            return cls(cast(FormatType, kind))
        if isinstance(rate, bool) or not isinstance(rate, int | float) or rate != _RATES[kind]:
            raise ValueError(f"{kind} supports only rate {_RATES[kind]}, not {rate!r}")
        return cls(cast(FormatType, kind), int(rate))

    @classmethod
    def from_beta(cls, name: str) -> AudioFormat:
        """From the beta names ``pcm16``, ``g711_ulaw`` and ``g711_alaw``."""
        try:
            return cls(_BETA[name])
        except KeyError:
            raise ValueError(f"unsupported audio format {name!r}") from None

    def to_wire(self) -> dict[str, Any]:
        """The GA shape of this format."""
        if self.type == "audio/pcm":
            return {"type": self.type, "rate": self.sample_rate}
        return {"type": self.type}

    @property
    def beta_name(self) -> str:
        return next(name for name, kind in _BETA.items() if kind == self.type)

    @property
    def bytes_per_sample(self) -> int:
        return 2 if self.type == "audio/pcm" else 1

    @property
    def bytes_per_ms(self) -> int:
        return self.sample_rate * self.bytes_per_sample // 1000

    def duration_ms(self, nbytes: int) -> float:
        return nbytes / self.bytes_per_ms

    def bytes_for_ms(self, ms: float) -> int:
        """Whole samples' worth of bytes for ``ms`` milliseconds (rounded down)."""
        samples = int(ms * self.sample_rate / 1000)
        return samples * self.bytes_per_sample

    def decode(self, data: Bytes) -> PCM:
        """Wire bytes to int16 samples. For PCM16 an odd trailing byte is dropped (see
        :meth:`stream_decoder` to carry it over to the next chunk instead)."""
        if self.type == "audio/pcm":
            return pcm16_bytes_to_array(data)
        if self.type == "audio/pcmu":
            return g711.ulaw_decode(data)
        return g711.alaw_decode(data)

    def encode(self, pcm: npt.ArrayLike) -> bytes:
        """int16 samples (already at ``sample_rate``) to wire bytes."""
        if self.type == "audio/pcm":
            return array_to_pcm16_bytes(pcm)
        if self.type == "audio/pcmu":
            return g711.ulaw_encode(pcm)
        return g711.alaw_encode(pcm)

    def stream_decoder(self) -> StreamDecoder:
        return StreamDecoder(self)


PCM16_24K = AudioFormat("audio/pcm")
PCMU = AudioFormat("audio/pcmu")
PCMA = AudioFormat("audio/pcma")


class StreamDecoder:
    """Decodes a byte stream chunk by chunk, keeping a PCM16 odd byte for the next chunk."""

    def __init__(self, fmt: AudioFormat) -> None:
        self.format = fmt
        self._rest = b""

    def decode(self, data: Bytes) -> PCM:
        if self.format.bytes_per_sample == 1:
            return self.format.decode(data)
        buf = self._rest + bytes(data) if self._rest else data
        size = len(memoryview(buf).cast("B"))
        self._rest = bytes(memoryview(buf).cast("B")[size - 1 :]) if size % 2 else b""
        return self.format.decode(buf)

    @property
    def pending_bytes(self) -> int:
        return len(self._rest)

    def reset(self) -> None:
        self._rest = b""
