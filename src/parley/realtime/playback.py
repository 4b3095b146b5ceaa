"""Server-side playback for WebRTC and SIP: response audio goes to the output audio buffer instead of
``response.output_audio.delta`` events, and what was not heard is cut from the conversation.

On a WebSocket the client plays the audio and truncates the assistant item itself; here the server
plays it, so on barge-in (or the client's ``output_audio_buffer.clear``) it drops what is queued,
sends ``output_audio_buffer.cleared`` and truncates each item at what was actually played
(``conversation.item.truncated``), so the model never hears back words the caller did not hear.

It also pauses, as a person who is interrupted does: while the caller's voice is a candidate
interruption being judged (:class:`~parley.realtime.turn_taking.TurnTaking` waits for words), the
assistant's audio holds where it is, so the caller is not talked over for the half second or more that
judgement takes. A barge-in then cuts the item at the pause; a backchannel ("mhm") resumes it there.
``barge_in_pause`` (``PARLEY_BARGE_IN_PAUSE``) turns this off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from base64 import b64decode
from typing import TYPE_CHECKING, Any

import numpy as np

from parley.audio.pcm import AudioFormat
from parley.engines.base import PCM
from parley.protocol import server_events as ev
from parley.protocol.errors import ProtocolError
from parley.realtime.items import truncate_item
from parley.realtime.output_audio_buffer import OutputAudioBuffer, Played

if TYPE_CHECKING:
    from parley.realtime.response import Response
    from parley.realtime.session import RealtimeSession

log = logging.getLogger("parley.playback")

MAX_PAUSE_MS = 2000.0
"""The longest pause for a judgement: one takes at most ``barge_in_max_ms`` (0.9 s) of speech, or the
end of shorter speech and the silence after it (1.2 s at most on the turn-taking bench; 0.7 s median
over backchannels). Voice the segmenter holds open longer (steady noise scoring between its two
thresholds), or input audio that stops arriving mid-judgement, must not silence the assistant for good:
this counts the silence played, on the playback's own real-time clock."""


class Playback:
    def __init__(self, session: RealtimeSession, rate: int) -> None:
        self.session = session
        self.buffer = OutputAudioBuffer(rate, self._notify)
        self._max_pause = round(rate * MAX_PAUSE_MS / 1000)
        self._paused_samples = 0
        """Silence played for the candidate interruption being judged."""

    @property
    def playing(self) -> bool:
        return self.buffer.playing

    @property
    def paused(self) -> bool:
        """Holding the assistant's audio while the caller's voice is judged as an interruption, for
        at most ``MAX_PAUSE_MS`` of playback."""
        return self._judging() and self._paused_samples < self._max_pause

    def _judging(self) -> bool:
        return self.session.settings.barge_in_pause and self.session.audio.judging_interruption

    def read(self, count: int) -> PCM:
        """The next ``count`` samples to play out: queued response audio, or silence while
        :attr:`paused` (nothing is consumed: a backchannel resumes the voice where it paused, a
        barge-in cuts it there) or when nothing is queued."""
        if not self._judging():
            self._paused_samples = 0
        elif self.paused:
            self._paused_samples += count
            return np.zeros(count, dtype=np.int16)
        return self.buffer.read(count)

    def take(self, event: dict[str, Any]) -> bool:
        """True when ``event`` is response audio, which is queued to be played rather than sent."""
        if event["type"] != "response.output_audio.delta":
            return False
        response = self.session.responses.get(event["response_id"])
        fmt = (
            response.params.output_format
            if response is not None
            else AudioFormat.from_wire(self.session.config.output["format"])
        )
        pcm = fmt.decode(b64decode(event["delta"]))
        self.buffer.push(event["response_id"], event["item_id"], event["content_index"], pcm, fmt.sample_rate)
        return True

    def sent(self, event: dict[str, Any]) -> None:
        """Follows the events the client was sent: an item's audio ends, a response ends."""
        kind = event["type"]
        if kind == "response.output_audio.done":
            self.buffer.audio_done(event["response_id"], event["item_id"], event["content_index"])
        elif kind == "response.done":
            self.buffer.response_done(event["response"]["id"])

    async def clear(self, response: Response | None) -> None:
        """Stop playing now: barge-in, or the client's ``output_audio_buffer.clear``. ``response`` is
        the one still running, if any: items are truncated once it has finished."""
        _, cut = self.buffer.clear()
        if cut:
            self.session.spawn(self._truncate(response, cut))

    async def _truncate(self, response: Response | None, cut: list[Played]) -> None:
        if response is not None and response.task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.shield(response.task)
        for played in cut:
            try:
                item = self.session.conversation.get(played.item_id)
            except ProtocolError:
                continue  # an out-of-band response's item, or deleted meanwhile
            if not item.has_audio(played.content_index):
                continue
            duration = item.audio_ms(played.content_index)
            heard_ms = min(round(played.played_ms), int(duration))
            if heard_ms >= duration - 1:
                continue  # all of it was heard
            truncate_item(item, played.content_index, heard_ms)
            await self.session.emit(ev.conversation_item_truncated(item.id, played.content_index, heard_ms))

    def _notify(self, kind: str, response_id: str) -> None:
        if kind == "stopped":
            self.session.audio.playback_stopped()
        log.debug("session %s: output audio %s (%s)", self.session.id, kind, response_id)
        self.session.spawn(self.session.emit(ev.output_audio_buffer(kind, response_id)))
