"""G.711 numpy codec: bit-exact with CPython's audioop (stdlib until 3.13) and sane round trips."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from types import ModuleType

import numpy as np
import numpy.typing as npt
import pytest

from parley.audio import g711

ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = bytes(range(256))


def _audioop() -> ModuleType:
    if sys.version_info >= (3, 13):
        pytest.skip("audioop was removed in Python 3.13")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop
    return audioop


def test_ulaw_encode_matches_audioop_over_full_int16_range() -> None:
    audioop = _audioop()
    assert g711.ulaw_encode(ALL_SAMPLES) == audioop.lin2ulaw(ALL_SAMPLES.tobytes(), 2)


def test_alaw_encode_matches_audioop_over_full_int16_range() -> None:
    audioop = _audioop()
    assert g711.alaw_encode(ALL_SAMPLES) == audioop.lin2alaw(ALL_SAMPLES.tobytes(), 2)


def test_ulaw_decode_matches_audioop_for_all_codes() -> None:
    audioop = _audioop()
    expected = np.frombuffer(audioop.ulaw2lin(ALL_CODES, 2), dtype=np.int16)
    np.testing.assert_array_equal(g711.ulaw_decode(ALL_CODES), expected)


def test_alaw_decode_matches_audioop_for_all_codes() -> None:
    audioop = _audioop()
    expected = np.frombuffer(audioop.alaw2lin(ALL_CODES, 2), dtype=np.int16)
    np.testing.assert_array_equal(g711.alaw_decode(ALL_CODES), expected)


@pytest.mark.parametrize(
    ("encode", "decode"),
    [(g711.ulaw_encode, g711.ulaw_decode), (g711.alaw_encode, g711.alaw_decode)],
    ids=["ulaw", "alaw"],
)
def test_round_trip_error_is_within_the_segment_step(
    encode: Callable[[npt.ArrayLike], bytes], decode: Callable[[bytes], npt.NDArray[np.int16]]
) -> None:
    out = decode(encode(ALL_SAMPLES)).astype(np.int32)
    err = np.abs(out - ALL_SAMPLES.astype(np.int32))
    # Companding: the step grows with amplitude, relative error stays under ~6 %.
    assert np.all(err <= np.maximum(16, np.abs(ALL_SAMPLES.astype(np.int32)) * 0.07))
    # Every code decodes to a value that re-encodes to the same code.
    codes = np.frombuffer(ALL_CODES, dtype=np.uint8)
    levels = decode(ALL_CODES)
    reencoded = np.frombuffer(encode(levels), dtype=np.uint8)
    if encode is g711.ulaw_encode:
        # 0x7F and 0xFF are both zero in µ-law; zero encodes as 0xFF.
        reencoded = np.where(codes == 0x7F, 0x7F, reencoded)
    np.testing.assert_array_equal(reencoded, codes)


def test_one_byte_per_sample_and_shapes() -> None:
    pcm = np.array([[0, 1000], [-1000, 32767]], dtype=np.int16)
    assert len(g711.ulaw_encode(pcm)) == 4
    assert len(g711.alaw_encode(pcm)) == 4
    assert g711.ulaw_encode(np.zeros(0, dtype=np.int16)) == b""
    assert g711.ulaw_decode(b"").shape == (0,)
    decoded = g711.alaw_decode(b"\xd5\x55")
    assert decoded.dtype == np.int16
    decoded[0] = 1  # writable


def test_silence_codes() -> None:
    assert g711.ulaw_encode(np.zeros(3, dtype=np.int16)) == b"\xff\xff\xff"
    assert g711.alaw_encode(np.zeros(3, dtype=np.int16)) == b"\xd5\xd5\xd5"
    assert np.all(np.abs(g711.ulaw_decode(b"\xff\x7f")) == 0)
    assert np.all(np.abs(g711.alaw_decode(b"\xd5\x55")) <= 8)


def test_sine_survives_with_high_snr() -> None:
    t = np.arange(8000) / 8000
    sine = (np.sin(2 * np.pi * 440 * t) * 12000).astype(np.int16)
    for encode, decode in ((g711.ulaw_encode, g711.ulaw_decode), (g711.alaw_encode, g711.alaw_decode)):
        out = decode(encode(sine)).astype(np.float64)
        noise = out - sine
        snr = 10 * np.log10(np.sum(sine.astype(np.float64) ** 2) / np.sum(noise**2))
        assert snr > 30
