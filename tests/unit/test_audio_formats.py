"""Wire audio formats, PCM16 helpers, resampling and WAV files."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from parley.audio.pcm import (
    PCM16_24K,
    PCMA,
    PCMU,
    AudioFormat,
    array_to_pcm16_bytes,
    pcm16_bytes_to_array,
)
from parley.audio.resample import StreamResampler, resample
from parley.audio.wav import WavError, read_wav, wav_bytes, write_wav

PCM = npt.NDArray[np.int16]


def sine(freq: float, rate: int, seconds: float, amplitude: float = 10000) -> PCM:
    t = np.arange(int(rate * seconds)) / rate
    return np.round(np.sin(2 * np.pi * freq * t) * amplitude).astype(np.int16)


def dominant_frequency(pcm: PCM, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(pcm.size)))
    return float(np.fft.rfftfreq(pcm.size, 1 / rate)[np.argmax(spectrum)])


# -- PCM16 helpers ---------------------------------------------------------------------------------


def test_pcm16_helpers_are_little_endian_and_round_trip() -> None:
    pcm = np.array([0, 1, -1, 32767, -32768, 256], dtype=np.int16)
    data = array_to_pcm16_bytes(pcm)
    assert data == struct.pack("<6h", *pcm.tolist())
    back = pcm16_bytes_to_array(data)
    np.testing.assert_array_equal(back, pcm)
    back[0] = 5  # writable copy


def test_pcm16_odd_trailing_byte_is_dropped() -> None:
    assert pcm16_bytes_to_array(b"\x01\x00\x02").tolist() == [1]
    assert pcm16_bytes_to_array(b"\x01").size == 0
    assert pcm16_bytes_to_array(bytearray(b"")).size == 0
    assert pcm16_bytes_to_array(memoryview(b"\x00\x80")).tolist() == [-32768]


# -- AudioFormat -----------------------------------------------------------------------------------


def test_formats_rates_and_byte_accounting() -> None:
    assert (PCM16_24K.sample_rate, PCM16_24K.bytes_per_ms) == (24000, 48)
    assert (PCMU.sample_rate, PCMU.bytes_per_ms) == (8000, 8)
    assert (PCMA.sample_rate, PCMA.bytes_per_ms) == (8000, 8)
    assert PCM16_24K.duration_ms(4800) == pytest.approx(100.0)
    assert PCMU.duration_ms(800) == pytest.approx(100.0)
    assert PCM16_24K.duration_ms(1) == pytest.approx(1 / 48)
    assert PCM16_24K.bytes_for_ms(20) == 960
    assert PCMA.bytes_for_ms(20) == 160


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        ({"type": "audio/pcm", "rate": 24000}, PCM16_24K),
        ({"type": "audio/pcm"}, PCM16_24K),
        ({"type": "audio/pcmu"}, PCMU),
        ({"type": "audio/pcma"}, PCMA),
    ],
)
def test_from_wire(wire: dict[str, object], expected: AudioFormat) -> None:
    fmt = AudioFormat.from_wire(wire)
    assert fmt == expected
    assert AudioFormat.from_wire(fmt.to_wire()) == fmt


def test_to_wire_shapes() -> None:
    assert PCM16_24K.to_wire() == {"type": "audio/pcm", "rate": 24000}
    assert PCMU.to_wire() == {"type": "audio/pcmu"}
    assert PCMA.to_wire() == {"type": "audio/pcma"}


@pytest.mark.parametrize(
    "wire",
    [{"type": "audio/pcm", "rate": 16000}, {"type": "audio/opus"}, {}, {"type": "audio/pcm", "rate": "x"}],
)
def test_from_wire_rejects_unsupported(wire: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        AudioFormat.from_wire(wire)


def test_from_beta_names() -> None:
    assert AudioFormat.from_beta("pcm16") == PCM16_24K
    assert AudioFormat.from_beta("g711_ulaw") == PCMU
    assert AudioFormat.from_beta("g711_alaw") == PCMA
    assert [f.beta_name for f in (PCM16_24K, PCMU, PCMA)] == ["pcm16", "g711_ulaw", "g711_alaw"]
    with pytest.raises(ValueError):
        AudioFormat.from_beta("opus")


def test_constructor_validates_rate() -> None:
    assert AudioFormat("audio/pcmu").sample_rate == 8000
    with pytest.raises(ValueError):
        AudioFormat("audio/pcmu", 16000)


def test_format_is_frozen_and_hashable() -> None:
    with pytest.raises(AttributeError):
        PCMU.sample_rate = 16000  # type: ignore[misc]
    assert len({PCM16_24K, AudioFormat("audio/pcm", 24000), PCMU}) == 2


def test_pcm16_format_round_trip_is_exact() -> None:
    pcm = sine(300, 24000, 0.1)
    data = PCM16_24K.encode(pcm)
    assert len(data) == pcm.size * 2
    assert PCM16_24K.duration_ms(len(data)) == pytest.approx(100.0)
    np.testing.assert_array_equal(PCM16_24K.decode(data), pcm)


@pytest.mark.parametrize("fmt", [PCMU, PCMA], ids=["pcmu", "pcma"])
def test_g711_format_round_trip_within_tolerance(fmt: AudioFormat) -> None:
    pcm = sine(440, 8000, 0.2)
    data = fmt.encode(pcm)
    assert len(data) == pcm.size
    assert fmt.duration_ms(len(data)) == pytest.approx(200.0)
    out = fmt.decode(data).astype(np.int32)
    err = np.abs(out - pcm)
    assert err.max() <= 0.07 * 10000
    assert np.sqrt(np.mean(err.astype(np.float64) ** 2)) < 150


def test_stream_decoder_carries_odd_byte() -> None:
    pcm = np.arange(-50, 50, dtype=np.int16) * 300
    data = PCM16_24K.encode(pcm)
    decoder = PCM16_24K.stream_decoder()
    pieces = [data[:3], data[3:4], data[4:101], data[101:]]
    out = np.concatenate([decoder.decode(p) for p in pieces])
    np.testing.assert_array_equal(out, pcm)
    assert decoder.pending_bytes == 0
    decoder.decode(b"\x01")
    assert decoder.pending_bytes == 1
    decoder.reset()
    assert decoder.pending_bytes == 0
    assert PCMU.stream_decoder().decode(b"\xff\xff").size == 2


# -- resampling ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("src", "dst"), [(24000, 16000), (8000, 24000), (22050, 24000), (16000, 8000)])
def test_one_shot_resample_keeps_length_and_pitch(src: int, dst: int) -> None:
    pcm = sine(440, src, 0.5)
    out = resample(pcm, src, dst)
    assert out.dtype == np.int16
    assert abs(out.size - pcm.size * dst / src) <= 2
    assert dominant_frequency(out, dst) == pytest.approx(440, abs=5)
    assert np.abs(out).max() == pytest.approx(10000, rel=0.05)


def test_stream_resampler_matches_one_shot() -> None:
    pcm = sine(440, 22050, 1.0)
    stream = StreamResampler(22050, 24000)
    chunks = [stream.process(c) for c in np.array_split(pcm, 37)]
    chunks.append(stream.process(np.zeros(0, dtype=np.int16), last=True))
    out = np.concatenate(chunks)
    assert abs(out.size - 24000) <= 2
    one_shot = resample(pcm, 22050, 24000)
    n = min(out.size, one_shot.size)
    assert np.abs(out[:n].astype(np.int32) - one_shot[:n]).max() <= 8
    # After the final chunk the stream starts afresh and gives the same output again.
    again = np.concatenate([stream.process(pcm[:11025]), stream.process(pcm[11025:], last=True)])
    assert np.abs(again[: out.size].astype(np.int32) - out[: again.size]).max() <= 8


def test_stream_resampler_flush_and_empty_chunks() -> None:
    stream = StreamResampler(8000, 16000)
    assert stream.process(np.zeros(0, dtype=np.int16)).size == 0
    assert stream.flush().size == 0  # nothing fed, nothing out
    got = stream.process(sine(200, 8000, 0.1)).size + stream.flush().size
    assert abs(got - 1600) <= 2


def test_stream_resampler_passthrough_for_equal_rates() -> None:
    stream = StreamResampler(24000, 24000)
    assert stream.passthrough
    pcm = sine(100, 24000, 0.01)
    out = stream.process(pcm)
    np.testing.assert_array_equal(out, pcm)
    assert out is not pcm
    np.testing.assert_array_equal(resample(pcm, 24000, 24000), pcm)


def test_resample_is_deterministic_and_clips_safely() -> None:
    loud = sine(1000, 22050, 0.2, amplitude=32767)
    a = resample(loud, 22050, 24000)
    np.testing.assert_array_equal(a, resample(loud, 22050, 24000))
    assert a.dtype == np.int16
    with pytest.raises(ValueError):
        StreamResampler(0, 16000)


# -- WAV -------------------------------------------------------------------------------------------


def _wav(
    fmt_tag: int, channels: int, rate: int, bits: int, payload: bytes, extensible: bool = False
) -> bytes:
    block = channels * bits // 8
    if extensible:
        fmt = struct.pack("<HHIIHH", 0xFFFE, channels, rate, rate * block, block, bits)
        fmt += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H14s", fmt_tag, b"\x00" * 14)
    else:
        fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"LIST" + struct.pack("<I", 3) + b"abc\x00"  # odd-sized chunk with pad byte
    body += b"data" + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_wav_round_trip_bytes_and_file(tmp_path: Path) -> None:
    pcm = sine(500, 16000, 0.25)
    pcm_out, rate = read_wav(wav_bytes(pcm, 16000))
    assert rate == 16000
    np.testing.assert_array_equal(pcm_out, pcm)
    path = tmp_path / "x.wav"
    write_wav(path, pcm, 8000)
    pcm_out, rate = read_wav(path)
    assert rate == 8000
    np.testing.assert_array_equal(pcm_out, pcm)
    assert read_wav(str(path))[1] == 8000


def test_read_stereo_is_downmixed() -> None:
    left = np.array([1000, -2000, 30000], dtype=np.int16)
    right = np.array([3000, 2000, 30000], dtype=np.int16)
    payload = np.stack([left, right], axis=1).astype("<i2").tobytes()
    pcm, rate = read_wav(_wav(1, 2, 44100, 16, payload))
    assert rate == 44100
    assert pcm.tolist() == [2000, 0, 30000]


def test_read_8bit_pcm() -> None:
    payload = bytes([128, 255, 0, 192])
    pcm, _ = read_wav(_wav(1, 1, 8000, 8, payload))
    assert pcm.tolist() == [0, 127 * 256, -32768, 64 * 256]


def test_read_float32_and_extensible() -> None:
    floats = np.array([0.0, 0.5, -0.5, 1.5, -1.0], dtype="<f4")
    expected = [0, 16384, -16384, 32767, -32768]
    pcm, rate = read_wav(_wav(3, 1, 24000, 32, floats.tobytes()))
    assert (pcm.tolist(), rate) == (expected, 24000)
    pcm, _ = read_wav(_wav(3, 1, 24000, 32, floats.tobytes(), extensible=True))
    assert pcm.tolist() == expected
    stereo = np.stack([floats, floats], axis=1).tobytes()
    pcm, _ = read_wav(_wav(3, 2, 24000, 32, stereo))
    assert pcm.tolist() == expected


def test_read_24bit_pcm() -> None:
    values = [0, 0x7FFFFF, -0x800000, 256 * 1000]
    payload = b"".join(v.to_bytes(3, "little", signed=True) for v in values)
    pcm, _ = read_wav(_wav(1, 1, 48000, 24, payload))
    assert pcm.tolist() == [0, 32767, -32768, 1000]


def test_read_wav_rejects_garbage() -> None:
    with pytest.raises(WavError):
        read_wav(b"not a wav file at all")
    with pytest.raises(WavError):
        read_wav(_wav(2, 1, 8000, 4, b"\x00\x00"))  # ADPCM
    truncated = _wav(1, 1, 8000, 16, b"")[:36]
    with pytest.raises(WavError):
        read_wav(truncated)
