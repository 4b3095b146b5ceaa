"""The session's input side: the audio buffer, turn detection with barge-in, commits, recognition."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from parley import ids
from parley.audio.pcm import AudioFormat
from parley.audio.resample import StreamResampler, resample
from parley.engines.base import PCM, EngineError
from parley.protocol import server_events as ev
from parley.protocol.errors import ProtocolError
from parley.realtime.conversation import Item
from parley.realtime.input_audio_buffer import MIN_COMMIT_MS, InputAudioBuffer
from parley.realtime.transcription import LiveRecognition
from parley.realtime.turn_detection import ServerVadSegmenter, SpeechStarted, SpeechStopped

if TYPE_CHECKING:
    from parley.realtime.response import Response
    from parley.realtime.session import RealtimeSession

log = logging.getLogger("parley.input_audio")

VAD_RATE = 16000
_NO_AUDIO = np.zeros(0, dtype=np.int16)
IDLE_KEEP_MS = 1000
"""With turn detection on and nobody speaking, the buffer keeps this much audio beyond the prefix."""


class InputAudio:
    def __init__(self, session: RealtimeSession) -> None:
        self.session = session
        self.format = AudioFormat.from_wire(session.config.input["format"])
        self.buffer = InputAudioBuffer(self.format)
        self._segmenter: ServerVadSegmenter | None = None
        self._turn: dict[str, Any] | None = None
        self._vad_resampler: StreamResampler | None = None
        self._stt_resampler: StreamResampler | None = None
        self._live: LiveRecognition | None = None
        self._speech_item_id: str | None = None
        self._transcripts: dict[str, asyncio.Task[None]] = {}
        self._decoder = self.format.stream_decoder()
        self._auto_response_pending = False
        self.configure()

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
            self._segmenter = None
            if turn is not None:
                silence = turn.get("silence_duration_ms", 500) if turn["type"] == "server_vad" else None
                self._segmenter = ServerVadSegmenter(
                    self.session.engines.vad(),
                    threshold=float(turn.get("threshold", 0.5)),
                    prefix_padding_ms=int(turn.get("prefix_padding_ms", 300)),
                    silence_duration_ms=int(silence if silence is not None else _semantic_silence(turn)),
                )
                self._segmenter.reset(self.buffer.position_ms)
        if format_changed:
            # Only with a new format: a resampler holds back a few ms that positions depend on.
            self._vad_resampler = StreamResampler(self.format.sample_rate, VAD_RATE)

    # -- appending --------------------------------------------------------------------------------

    async def append(self, audio: bytes) -> None:
        self.buffer.append(audio)
        pcm = self._decoder.decode(audio)
        if self._segmenter is None:
            self._feed_live(pcm)
            return
        assert self._vad_resampler is not None
        pcm16k = self._vad_resampler.process(pcm)
        if self._segmenter.speaking:
            self._feed_live(pcm)
        events = self._segmenter.push(pcm16k, self.buffer.position_ms)
        for event in events:
            if isinstance(event, SpeechStarted):
                await self._speech_started(event.audio_start_ms)
            elif isinstance(event, SpeechStopped):
                await self._speech_stopped(event.audio_end_ms)
        if not self._segmenter.speaking:
            keep_from = self.buffer.position_ms - self._prefix_ms() - IDLE_KEEP_MS
            if keep_from > self.buffer.start_ms:
                self.buffer.take_until(keep_from)

    def _prefix_ms(self) -> int:
        return int((self._turn or {}).get("prefix_padding_ms", 300))

    def _recognition(self) -> LiveRecognition:
        transcription = self.session.config.transcription or {}
        return LiveRecognition(
            self.session.engines.stt,
            language=transcription.get("language"),
            prompt=transcription.get("prompt"),
        )

    def _feed_live(self, pcm: PCM) -> None:
        if self._live is None:
            self._live = self._recognition()
            self._stt_resampler = StreamResampler(
                self.format.sample_rate, self.session.engines.stt.sample_rate
            )
        assert self._stt_resampler is not None
        self._live.feed(self._stt_resampler.process(pcm))

    def _take_live(self) -> LiveRecognition | None:
        """The utterance being recognised, with the samples its resampler still held fed to it."""
        live, self._live = self._live, None
        if live is not None and self._stt_resampler is not None:
            live.feed(self._stt_resampler.process(_NO_AUDIO, last=True))
        return live

    def _drop_live(self) -> None:
        if self._live is not None:
            self._live.close()
        self._live = None

    # -- turn detection ---------------------------------------------------------------------------

    async def _speech_started(self, audio_start_ms: int) -> None:
        self._speech_item_id = ids.item_id()
        if audio_start_ms > self.buffer.start_ms:
            self.buffer.take_until(audio_start_ms)
        self._drop_live()
        self._feed_live(self.format.decode(self.buffer.peek()))
        await self.session.emit(ev.input_audio_buffer_speech_started(audio_start_ms, self._speech_item_id))
        turn = self._turn or {}
        active = self.session.active
        if active is not None and turn.get("interrupt_response", True):
            active.cancel("turn_detected")

    async def _speech_stopped(self, audio_end_ms: int) -> None:
        item_id = self._speech_item_id or ids.item_id()
        self._speech_item_id = None
        await self.session.emit(ev.input_audio_buffer_speech_stopped(audio_end_ms, item_id))
        await self._commit(item_id)
        if (self._turn or {}).get("create_response", True):
            if self.session.active is None:
                await self.session.create_response()
            else:
                self._auto_response_pending = True

    def response_finished(self, response: Response) -> None:
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
        if self._segmenter is not None:
            self._segmenter.reset(self.buffer.position_ms)

    async def _commit(self, item_id: str) -> None:
        audio = self.buffer.take()
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
        previous = self.session.conversation.last_id()
        await self.session.emit(ev.input_audio_buffer_committed(item_id, previous))
        self.session.conversation.insert(item)
        await self.session.emit(ev.conversation_item_added(item.wire(), previous))
        await self.session.emit(ev.conversation_item_done(item.wire(), previous))
        self.transcribe(item, self._take_live())

    def clear(self) -> None:
        self.buffer.clear()
        self._decoder.reset()
        self._drop_live()
        self._speech_item_id = None
        if self._segmenter is not None:
            self._segmenter.reset(self.buffer.position_ms)

    # -- recognition ------------------------------------------------------------------------------

    def transcribe(self, item: Item, live: LiveRecognition | None = None) -> None:
        task = asyncio.get_running_loop().create_task(self._transcribe(item, live))
        self._transcripts[item.id] = task
        task.add_done_callback(lambda _: self._transcripts.pop(item.id, None))

    async def _transcribe(self, item: Item, live: LiveRecognition | None) -> None:
        index = next(iter(item.audio))
        stt = self.session.engines.stt
        settings = self.session.config.transcription
        try:
            if live is None:
                live = self._recognition()
                assert item.audio_format is not None
                pcm = item.audio_format.decode(bytes(item.audio[index]))
                live.feed(resample(pcm, item.audio_format.sample_rate, stt.sample_rate))
            result = await live.finish()
        except EngineError as exc:
            log.warning("transcription of %s failed: %s", item.id, exc)
            if settings is not None:
                await self.session.emit(ev.transcription_failed(item.id, index, exc.code, str(exc)))
            return
        text = result.text.strip()
        item.heard[index] = text
        if settings is not None:
            item.data["content"][index]["transcript"] = text
            if text:
                await self.session.emit(ev.transcription_delta(item.id, index, text))
            await self.session.emit(ev.transcription_completed(item.id, index, text, result.audio_seconds))

    async def wait_for_transcripts(self, items: list[Item]) -> None:
        pending = [self._transcripts[i.id] for i in items if i.id in self._transcripts]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    def seconds_in(self, items: list[Item]) -> float:
        return sum(i.audio_ms(k) for i in items if i.role == "user" for k in i.audio) / 1000

    async def close(self) -> None:
        self._drop_live()
        for task in list(self._transcripts.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _semantic_silence(turn: dict[str, Any]) -> int:
    """semantic_vad without a turn-end model yet: the eagerness picks the silence that ends a turn."""
    return {"low": 1200, "medium": 700, "auto": 700, "high": 400}.get(str(turn.get("eagerness")), 700)
