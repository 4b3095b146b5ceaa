"""The session's input side: the audio buffer, turn taking with barge-in, idle timeout, commits.

Positions are on the session's input audio clock (ms of audio appended, wire accounting), so turn
decisions do not depend on how fast the machine is. The same clock tells when the assistant is still
audible: a response's audio plays from its start until its duration has passed (the client plays
what it receives in real time), which is when a barge-in is possible and the idle timeout starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from parley import ids
from parley.audio.pcm import AudioFormat
from parley.audio.resample import StreamResampler
from parley.engines.base import PCM, EngineError
from parley.protocol import server_events as ev
from parley.protocol.errors import ProtocolError
from parley.realtime.conversation import Item
from parley.realtime.input_audio_buffer import MIN_COMMIT_MS, InputAudioBuffer
from parley.realtime.input_denoise import HeardAudio
from parley.realtime.recognition import Recognition
from parley.realtime.transcription import LiveRecognition
from parley.realtime.turn_detection import SpeechStarted, SpeechStopped
from parley.realtime.turn_taking import Discarded, TurnTaking

if TYPE_CHECKING:
    from parley.realtime.response import Response
    from parley.realtime.session import RealtimeSession

log = logging.getLogger("parley.input_audio")

VAD_RATE = 16000
VAD_RESAMPLE_QUALITY = "QQ"
"""soxr's quick cubic resampler feeds the VAD: it holds back under 0.1 ms where the default (HQ) holds
back 6-37 ms (22 ms on average from 24 kHz), which every ``speech_stopped`` would otherwise wait for.
Silero's scores do not need HQ's anti-aliasing; the recogniser still gets HQ audio."""
FINAL_TRANSCRIPT_WAIT_S = 2.0
"""How long a candidate interruption that ended waits for the recogniser's final transcript: input
audio waits meanwhile (a remote recogniser posting each utterance answers in about 0.8 s)."""
IDLE_KEEP_MS = 1000
"""With turn detection on and nobody speaking, the buffer keeps this much audio beyond the prefix."""


class InputAudio:
    def __init__(self, session: RealtimeSession) -> None:
        self.session = session
        self.format = AudioFormat.from_wire(session.config.input["format"])
        self.buffer = InputAudioBuffer(self.format)
        self.recognition = Recognition(session)
        self._turns: TurnTaking | None = None
        self._turn: dict[str, Any] | None = None
        self._vad_resampler: StreamResampler | None = None
        self._stt_resampler: StreamResampler | None = None
        self._live: LiveRecognition | None = None
        self._speech_item_id: str | None = None
        self._decoder = self.format.stream_decoder()
        self._heard: HeardAudio | None = None
        self._auto_response_pending = False
        self._response_started_ms: dict[str, float] = {}
        self.playback_until_ms = 0.0
        """Input-clock position until which the assistant's last response is audible."""
        self._idle_from_ms = 0.0
        self._last_item_id: str | None = None
        """The last committed item of a transcription session (which keeps no conversation)."""
        self.configure()

    @property
    def transcription_only(self) -> bool:
        return self.session.config.type == "transcription"

    # -- configuration ----------------------------------------------------------------------------

    def configure(self) -> None:
        """Apply the session's input settings (after ``session.update``)."""
        fmt = AudioFormat.from_wire(self.session.config.input["format"])
        format_changed = fmt != self.format or self._vad_resampler is None
        if fmt != self.format:
            self._drop_live()
            self.format = fmt
            self.buffer.set_format(fmt)
            self._decoder = fmt.stream_decoder()
        turn = self.session.config.turn_detection
        if turn != self._turn:
            self._turn = dict(turn) if turn is not None else None
            self._turns = None
            self._idle_from_ms = self.buffer.position_ms
            if turn is not None:
                self._turns = TurnTaking(
                    turn,
                    self.session.engines.vad(),
                    buffer_start_ms=self.buffer.position_ms,
                    assistant_speaking=self.assistant_speaking,
                    transcript=self._current_transcript,
                    final_transcript=self._final_transcript,
                    on_onset=self._onset,
                    barge_in_min_ms=self.session.settings.barge_in_min_ms,
                    sentence_end=self.session.engines.sentence_ends.probability,
                )
        self.recognition.set_source_rate(self.format.sample_rate)
        noise = self.session.config.input["noise_reduction"]
        if format_changed or self._heard is None or noise != self._heard.noise_reduction:
            # Only on a change: the resamplers and the suppressor hold back audio positions count on.
            self._heard = HeardAudio(self.session.engines, noise, self.format.sample_rate)
            self._vad_resampler = StreamResampler(self._heard.rate, VAD_RATE, quality=VAD_RESAMPLE_QUALITY)
            self._drop_live()

    # -- appending --------------------------------------------------------------------------------

    async def append(self, audio: bytes) -> None:
        self.buffer.append(audio)
        assert self._heard is not None
        pcm = await self._heard.process(self._decoder.decode(audio))
        if self._turns is None:
            self._feed_live(pcm)
            return
        assert self._vad_resampler is not None
        pcm16k = self._vad_resampler.process(pcm)
        if self._turns.speaking:
            self._feed_live(pcm)
        heard_until_ms = self.buffer.position_ms - self._heard.latency_ms
        for event in await self._turns.push(pcm16k, heard_until_ms):
            if isinstance(event, SpeechStarted):
                await self._speech_started(event.audio_start_ms)
            elif isinstance(event, SpeechStopped):
                await self._speech_stopped(event.audio_end_ms)
            elif isinstance(event, Discarded):
                log.debug("session %s: not an interruption: %r", self.session.id, event.transcript)
                self._drop_live()
        if not self._turns.speaking:
            keep_from = self.buffer.position_ms - self._turns.prefix_padding_ms - IDLE_KEEP_MS
            if keep_from > self.buffer.start_ms:
                self.buffer.take_until(keep_from)
            await self._check_idle_timeout()

    def _feed_live(self, pcm: PCM) -> None:
        if self._live is None:
            if self._turns is None and self._speech_item_id is None:
                self._speech_item_id = ids.item_id()  # manual commits: the next item is this one
            item_id = self._speech_item_id if self._turns is None or self._turns.in_turn else None
            self._live = self.recognition.live(deltas=True, item_id=item_id)
            assert self._heard is not None
            self._stt_resampler = StreamResampler(self._heard.rate, self.session.engines.stt.sample_rate)
        assert self._stt_resampler is not None
        self._live.feed(self._stt_resampler.process(pcm))

    def _take_live(self) -> LiveRecognition | None:
        """The utterance being recognised, with the samples its resampler still held fed to it."""
        live, self._live = self._live, None
        if live is not None:
            self._flush_live(live)
        return live

    def _flush_live(self, live: LiveRecognition) -> None:
        """Feed ``live`` the samples its resampler still holds: its audio ends here."""
        if self._stt_resampler is not None:
            live.feed(self._stt_resampler.flush())

    def _drop_live(self) -> None:
        if self._live is not None:
            self._live.close()
        self._live = None

    async def _current_transcript(self) -> str:
        return await self._live.current() if self._live is not None else ""

    async def _final_transcript(self) -> str:
        """What the recogniser finally makes of the voice so far: the utterance ends here (its commit,
        if any, reuses this result). A recogniser that fails, or takes longer than
        ``FINAL_TRANSCRIPT_WAIT_S``, gives its last partial instead."""
        live = self._live
        if live is None:
            return ""
        self._flush_live(live)
        try:
            return (await asyncio.wait_for(live.finish(), FINAL_TRANSCRIPT_WAIT_S)).text
        except (EngineError, TimeoutError):
            return live.partial

    # -- turn taking ------------------------------------------------------------------------------

    def assistant_speaking(self) -> bool:
        if self.session.active is not None:
            return True
        playback = self.session.playback
        if playback is not None:  # the server plays the audio: it knows
            return playback.playing
        return self.buffer.position_ms < self.playback_until_ms

    @property
    def judging_interruption(self) -> bool:
        """The user's voice is a candidate interruption of the assistant, still being judged."""
        return self._turns is not None and self._turns.judging

    def playback_stopped(self) -> None:
        """The server finished playing a response (WebRTC, SIP): the idle timeout counts from here."""
        self._idle_from_ms = self.buffer.position_ms
        self.playback_until_ms = 0.0

    def _onset(self, audio_start_ms: int) -> None:
        if audio_start_ms > self.buffer.start_ms:
            self.buffer.take_until(audio_start_ms)
        self._drop_live()
        assert self._heard is not None
        self._feed_live(self._heard.since(self.buffer.start_ms, self.buffer.position_ms))

    async def _speech_started(self, audio_start_ms: int) -> None:
        self._speech_item_id = ids.item_id()
        await self.session.emit(ev.input_audio_buffer_speech_started(audio_start_ms, self._speech_item_id))
        if self._live is not None and self._live.deltas is not None:
            self._live.deltas.item_id = self._speech_item_id  # the turn is real: stream its words
        if (self._turn or {}).get("interrupt_response", True):
            active = self.session.active
            if active is not None:
                active.cancel("turn_detected")
            if self.session.playback is not None:
                await self.session.playback.clear(active)
            self.playback_until_ms = 0.0  # the client stops playing on speech_started

    async def _speech_stopped(self, audio_end_ms: int) -> None:
        item_id = self._speech_item_id or ids.item_id()
        self._speech_item_id = None
        await self.session.emit(ev.input_audio_buffer_speech_stopped(audio_end_ms, item_id))
        await self._commit(item_id)
        if (self._turn or {}).get("create_response", True) and not self.transcription_only:
            if self.session.active is None:
                await self.session.create_response()
            else:
                self._auto_response_pending = True

    async def _check_idle_timeout(self) -> None:
        turn = self._turn or {}
        timeout = turn.get("idle_timeout_ms")
        if timeout is None or self.transcription_only or self.assistant_speaking():
            return
        since = max(self._idle_from_ms, self.playback_until_ms)
        if self.buffer.position_ms - since < timeout:
            return
        item_id = ids.item_id()
        await self.session.emit(
            ev.input_audio_buffer_timeout_triggered(
                round(self.buffer.start_ms), round(self.buffer.position_ms), item_id
            )
        )
        await self._commit(item_id)
        with contextlib.suppress(ProtocolError):
            await self.session.create_response()

    # -- responses --------------------------------------------------------------------------------

    def response_started(self, response: Response) -> None:
        self._response_started_ms[response.id] = self.buffer.position_ms

    def response_finished(self, response: Response) -> None:
        started = self._response_started_ms.pop(response.id, self.buffer.position_ms)
        if response.params.in_conversation:
            self._idle_from_ms = self.buffer.position_ms
            if response.status == "cancelled":
                self.playback_until_ms = self.buffer.position_ms
            else:
                audio_ms = sum(item.audio_ms(k) for item in response.output for k in item.audio_indices())
                self.playback_until_ms = max(self.buffer.position_ms, started + audio_ms)
        if self._auto_response_pending and self.session.active is None:
            self._auto_response_pending = False

            async def respond() -> None:
                with contextlib.suppress(ProtocolError):
                    await self.session.create_response()

            self.session.spawn(respond())

    # -- commit / clear ---------------------------------------------------------------------------

    async def commit(self) -> None:
        duration = self.buffer.duration_ms
        if duration < MIN_COMMIT_MS:
            raise ProtocolError(
                "input_audio_buffer_commit_empty",
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"{MIN_COMMIT_MS:.0f}ms of audio, but buffer only has {duration:.2f}ms of audio.",
            )
        await self._commit(self._speech_item_id or ids.item_id())
        self._speech_item_id = None
        if self._turns is not None:
            self._turns.reset(self.buffer.position_ms)

    async def _commit(self, item_id: str) -> None:
        audio = self.buffer.take()
        self._idle_from_ms = self.buffer.position_ms
        item = Item(
            data={
                "id": item_id,
                "object": "realtime.item",
                "type": "message",
                "status": "completed",
                "role": "user",
                "content": [{"type": "input_audio", "transcript": None}],
            },
            audio={0: bytearray(audio)},
            audio_format=self.format,
        )
        if self.transcription_only:
            previous, self._last_item_id = self._last_item_id, item_id
        else:
            previous = self.session.conversation.last_id()
        await self.session.emit(ev.input_audio_buffer_committed(item_id, previous))
        if not self.transcription_only:
            self.session.conversation.insert(item)
        await self.session.emit(ev.conversation_item_added(item.wire(), previous))
        await self.session.emit(ev.conversation_item_done(item.wire(), previous))
        self.recognition.transcribe(item, self._take_live())

    def clear(self) -> None:
        self.buffer.clear()
        self._decoder.reset()
        self._drop_live()
        self._speech_item_id = None
        if self._turns is not None:
            self._turns.reset(self.buffer.position_ms)

    async def close(self) -> None:
        self._drop_live()
        await self.recognition.close()
