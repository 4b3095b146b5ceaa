"""The output audio buffer of connections where the server plays the audio out (WebRTC, SIP).

Response audio is queued here in order and read out by the transport in real time, one frame at a
time, so the server knows what was actually heard: ``output_audio_buffer.started`` when a
response's first sample plays, ``stopped`` once its last one has played after ``response.done``,
``cleared`` when what is queued is dropped (barge-in or the client's ``output_audio_buffer.clear``),
and how much of each item was played, so the item can be truncated at that point.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from parley.audio.resample import StreamResampler
from parley.engines.base import PCM

Notify = Callable[[str, str], None]
"""Called with (``"started" | "stopped" | "cleared"``, response id)."""


@dataclass
class _Segment:
    response_id: str
    item_id: str
    content_index: int
    samples: PCM
    offset: int = 0

    @property
    def left(self) -> int:
        return len(self.samples) - self.offset


@dataclass(frozen=True)
class Played:
    """How much of one item's audio was heard when its playback was cut."""

    item_id: str
    content_index: int
    played_ms: float


@dataclass
class _Response:
    finished: bool = False
    started: bool = False
    items: dict[tuple[str, int], int] = field(default_factory=dict)
    """Samples played per (item id, content index)."""


class OutputAudioBuffer:
    """Response audio waiting to be played, at ``rate`` samples per second."""

    def __init__(self, rate: int, notify: Notify) -> None:
        self.rate = rate
        self._notify = notify
        self._segments: deque[_Segment] = deque()
        self._responses: dict[str, _Response] = {}
        self._resamplers: dict[tuple[str, int], StreamResampler] = {}
        self._dropped: set[str] = set()
        """Responses whose audio was cleared: what they still send is not played."""
        self._playing: str | None = None
        self.played_samples = 0
        """Samples of response audio read out so far (silence excluded)."""

    @property
    def playing(self) -> bool:
        """True while a response's audio is queued or being played (until ``stopped``)."""
        return self._playing is not None or bool(self._segments)

    @property
    def queued_ms(self) -> float:
        return sum(s.left for s in self._segments) * 1000 / self.rate

    # -- filling ----------------------------------------------------------------------------------

    def push(self, response_id: str, item_id: str, content_index: int, pcm: PCM, rate: int) -> None:
        """Queue ``pcm`` (at ``rate``) as the next audio of that item."""
        if response_id in self._dropped:
            return
        key = (item_id, content_index)
        resampler = self._resamplers.get(key)
        if resampler is None:
            resampler = self._resamplers[key] = StreamResampler(rate, self.rate)
        self._queue(response_id, item_id, content_index, resampler.process(pcm))

    def audio_done(self, response_id: str, item_id: str, content_index: int) -> None:
        """The item's audio is complete: what the resampler still holds is queued too."""
        resampler = self._resamplers.pop((item_id, content_index), None)
        if resampler is not None and response_id not in self._dropped:
            self._queue(response_id, item_id, content_index, resampler.flush())

    def response_done(self, response_id: str) -> None:
        """``response.done`` was sent; ``stopped`` follows once its audio has played."""
        state = self._responses.get(response_id)
        if state is None:
            return
        state.finished = True
        if self._playing == response_id and not self._queued_for(response_id):
            self._stop(response_id)

    def _queue(self, response_id: str, item_id: str, content_index: int, samples: PCM) -> None:
        self._responses.setdefault(response_id, _Response()).items.setdefault((item_id, content_index), 0)
        if len(samples):
            self._segments.append(_Segment(response_id, item_id, content_index, samples))

    # -- playing ----------------------------------------------------------------------------------

    def read(self, count: int) -> PCM:
        """The next ``count`` samples to play: queued audio, then silence."""
        out = np.zeros(count, dtype=np.int16)
        filled = 0
        while filled < count and self._segments:
            segment = self._segments[0]
            if self._playing != segment.response_id:
                if self._playing is not None:
                    self._stop(self._playing)
                self._start(segment.response_id)
            take = min(count - filled, segment.left)
            out[filled : filled + take] = segment.samples[segment.offset : segment.offset + take]
            segment.offset += take
            filled += take
            self.played_samples += take
            state = self._responses[segment.response_id]
            key = (segment.item_id, segment.content_index)
            state.items[key] = state.items.get(key, 0) + take
            if segment.left == 0:
                self._segments.popleft()
        playing = self._playing
        if playing is not None and self._responses[playing].finished and not self._queued_for(playing):
            self._stop(playing)
        return out

    def clear(self) -> tuple[str | None, list[Played]]:
        """Drop everything queued. Returns the response that was audible (``cleared`` is sent for
        it) and how much of each of its items, and of items queued behind it, was played."""
        audible = self._playing or (self._segments[0].response_id if self._segments else None)
        cut: list[Played] = []
        touched = {s.response_id for s in self._segments}
        if self._playing is not None:
            touched.add(self._playing)
        for response_id in touched:
            state = self._responses.pop(response_id, _Response())
            for (item_id, content_index), samples in state.items.items():
                cut.append(Played(item_id, content_index, samples * 1000 / self.rate))
            if not state.finished:
                self._dropped.add(response_id)
        self._segments.clear()
        self._resamplers = {k: v for k, v in self._resamplers.items() if k[0] not in {p.item_id for p in cut}}
        self._playing = None
        if audible is not None:
            self._notify("cleared", audible)
        return audible, cut

    def _queued_for(self, response_id: str) -> bool:
        return any(s.response_id == response_id for s in self._segments)

    def _start(self, response_id: str) -> None:
        self._playing = response_id
        state = self._responses[response_id]
        if not state.started:
            state.started = True
            self._notify("started", response_id)

    def _stop(self, response_id: str) -> None:
        if self._playing == response_id:
            self._playing = None
        state = self._responses.pop(response_id, None)
        if state is not None and state.started:
            self._notify("stopped", response_id)
