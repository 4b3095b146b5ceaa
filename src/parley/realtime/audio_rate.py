"""Input audio may not arrive much faster than it is spoken.

A client that streams a live microphone sends audio at 1x real time; one that uploads a recording may
send it faster, in a burst. A token bucket allows both: it holds up to ``burst_ms`` of audio and
refills at ``max_speed`` ms of audio per wall-clock ms. Audio beyond it is refused (with an ``error``
event), so one client cannot make the server recognise hours of audio in seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class AudioRate:
    def __init__(
        self, max_speed: float, burst_ms: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_speed = max_speed
        self.burst_ms = burst_ms
        self._clock = clock
        self._available = burst_ms
        self._at = clock()

    def admit(self, audio_ms: float) -> bool:
        """Take ``audio_ms`` from the budget; False (and nothing taken) when it is not there."""
        now = self._clock()
        self._available = min(self.burst_ms, self._available + (now - self._at) * 1000 * self.max_speed)
        self._at = now
        if audio_ms > self._available:
            return False
        self._available -= audio_ms
        return True
