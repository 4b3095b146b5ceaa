"""The input audio buffer: raw client audio kept in the session's input format until committed.

Positions follow the wire's accounting: ``position_ms`` counts every millisecond of audio appended
in the session (48 bytes per ms for pcm16 at 24 kHz, 8 for G.711), cleared or not.
"""

from __future__ import annotations

from parley.audio.pcm import AudioFormat

MIN_COMMIT_MS = 100.0


class InputAudioBuffer:
    def __init__(self, audio_format: AudioFormat) -> None:
        self.format = audio_format
        self._data = bytearray()
        self._appended_bytes_total = 0
        """Bytes appended in the current format; earlier formats are folded into the next field."""
        self._ms_before_format = 0.0
        self.start_ms = 0.0
        """Session position of the first byte now in the buffer."""

    @property
    def position_ms(self) -> float:
        return self._ms_before_format + self.format.duration_ms(int(self._appended_bytes_total))

    @property
    def duration_ms(self) -> float:
        return self.format.duration_ms(len(self._data))

    def __len__(self) -> int:
        return len(self._data)

    def set_format(self, audio_format: AudioFormat) -> None:
        """A new input format applies to audio appended from now on; what is buffered is dropped
        only if the format really changed (bytes of two formats cannot be mixed)."""
        if audio_format == self.format:
            return
        self._ms_before_format = self.position_ms
        self._appended_bytes_total = 0
        self.format = audio_format
        self._data.clear()
        self.start_ms = self.position_ms

    def append(self, audio: bytes) -> None:
        self._data.extend(audio)
        self._appended_bytes_total += len(audio)

    def peek(self) -> bytes:
        return bytes(self._data)

    def take(self) -> bytes:
        """Empty the buffer, returning what it held."""
        data = bytes(self._data)
        self._data.clear()
        self.start_ms = self.position_ms
        return data

    def take_until(self, position_ms: float) -> bytes:
        """Remove and return the audio up to session position ``position_ms``; keep the rest."""
        keep_ms = max(0.0, self.position_ms - position_ms)
        keep_bytes = min(len(self._data), round(keep_ms * self.format.bytes_per_ms))
        keep_bytes -= keep_bytes % self.format.bytes_per_sample
        cut = len(self._data) - keep_bytes
        data = bytes(self._data[:cut])
        del self._data[:cut]
        self.start_ms = self.position_ms - self.format.duration_ms(len(self._data))
        return data

    def clear(self) -> None:
        self.take()
