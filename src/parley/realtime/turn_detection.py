"""Server-side turn detection (``server_vad``): speech start and stop events from a stream of audio.

A pure, synchronous state machine. The session pushes audio already at the detector's sample rate (16 kHz
for Silero), in chunks of any size, with the session-wide position of each chunk's end in ms (all audio
appended in this session, wire accounting). The segmenter cuts the audio into detector frames (32 ms for
Silero). Its rules, for a frame with speech probability p:

* The frame is *voiced* if ``p >= threshold``, *silent* if ``p < release_threshold`` (``threshold - 0.15``,
  as in Silero's ``VADIterator``), and ambiguous in between.
* **Start.** A run of non-silent frames becomes speech once ``min_speech_ms`` have passed since its first
  voiced frame, so a click or a short burst never opens a turn. The onset is the start of that first
  voiced frame, or of the frame before it if that one was ambiguous (Silero scores the frame holding an
  onset between the two thresholds), and ``audio_start_ms = onset - prefix_padding_ms``, but never
  before the start of the current input buffer.
* **Stop.** The speech end is the end of the last voiced frame less ``end_lag_ms``, how long the detector
  keeps scoring speech after speech ends (its ``end_lag_ms`` attribute if it has one: 64 ms for Silero).
  In noise the detector's probability decays over more frames than that: a detector that names a
  ``confident_probability`` (0.95 for Silero) has the end moved back to one frame before the end of its
  last confident frame when that is earlier, by at most ``MAX_DECAY_FRAMES`` more frames
  (``follow_decay=False`` keeps the later end: ``semantic_vad`` errs towards waiting). Speech stops
  on the first silent frame at which ``silence_duration_ms`` have passed since the speech end, and
  ``audio_end_ms`` is that end. Ambiguous frames hold a turn open (hysteresis) but do not move its end.

Positions come from sample counts: pushed sample ``n`` sits at ``origin + n / rate``. A streaming resampler
holds audio back (soxr: 6-37 ms at 24 kHz, 12-115 ms at 8 kHz, varying from chunk to chunk) but never runs
ahead, so every push bounds the origin from above by ``end_ms - samples_so_far / rate``; the segmenter
takes the smallest bound seen, which makes positions independent of how the audio was chunked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from parley.engines.base import PCM, VoiceActivityDetector

HYSTERESIS = 0.15
"""How far below ``threshold`` a frame must score to count as silence."""
MAX_DECAY_FRAMES = 2
"""How many frames beyond ``end_lag_ms`` a slow decay of the probability may move the speech end back.
On bench/turn_taking.py's 52 utterances, Silero's last voiced frame ends 48 ms after the speech clean and
87 ms at 10 dB SNR (medians), and its last frame at 0.95 or more ends one frame before the last voiced
one clean, two at 10 dB. Scoring those utterances offline, the rule takes the median delay of
``speech_stopped`` after the end from 535 to 497 ms of audio at 10 dB (20 dB: 515 to 505; clean: 496 to
493); with other voices, pauses and noise beds it does the same (10 dB: 539 to 510)."""


@dataclass(frozen=True)
class SpeechStarted:
    audio_start_ms: int
    """The speech onset less the prefix padding, in session-wide ms."""


@dataclass(frozen=True)
class SpeechStopped:
    audio_end_ms: int
    """The end of the speech, in session-wide ms."""


@dataclass(frozen=True)
class Paused:
    """The speech of the current turn has been followed by ``pause_ms`` of silence. The segmenter
    stops scoring there (the rest of the pushed audio waits) so the caller can decide, at this point of
    the audio, whether the turn ends (:meth:`ServerVadSegmenter.end_turn`) or how much more silence
    ends it (``silence_duration_ms``); ``push`` with no audio goes on."""

    silence_ms: float


TurnEvent = SpeechStarted | SpeechStopped | Paused


class ServerVadSegmenter:
    """Finds where speech starts and stops. One per session: the detector keeps recurrent state.

    ``threshold``, ``prefix_padding_ms``, ``silence_duration_ms`` and ``min_speech_ms`` are plain
    attributes: a ``session.update`` may change them between pushes.
    """

    def __init__(
        self,
        detector: VoiceActivityDetector,
        *,
        threshold: float = 0.5,
        prefix_padding_ms: float = 300.0,
        silence_duration_ms: float = 500.0,
        min_speech_ms: float = 200.0,
        end_lag_ms: float | None = None,
        confident_probability: float | None = None,
        follow_decay: bool = True,
        buffer_start_ms: float = 0.0,
        pause_ms: float | None = None,
    ) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be within [0, 1], got {threshold}")
        if end_lag_ms is None:
            end_lag_ms = float(getattr(detector, "end_lag_ms", 0.0))
        if confident_probability is None and follow_decay:
            confident_probability = getattr(detector, "confident_probability", None)
        if min(prefix_padding_ms, silence_duration_ms, min_speech_ms, end_lag_ms) < 0:
            raise ValueError("durations must not be negative")
        self.detector = detector
        self.threshold = threshold
        self.prefix_padding_ms = prefix_padding_ms
        self.silence_duration_ms = silence_duration_ms
        self.min_speech_ms = min_speech_ms
        self.end_lag_ms = end_lag_ms
        self.confident_probability = confident_probability
        self.pause_ms = pause_ms
        """When set, a :class:`Paused` event marks each pause within a turn once, when it has lasted
        this long."""
        self._frame = detector.frame_samples
        self._ms_per_sample = 1000.0 / detector.sample_rate
        self._pending: PCM = np.zeros(0, dtype=np.int16)
        self._received = 0  # samples pushed so far
        self._analysed = 0  # samples scored so far (whole frames)
        self._origin_ms = math.inf  # session position of pushed sample 0
        detector.reset()
        self.reset(buffer_start_ms)

    @property
    def release_threshold(self) -> float:
        """Frames below this are silence; half the threshold when the threshold is low."""
        return max(self.threshold - HYSTERESIS, self.threshold / 2)

    @property
    def frame_ms(self) -> float:
        """The detector's frame: positions and durations move in steps of this."""
        return self._ms(self._frame)

    @property
    def speaking(self) -> bool:
        """A turn has started and has not stopped yet."""
        return self._speaking

    @property
    def speech_ms(self) -> float:
        """While speaking: ms from the onset to the end of the latest voiced frame; else 0."""
        return self._ms(self._voiced_end - self._onset) if self._speaking else 0.0

    @property
    def silence_ms(self) -> float:
        """While speaking: ms from the speech end to the end of the last frame scored; else 0."""
        if not self._speaking:
            return 0.0
        return max(0.0, self._ms(self._analysed) - self._speech_end_ms())

    def end_turn(self) -> SpeechStopped:
        """Stop the current turn now (a turn-end decision made beyond silence), at its speech end."""
        if not self._speaking:
            raise RuntimeError("no turn in progress")
        audio_end = self._at(0) + self._speech_end_ms()
        self.reset(self._buffer_start_ms)
        return SpeechStopped(round(audio_end))

    @property
    def position_ms(self) -> float:
        """Session-wide position of the end of the last frame scored."""
        return self._at(self._analysed) if self._received else self._buffer_start_ms

    def reset(self, buffer_start_ms: float) -> None:
        """Forget the turn in progress, without an event: the input buffer was committed or cleared and
        the next one starts at ``buffer_start_ms``. The detector's recurrent state, the frame alignment
        and the sample count are kept, since the audio stream itself goes on."""
        self._buffer_start_ms = float(buffer_start_ms)
        self._speaking = False
        # Sample indices: the current run of non-silent frames, its first voiced frame, the end of the
        # last voiced frame, and where the current turn's speech began.
        self._run_start: int | None = None
        self._voiced_start: int | None = None
        self._voiced_end = 0
        self._confident_end: int | None = None  # the end of the last frame at confident_probability
        self._onset = 0
        self._paused_at: int | None = None  # the _voiced_end of the last pause reported

    def push(self, pcm: PCM, end_ms: float) -> list[TurnEvent]:
        """Add audio whose last sample ends at session position ``end_ms``; return the events it caused."""
        if pcm.dtype != np.int16 or pcm.ndim != 1:
            raise ValueError(f"expected a 1-D int16 array, got {pcm.ndim}-D {pcm.dtype}")
        self._received += len(pcm)
        self._origin_ms = min(self._origin_ms, end_ms - self._ms(self._received))
        if len(pcm):
            self._pending = np.concatenate((self._pending, pcm))
        size = self._frame
        frames = len(self._pending) // size
        events: list[TurnEvent] = []
        done = 0
        while done < frames:
            p = self.detector.speech_probability(self._pending[done * size : (done + 1) * size])
            done += 1
            self._analysed += size
            event = self._step(p, self._analysed - size, self._analysed)
            if event is not None:
                events.append(event)
                if isinstance(event, Paused):
                    break
        self._pending = self._pending[done * size :].copy()
        return events

    def _step(self, p: float, start: int, end: int) -> TurnEvent | None:
        voiced = p >= self.threshold
        silent = p < self.release_threshold
        if voiced and self.confident_probability is not None and p >= self.confident_probability:
            self._confident_end = end
        if self._speaking:
            if voiced:
                self._voiced_end = end
                return None
            silence = self._ms(end) - self._speech_end_ms()
            if self.pause_ms is not None and self._paused_at != self._voiced_end and silence >= self.pause_ms:
                self._paused_at = self._voiced_end
                return Paused(silence)
            if silent and silence >= self.silence_duration_ms:
                return self.end_turn()
            return None
        if silent:
            self._run_start = self._voiced_start = self._confident_end = None
            return None
        if self._run_start is None:
            self._run_start = start
        if voiced:
            self._voiced_end = end
            if self._voiced_start is None:
                self._voiced_start = start
        if self._voiced_start is not None and self._ms(end - self._voiced_start) >= self.min_speech_ms:
            self._speaking = True
            self._onset = max(self._run_start, self._voiced_start - self._frame)
            audio_start = max(self._buffer_start_ms, self._at(self._onset) - self.prefix_padding_ms)
            return SpeechStarted(round(audio_start))
        return None

    def _speech_end_ms(self) -> float:
        """The current turn's speech end, in ms of pushed audio."""
        end = self._ms(self._voiced_end) - self.end_lag_ms
        if self._confident_end is not None:
            decayed = self._ms(self._confident_end - self._frame)
            end = max(min(end, decayed), end - MAX_DECAY_FRAMES * self.frame_ms)
        return max(end, self._ms(self._onset))

    def _ms(self, samples: int) -> float:
        return samples * self._ms_per_sample

    def _at(self, sample: int) -> float:
        """Session position of a pushed sample index."""
        return self._origin_ms + self._ms(sample)
