"""G.711 µ-law and A-law as numpy lookup tables.

A port of the algorithms in CPython's ``audioop`` (removed in Python 3.13), bit-exact with
``audioop.lin2ulaw``/``ulaw2lin``/``lin2alaw``/``alaw2lin`` for 16-bit samples: encoding indexes a
65 536-entry table with the sample's bit pattern, decoding a 256-entry table with the code.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

PCM = npt.NDArray[np.int16]

_ULAW_SEG_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], dtype=np.int32)
_ALAW_SEG_END = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF], dtype=np.int32)
_ULAW_BIAS = 0x84


def _all_int16() -> npt.NDArray[np.int32]:
    """Every int16 value, ordered by its unsigned bit pattern (the encode table's index)."""
    return np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16).astype(np.int32)


def _build_ulaw_encode() -> npt.NDArray[np.uint8]:
    val = _all_int16() >> 2  # 14-bit
    mask = np.where(val < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(val), 32635) + (_ULAW_BIAS >> 2)
    seg = np.searchsorted(_ULAW_SEG_END, mag, side="left")
    code = (np.minimum(seg, 7) << 4) | ((mag >> (np.minimum(seg, 7) + 1)) & 0xF)
    code = np.where(seg >= 8, 0x7F, code)
    return ((code ^ mask) & 0xFF).astype(np.uint8)


def _build_ulaw_decode() -> PCM:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + _ULAW_BIAS) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, _ULAW_BIAS - t, t - _ULAW_BIAS).astype(np.int16)


def _build_alaw_encode() -> npt.NDArray[np.uint8]:
    val = _all_int16() >> 3  # 13-bit
    mask = np.where(val >= 0, 0xD5, 0x55)
    mag = np.where(val >= 0, val, -val - 1)
    seg = np.searchsorted(_ALAW_SEG_END, mag, side="left")
    shift = np.where(seg < 2, 1, np.minimum(seg, 7))
    code = (np.minimum(seg, 7) << 4) | ((mag >> shift) & 0x0F)
    code = np.where(seg >= 8, 0x7F, code)
    return ((code ^ mask) & 0xFF).astype(np.uint8)


def _build_alaw_decode() -> PCM:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    seg = (a & 0x70) >> 4
    t = (a & 0x0F) << 4
    t = np.where(seg == 0, t + 8, (t + 0x108) << np.maximum(seg - 1, 0))
    return np.where(a & 0x80, t, -t).astype(np.int16)


_ULAW_ENC = _build_ulaw_encode()
_ULAW_DEC = _build_ulaw_decode()
_ALAW_ENC = _build_alaw_encode()
_ALAW_DEC = _build_alaw_decode()


def _codes(pcm: npt.ArrayLike) -> npt.NDArray[np.uint16]:
    return np.ascontiguousarray(pcm, dtype=np.int16).reshape(-1).view(np.uint16)


def ulaw_encode(pcm: npt.ArrayLike) -> bytes:
    """16-bit samples to µ-law bytes."""
    return _ULAW_ENC[_codes(pcm)].tobytes()


def ulaw_decode(data: bytes | bytearray | memoryview) -> PCM:
    """µ-law bytes to 16-bit samples (a new, writable array)."""
    return _ULAW_DEC[np.frombuffer(data, dtype=np.uint8)]


def alaw_encode(pcm: npt.ArrayLike) -> bytes:
    """16-bit samples to A-law bytes."""
    return _ALAW_ENC[_codes(pcm)].tobytes()


def alaw_decode(data: bytes | bytearray | memoryview) -> PCM:
    """A-law bytes to 16-bit samples (a new, writable array)."""
    return _ALAW_DEC[np.frombuffer(data, dtype=np.uint8)]
