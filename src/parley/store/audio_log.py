"""Audio accounting for the audit trail: seconds in and out, and (optionally) the raw audio.

Input audio is counted from the client's ``input_audio_buffer.append`` events (so WebRTC and SIP
sessions, whose audio comes on a media track, count none here) in the session's input format;
output audio from ``response.output_audio.delta`` in the response's output format. With recording
on, the input audio appended since the last commit is stored with the committed item (capped at
:data:`MAX_PENDING_INPUT_BYTES`, oldest dropped) and each assistant item's output audio with it.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from parley.store import wire

MAX_PENDING_INPUT_BYTES = 16 * 1024 * 1024

Format = dict[str, Any] | None


@dataclass
class AudioLog:
    record: bool
    clock: Callable[[], datetime]
    input_format: Format = None
    output_format: Format = None
    seconds_in: float = 0.0
    seconds_out: float = 0.0
    rows: list[dict[str, Any]] = field(default_factory=list)
    """Recorded audio waiting to be written (``item_id, direction, format, data, created_at``)."""
    _pending_input: bytearray = field(default_factory=bytearray)
    _output: dict[str, tuple[Format, bytearray]] = field(default_factory=dict)

    def appended(self, data: str) -> None:
        """A client ``input_audio_buffer.append`` (base64)."""
        self.seconds_in += wire.base64_size(data) / wire.audio_format(self.input_format)[1] / 1000
        if self.record:
            self._pending_input += base64.b64decode(data)
            excess = len(self._pending_input) - MAX_PENDING_INPUT_BYTES
            if excess > 0:
                del self._pending_input[:excess]

    def committed(self, item_id: str | None) -> None:
        if self._pending_input:
            self._add(item_id, "input", self.input_format, bytes(self._pending_input))
        self._pending_input.clear()

    def cleared(self) -> None:
        self._pending_input.clear()

    def output_delta(self, item_id: str | None, data: str, fmt: Format) -> None:
        self.seconds_out += wire.base64_size(data) / wire.audio_format(fmt)[1] / 1000
        if self.record and item_id is not None:
            self._output.setdefault(item_id, (fmt, bytearray()))[1].extend(base64.b64decode(data))

    def output_done(self, item_id: str) -> None:
        fmt, data = self._output.pop(item_id, (None, bytearray()))
        if data:
            self._add(item_id, "output", fmt, bytes(data))

    def finish(self) -> None:
        """Keep what is still held (the session ended mid-response)."""
        for item_id in list(self._output):
            self.output_done(item_id)

    def _add(self, item_id: str | None, direction: str, fmt: Format, data: bytes) -> None:
        label = wire.audio_format(fmt)[0]
        self.rows.append(
            {
                "item_id": item_id,
                "direction": direction,
                "format": label,
                "data": data,
                "created_at": self.clock(),
            }
        )
