"""Turn-taking policy on top of the VAD segmenter: barge-in confirmation and semantic end of turn.

:class:`~parley.realtime.turn_detection.ServerVadSegmenter` says where voice starts and stops.
:class:`TurnTaking` decides what that means for the conversation:

* **Barge-in needs words.** While the assistant is speaking (a response runs, or its audio is still
  playing at the client) and ``interrupt_response`` is on, voice is only a *candidate* interruption:
  no ``speech_started`` is sent (a client stops its playback on that event). It becomes a barge-in
  once ``barge_in_min_ms`` of speech carry a settled word (one the recogniser has kept for a while
  and followed with another) that is not a backchannel ("mhm", "yeah", "okay"...), or
  ``barge_in_max_ms`` of speech whatever the words. A candidate that ends before either is judged
  on the recogniser's final transcript of it: empty (a cough, a click, noise) or backchannel only, it is
  discarded without any event and the assistant goes on; anything else is a barge-in, late but not
  missed. A confirmed barge-in's ``speech_started`` carries the onset's ``audio_start_ms``.
* **Semantic end of turn.** With ``semantic_vad`` the segmenter reports each pause once, after
  ``JUDGE_AFTER_MS`` of silence; the words heard by then (:mod:`parley.realtime.turn_completion`) set
  how much silence ends this turn, up to the eagerness's maximum wait.

Events come out in the order the session must act on them; everything is positioned on the
session-wide input audio clock.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from parley.engines.base import PCM, VoiceActivityDetector
from parley.realtime import turn_completion
from parley.realtime.turn_detection import Paused, ServerVadSegmenter, SpeechStarted, SpeechStopped

BACKCHANNELS = turn_completion.word_set(
    """
    mhm mm mmm hmm hm hum uh huh um ah aha oh yeah yes yep yup ok okay right sure alright
    i see got it cool nice great m h
    """
)
"""Words (as a recogniser spells them) of feedback that does not take the turn."""

_NO_AUDIO = np.zeros(0, dtype=np.int16)
log = logging.getLogger("parley.turns")
STABLE_MS = 250.0
"""A word heard this long ago and still in the transcript, with a word after it, is settled. At 150 ms
the first sound of a backchannel settled as a word often enough ("right" heard as "bro i")."""


@dataclass(frozen=True)
class Discarded:
    """A candidate interruption turned out to be noise or a backchannel; ``transcript`` is what the
    recogniser made of it. No event was sent for it and none will be."""

    transcript: str


TurnEvent = SpeechStarted | SpeechStopped | Discarded


def _setting(turn: dict[str, Any], key: str, default: float) -> float:
    value = turn.get(key)
    return default if value is None else float(value)


def is_backchannel(transcript: str) -> bool:
    """Nothing but feedback words (or nothing at all)."""
    return all(word in BACKCHANNELS for word in turn_completion.words_of(transcript))


class TurnTaking:
    """One session's turn detection: ``server_vad`` or ``semantic_vad`` settings (the GA dict)."""

    def __init__(
        self,
        turn: dict[str, Any],
        detector: VoiceActivityDetector,
        *,
        buffer_start_ms: float,
        assistant_speaking: Callable[[], bool],
        transcript: Callable[[], Awaitable[str]],
        final_transcript: Callable[[], Awaitable[str]] | None = None,
        on_onset: Callable[[int], None],
        barge_in_min_ms: float = 400.0,
        barge_in_max_ms: float = 900.0,
        sentence_end: turn_completion.SentenceEnd | None = None,
    ) -> None:
        self.type = str(turn["type"])
        self.eagerness = str(turn.get("eagerness") or "auto")
        self.interrupt_response = bool(turn.get("interrupt_response", True))
        semantic = self.type == "semantic_vad"
        self.segmenter = ServerVadSegmenter(
            detector,
            threshold=float(_setting(turn, "threshold", 0.5)),
            prefix_padding_ms=int(_setting(turn, "prefix_padding_ms", 300)),
            silence_duration_ms=(
                turn_completion.max_wait_ms(self.eagerness)
                if semantic
                else int(_setting(turn, "silence_duration_ms", 500))
            ),
            pause_ms=turn_completion.JUDGE_AFTER_MS if semantic else None,
            # semantic_vad's waits are long and its error is cutting people off: they count from the
            # later end. (A pause of 1.5 s after "the total comes to" in 20 dB noise ended the turn
            # with the earlier one: the wait for words it cannot place is 1.6 s.)
            follow_decay=not semantic,
            buffer_start_ms=buffer_start_ms,
        )
        self.prefix_padding_ms = self.segmenter.prefix_padding_ms
        self._assistant_speaking = assistant_speaking
        self._transcript = transcript
        self._final_transcript = final_transcript or transcript
        """What the recogniser finally makes of a candidate that ended: partials taken as a word is
        spoken are often other words ("right" is "bro i" at 450 ms), the final rarely."""
        self._on_onset = on_onset
        """Called as voice begins, with its ``audio_start_ms`` (prefix padding included), before
        anything else: the caller keeps the audio from there and starts recognising it, since a
        :class:`SpeechStarted` or a :class:`Discarded` decision reads that transcript."""
        self.barge_in_min_ms = barge_in_min_ms
        self.barge_in_max_ms = barge_in_max_ms
        """Speech this long interrupts whatever the recogniser makes of it: longer than a backchannel
        lasts (the longest of the bench's 24, a slow "mhm", is 880 ms), and in noise the recogniser
        often hears a real "stop please" as "ah"."""
        self._sentence_end = sentence_end
        """P(end of sentence | words), for ``semantic_vad``'s judgement at a pause."""
        self._onset_ms: int | None = None
        self._confirmed = False
        self._partials: list[tuple[float, str]] = []
        """(speech ms, partial transcript) seen while deciding on a candidate interruption."""

    @property
    def speaking(self) -> bool:
        """Voice is in progress (a turn, or a candidate interruption)."""
        return self.segmenter.speaking

    @property
    def judging(self) -> bool:
        """Voice is a candidate interruption: not yet confirmed as a barge-in nor discarded."""
        return self.segmenter.speaking and not self._confirmed and self._onset_ms is not None

    @property
    def in_turn(self) -> bool:
        """A turn has started (``speech_started`` was sent) and has not stopped."""
        return self.segmenter.speaking and self._confirmed

    def reset(self, buffer_start_ms: float) -> None:
        """The buffer was committed or cleared: forget the voice in progress, without an event."""
        self.segmenter.reset(buffer_start_ms)
        self._partials.clear()
        self._onset_ms = None
        self._confirmed = False

    async def push(self, pcm: PCM, end_ms: float) -> list[TurnEvent]:
        """Audio at the detector's rate whose last sample is at session position ``end_ms``."""
        out: list[TurnEvent] = []
        events = self.segmenter.push(pcm, end_ms)
        while True:
            for event in events:
                if isinstance(event, SpeechStarted):
                    self._onset(event, out)
                elif isinstance(event, Paused):
                    await self._paused(event, out)
                else:
                    await self._stopped(event, out)
            await self._maybe_confirm(out)
            if not any(isinstance(e, Paused) for e in events):
                return out
            events = self.segmenter.push(_NO_AUDIO, end_ms)

    def _onset(self, event: SpeechStarted, out: list[TurnEvent]) -> None:
        self._onset_ms = event.audio_start_ms
        self._on_onset(event.audio_start_ms)
        self._confirmed = not (self.interrupt_response and self._assistant_speaking())
        if self._confirmed:
            out.append(event)

    async def _maybe_confirm(self, out: list[TurnEvent]) -> None:
        if self._confirmed or not self.segmenter.speaking or self._onset_ms is None:
            return
        speech = self.segmenter.speech_ms
        if speech >= self.barge_in_max_ms:
            log.debug("barge-in after %.0f ms of speech", speech)
            self._confirm(out)
        elif speech >= self.barge_in_min_ms - STABLE_MS - self.segmenter.frame_ms:
            # From a frame early, so that a partial old enough to settle words exists at the minimum.
            transcript = await self._transcript()
            self._partials.append((speech, transcript))
            if speech >= self.barge_in_min_ms and not is_backchannel(" ".join(self._stable_words())):
                log.debug("barge-in after %.0f ms of speech: %r", speech, transcript)
                self._confirm(out)

    def _stable_words(self) -> list[str]:
        """The words of the latest partial transcript that the recogniser has settled on: those it
        already had ``STABLE_MS`` earlier, followed by at least one more word (it revises the last
        word most, and a partial taken mid-word is often another word entirely)."""
        speech_ms, transcript = self._partials[-1]
        earlier = [text for at, text in self._partials if at <= speech_ms - STABLE_MS]
        if not earlier:
            return []
        now, then = turn_completion.words_of(transcript)[:-1], turn_completion.words_of(earlier[-1])
        stable: list[str] = []
        for word, before in zip(now, then, strict=False):
            if word != before:
                break
            stable.append(word)
        return stable

    def _confirm(self, out: list[TurnEvent]) -> None:
        self._partials.clear()
        assert self._onset_ms is not None
        self._confirmed = True
        out.append(SpeechStarted(self._onset_ms))

    async def _paused(self, event: Paused, out: list[TurnEvent]) -> None:
        transcript = await self._transcript()
        required = turn_completion.required_silence_ms(transcript, self.eagerness, self._sentence_end)
        log.debug("pause of %.0f ms after %r: %d ms end the turn", event.silence_ms, transcript, required)
        if event.silence_ms >= required:
            await self._stopped(self.segmenter.end_turn(), out)
        else:
            self.segmenter.silence_duration_ms = required

    async def _stopped(self, event: SpeechStopped, out: list[TurnEvent]) -> None:
        if not self._confirmed:
            transcript = await self._final_transcript()
            self._partials.clear()
            if is_backchannel(transcript):
                out.append(Discarded(transcript))
                self._onset_ms = None
                return
            log.debug("barge-in at the end of a short utterance: %r", transcript)
            self._confirm(out)
        out.append(event)
        self._onset_ms = None
        self._confirmed = False
