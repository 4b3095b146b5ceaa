"""What became of each user audio item: its transcript, and the transcription events when asked for.

A committed item is recognised by the live stream that was fed while the user spoke (only the
finalisation remains), an item created with audio by a new stream. The transcript goes into the item
(``heard``, and the part's ``transcript`` when transcription is on) and, when the session asked for
transcription, out as ``…input_audio_transcription.delta`` / ``completed`` / ``failed``. Responses
wait for the transcripts of their context; nothing else does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from parley.audio.resample import resample
from parley.engines.base import EngineError
from parley.protocol import server_events as ev
from parley.realtime.conversation import Item
from parley.realtime.transcription import LiveRecognition, TranscriptDeltas

if TYPE_CHECKING:
    from parley.realtime.session import RealtimeSession

log = logging.getLogger("parley.recognition")


class Recognition:
    def __init__(self, session: RealtimeSession) -> None:
        self.session = session
        self._jobs: dict[str, asyncio.Task[None]] = {}
        self._streams: dict[str, LiveRecognition] = {}
        """The recognisers of running jobs, closed with the session even if a job never ran."""
        self.channel: dict[str, Any] = {}
        """The recogniser's adaptation state for this session's audio (``SpeechToText.start``)."""

    def set_source_rate(self, rate: int) -> None:
        """The input format's rate; a new one is a new channel (its adaptation starts over)."""
        if self.channel.get("source_rate") != rate:
            self.channel.clear()
            self.channel["source_rate"] = rate

    def live(self, *, deltas: bool = False, item_id: str | None = None) -> LiveRecognition:
        """A stream for an utterance; with ``deltas`` and transcription on, it sends the transcript as
        it grows, once its ``deltas.item_id`` is set (here, or when the turn is confirmed)."""
        settings = self.session.config.transcription
        stream_deltas = TranscriptDeltas(self.session.emit, item_id) if settings and deltas else None
        return LiveRecognition(
            self.session.engines.stt,
            language=(settings or {}).get("language"),
            prompt=(settings or {}).get("prompt"),
            deltas=stream_deltas,
            channel=self.channel,
        )

    def transcribe(self, item: Item, live: LiveRecognition | None = None) -> None:
        task = asyncio.get_running_loop().create_task(self._transcribe(item, live))
        self._jobs[item.id] = task
        if live is not None:
            self._streams[item.id] = live
        task.add_done_callback(lambda _: (self._jobs.pop(item.id, None), self._streams.pop(item.id, None)))

    async def _transcribe(self, item: Item, live: LiveRecognition | None) -> None:
        index = item.audio_indices()[0]
        stt = self.session.engines.stt
        settings = self.session.config.transcription
        try:
            if live is None:
                live = self._streams[item.id] = self.live()
                assert item.audio_format is not None
                pcm = item.audio_format.decode(item.audio_bytes(index))
                live.feed(resample(pcm, item.audio_format.sample_rate, stt.sample_rate))
            result = await live.finish()
        except EngineError as exc:
            log.warning("transcription of %s failed: %s", item.id, exc)
            if settings is not None:
                await self.session.emit(ev.transcription_failed(item.id, index, exc.code, str(exc)))
            return
        text = result.text.strip()
        item.heard[index] = text
        if settings is None:
            return
        item.data["content"][index]["transcript"] = text
        if live.deltas is not None:
            await live.deltas.final(text, item.id)
        elif text:
            await self.session.emit(ev.transcription_delta(item.id, index, text))
        await self.session.emit(ev.transcription_completed(item.id, index, text, result.audio_seconds))

    async def wait_for(self, items: list[Item]) -> None:
        pending = [self._jobs[i.id] for i in items if i.id in self._jobs]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    async def close(self) -> None:
        lives = list(self._streams.values())  # a job's callback forgets its recogniser as it ends
        for task in list(self._jobs.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        # A job cancelled before it ran never finished its recogniser: close those here.
        for live in lives:
            live.close()
        self._streams.clear()
