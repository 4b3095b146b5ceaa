"""Keeping a long session's audio off the heap: item audio beyond a memory budget goes to a file.

Every conversation item keeps its audio (the user's committed input, the assistant's speech) so that
``conversation.item.retrieve`` can return it and a truncation can cut it; at 24 kHz PCM that is
about 170 MB an hour. A conversation holds at most ``PARLEY_SESSION_AUDIO_MEMORY_MB`` of it in
memory: past that, the audio of its oldest finished items moves to one unnamed temporary file of the
session (in ``PARLEY_DATA_DIR``'s ``spill`` folder when set, else the system's temporary directory),
which the operating system deletes when the session closes. Nothing is lost: a retrieve reads it
back, and truncating such an item brings its audio back into memory first.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
from pathlib import Path
from typing import IO

Span = tuple[int, int]
"""(offset, length) of one piece of audio in the spill file."""


class AudioSpill:
    """One session's spill file, created on first use."""

    def __init__(self, limit_bytes: int, directory: Path | None = None) -> None:
        self.limit_bytes = limit_bytes
        self.directory = directory
        self.spilled_bytes = 0
        self._file: IO[bytes] | None = None
        self._lock = threading.Lock()  # a retrieve may read while the event loop writes

    def write(self, data: bytes) -> Span:
        with self._lock:
            if self._file is None:
                if self.directory is not None:
                    self.directory.mkdir(parents=True, exist_ok=True)
                self._file = tempfile.TemporaryFile(prefix="parley-audio-", dir=self.directory)  # noqa: SIM115
            offset = self._file.seek(0, 2)
            self._file.write(data)
            self.spilled_bytes += len(data)
            return offset, len(data)

    def read(self, span: Span) -> bytes:
        offset, length = span
        with self._lock:
            if self._file is None:
                raise ValueError("nothing was spilled")
            self._file.seek(offset)
            data = self._file.read(length)
        if len(data) != length:
            raise OSError(f"the audio spill file lost {length - len(data)} bytes")
        return data

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                with contextlib.suppress(OSError):
                    self._file.close()
                self._file = None
