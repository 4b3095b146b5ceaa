"""Reading and writing WAV files as int16 mono numpy arrays.

Reading parses the RIFF chunks itself (the stdlib ``wave`` module of Python 3.11 rejects float and
WAVE_FORMAT_EXTENSIBLE files); it accepts 8/16/24/32-bit integer PCM and 32/64-bit float, any
number of channels (averaged to mono). Writing uses ``wave``.
"""

from __future__ import annotations

import io
import struct
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

PCM = npt.NDArray[np.int16]

_PCM = 1
_FLOAT = 3
_EXTENSIBLE = 0xFFFE


class WavError(ValueError):
    """The data is not a WAV file this module can read."""


def _parse(data: bytes) -> tuple[int, int, int, int, memoryview]:
    """Return (format tag, channels, rate, bits per sample, sample bytes)."""
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RIFX") or data[8:12] != b"WAVE":
        raise WavError("not a RIFF/WAVE file")
    if data[:4] == b"RIFX":
        raise WavError("big-endian (RIFX) WAV is not supported")
    fmt: tuple[int, int, int, int] | None = None
    pos = 12
    view = memoryview(data)
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body = pos + 8
        if chunk_id == b"fmt ":
            if size < 16:
                raise WavError("fmt chunk too short")
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", data, body)
            if tag == _EXTENSIBLE and size >= 40:
                (tag,) = struct.unpack_from("<H", data, body + 24)  # sub-format GUID's first field
            fmt = (tag, channels, rate, bits)
        elif chunk_id == b"data":
            if fmt is None:
                raise WavError("data chunk before fmt chunk")
            end = len(data) if size in (0, 0xFFFFFFFF) else min(len(data), body + size)
            return (*fmt, view[body:end])
        pos = body + size + (size & 1)
    raise WavError("no data chunk")


def _to_mono_int16(tag: int, channels: int, bits: int, raw: memoryview) -> PCM:
    width = bits // 8
    if channels < 1 or bits % 8 or width == 0:
        raise WavError(f"bad WAV layout: {channels} channels, {bits} bits")
    raw = raw[: len(raw) - len(raw) % (width * channels)]
    samples: npt.NDArray[np.float64] | npt.NDArray[np.int32]
    if tag == _FLOAT and width in (4, 8):
        floats = np.frombuffer(raw, dtype="<f4" if width == 4 else "<f8").astype(np.float64)
        samples = np.nan_to_num(floats) * 32768.0
    elif tag == _PCM and width == 1:
        samples = (np.frombuffer(raw, dtype=np.uint8).astype(np.int32) - 128) << 8
    elif tag == _PCM and width == 2:
        samples = np.frombuffer(raw, dtype="<i2").astype(np.int32)
    elif tag == _PCM and width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        samples = ((b[:, 0] << 8) | (b[:, 1] << 16) | (b[:, 2] << 24)) >> 16
    elif tag == _PCM and width == 4:
        samples = np.frombuffer(raw, dtype="<i4") >> 16
    else:
        raise WavError(f"unsupported WAV encoding: format {tag:#x}, {bits} bits")
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1)
    return np.clip(np.rint(samples), -32768, 32767).astype(np.int16)


def read_wav(source: str | Path | bytes | bytearray | memoryview) -> tuple[PCM, int]:
    """Read a WAV file (a path or its bytes) as int16 mono samples and the sample rate."""
    data = Path(source).read_bytes() if isinstance(source, str | Path) else bytes(source)
    tag, channels, rate, bits, raw = _parse(data)
    if rate <= 0:
        raise WavError(f"bad sample rate {rate}")
    return _to_mono_int16(tag, channels, bits, raw), rate


def wav_bytes(pcm: npt.ArrayLike, rate: int) -> bytes:
    """A 16-bit mono WAV file holding ``pcm``."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.ascontiguousarray(pcm, dtype="<i2").tobytes())
    return buf.getvalue()


def write_wav(path: str | Path, pcm: npt.ArrayLike, rate: int) -> None:
    """Write ``pcm`` as a 16-bit mono WAV file."""
    Path(path).write_bytes(wav_bytes(pcm, rate))
