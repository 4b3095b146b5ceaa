"""Audio on aiortc tracks, for the server and the test client alike: frames sent in real time, and
the frames a remote track delivers until it ends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from fractions import Fraction

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame

from parley.audio.pcm import PCM


class FrameClock:
    """The timestamps of a track's frames, each returned when the frame is due in real time."""

    def __init__(self, rate: int, frame_samples: int, *, catch_up_after_s: float | None = None) -> None:
        """``catch_up_after_s``: a frame this late (the loop was stalled) restarts the clock from now
        rather than sending the missed frames in a burst; None always sends them."""
        self.rate = rate
        self.frame_samples = frame_samples
        self.catch_up_after_s = catch_up_after_s
        self.pts = 0
        self._start: float | None = None

    async def next_pts(self) -> int:
        """Wait until the next frame is due; its timestamp, in samples (0 for the first, at once)."""
        now = time.monotonic()
        if self._start is None:
            self._start = now
            return self.pts
        self.pts += self.frame_samples
        wait = self._start + self.pts / self.rate - now
        if wait > 0:
            await asyncio.sleep(wait)
        elif self.catch_up_after_s is not None and wait < -self.catch_up_after_s:
            self._start -= wait
        return self.pts


def mono_frame(pcm: PCM, rate: int, pts: int) -> AudioFrame:
    """A 16-bit mono frame of ``pcm`` at ``rate``, stamped ``pts`` (in samples)."""
    frame = AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    frame.pts = pts
    frame.time_base = Fraction(1, rate)
    return frame


async def received_frames(track: MediaStreamTrack) -> AsyncIterator[AudioFrame]:
    """The audio frames a remote track delivers (decoded by aiortc), until the track ends."""
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        assert isinstance(frame, AudioFrame)
        yield frame
