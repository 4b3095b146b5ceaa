"""The output items of one response as they stream: an assistant message (text, or audio with its
transcript) and function calls. Each writer emits its own events and finishes itself exactly once,
``completed`` or, when the response stopped early, ``incomplete``."""

from __future__ import annotations

import asyncio
import base64
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from parley import ids
from parley.audio.pcm import AudioFormat
from parley.audio.resample import StreamResampler
from parley.engines.base import TextToSpeech
from parley.protocol import server_events as ev
from parley.realtime.conversation import Conversation, Item
from parley.realtime.sentences import SentenceChunker

Emit = Callable[[ev.Event], Awaitable[None]]

AUDIO_DELTA_MS = 200
"""Longest audio carried by one ``response.output_audio.delta``."""
_EMPTY = np.zeros(0, dtype=np.int16)


@dataclass
class OutputTarget:
    """Where output items go: the response's output list, and the conversation unless out-of-band."""

    response_id: str
    output: list[Item]
    conversation: Conversation | None
    emit: Emit

    async def add(self, item: Item) -> int:
        output_index = len(self.output)
        self.output.append(item)
        await self.emit(ev.output_item_added(self.response_id, output_index, item.wire()))
        if self.conversation is not None:
            previous = self.conversation.insert(item)
            await self.emit(ev.conversation_item_added(item.wire(), previous))
        return output_index

    async def done(self, item: Item, output_index: int) -> None:
        await self.emit(ev.output_item_done(self.response_id, output_index, item.wire()))
        if self.conversation is not None and item.id in self.conversation:
            previous = self.conversation.previous_id(item.id)
            await self.emit(ev.conversation_item_done(item.wire(), previous))


class MessageWriter:
    """An assistant message with one content part: ``text``, or ``audio`` spoken piece by piece."""

    def __init__(
        self,
        target: OutputTarget,
        *,
        audio: bool,
        tts: TextToSpeech,
        voice: str,
        speed: float,
        audio_format: AudioFormat,
    ) -> None:
        self.target = target
        self.audio = audio
        self.tts = tts
        self.voice = voice
        self.speed = speed
        self.format = audio_format
        self.item = Item(
            data={
                "id": ids.item_id(),
                "object": "realtime.item",
                "type": "message",
                "status": "in_progress",
                "role": "assistant",
                "content": [],
            },
            audio_format=audio_format if audio else None,
        )
        self.text = ""
        """All the text the model produced for this message."""
        self.spoken = ""
        """With audio: exactly the text that was spoken (the transcript)."""
        self._chunker = SentenceChunker()
        self._resampler = StreamResampler(tts.sample_rate, audio_format.sample_rate) if audio else None
        self._output_index = -1
        self._ids: ev.PartIds | None = None
        self.audio_ms = 0.0
        self.on_first_audio: Callable[[], None] | None = None

    async def start(self) -> None:
        self._output_index = await self.target.add(self.item)
        self._ids = ev.PartIds(self.target.response_id, self.item.id, self._output_index, 0)
        part = {"type": "audio", "transcript": ""} if self.audio else {"type": "text", "text": ""}
        self.item.data["content"].append(
            {"type": "output_audio", "transcript": ""} if self.audio else {"type": "output_text", "text": ""}
        )
        if self.audio:
            self.item.audio[0] = bytearray()
        await self.target.emit(ev.content_part_added(self._ids, part))

    async def push(self, text: str) -> None:
        self.text += text
        if not self.audio:
            self.item.data["content"][0]["text"] = self.text
            assert self._ids is not None
            await self.target.emit(ev.output_text_delta(self._ids, text))
            return
        for piece in self._chunker.push(text):
            await self._speak(piece)

    async def _speak(self, piece: str) -> None:
        assert self._ids is not None and self._resampler is not None
        announced = False
        async for chunk in self.tts.synthesize(piece.strip(), voice=self.voice, speed=self.speed):
            pcm = self._resampler.process(chunk)
            if not announced:
                announced = True
                self.spoken += piece
                self.item.data["content"][0]["transcript"] = self.spoken
                await self.target.emit(ev.output_audio_transcript_delta(self._ids, piece))
            await self._send_audio(self.format.encode(pcm))
        if announced:
            self.item.spoken_marks.append((self.audio_ms, len(self.spoken)))

    async def _send_audio(self, data: bytes) -> None:
        assert self._ids is not None
        if not data:
            return
        if self.on_first_audio is not None:
            self.on_first_audio()
            self.on_first_audio = None
        step = int(AUDIO_DELTA_MS * self.format.bytes_per_ms)
        for start in range(0, len(data), step):
            piece = data[start : start + step]
            self.item.audio[0].extend(piece)
            self.audio_ms += self.format.duration_ms(len(piece))
            await self.target.emit(ev.output_audio_delta(self._ids, base64.b64encode(piece).decode("ascii")))
            # Let the writer send it now rather than when this task next waits for an engine.
            await asyncio.sleep(0)

    async def finish_speaking(self) -> None:
        """Speak what the chunker still holds (the end of the reply)."""
        if not self.audio:
            return
        for piece in self._chunker.flush():
            await self._speak(piece)
        assert self._resampler is not None
        await self._send_audio(self.format.encode(self._resampler.process(_EMPTY, last=True)))

    async def done(self, status: str) -> None:
        assert self._ids is not None
        self.item.data["status"] = status
        if self.audio:
            await self.target.emit(ev.output_audio_done(self._ids))
            await self.target.emit(ev.output_audio_transcript_done(self._ids, self.spoken))
            part = {"type": "audio", "transcript": self.spoken}
        else:
            await self.target.emit(ev.output_text_done(self._ids, self.text))
            part = {"type": "text", "text": self.text}
        await self.target.emit(ev.content_part_done(self._ids, part))
        await self.target.done(self.item, self._output_index)


class ArgumentsWriter(ABC):
    """An output item whose ``arguments`` stream in: added by ``start``, then grown by ``push``,
    each delta announced with the event ``_arguments_delta`` makes."""

    def __init__(self, target: OutputTarget, item: Item) -> None:
        self.target = target
        self.item = item
        self._output_index = -1

    @property
    def arguments(self) -> str:
        return str(self.item.data["arguments"])

    async def start(self) -> None:
        self._output_index = await self.target.add(self.item)

    async def push(self, delta: str) -> None:
        if not delta:
            return
        self.item.data["arguments"] += delta
        await self.target.emit(self._arguments_delta(delta))

    @abstractmethod
    def _arguments_delta(self, delta: str) -> ev.Event:
        """The event announcing ``delta``, already added to the arguments."""


class FunctionCallWriter(ArgumentsWriter):
    """A ``function_call`` item whose arguments stream in."""

    def __init__(self, target: OutputTarget, *, name: str, call_id: str | None) -> None:
        item = Item(
            data={
                "id": ids.item_id(),
                "object": "realtime.item",
                "type": "function_call",
                "status": "in_progress",
                "name": name,
                "call_id": call_id or ids.call_id(),
                "arguments": "",
            }
        )
        super().__init__(target, item)

    @property
    def name(self) -> str:
        return str(self.item.data["name"])

    @property
    def call_id(self) -> str:
        return str(self.item.data["call_id"])

    def _arguments_delta(self, delta: str) -> ev.Event:
        return ev.function_call_arguments_delta(
            self.target.response_id, self.item.id, self._output_index, self.call_id, delta
        )

    async def done(self, status: str) -> None:
        """A completed call announces its arguments; a call from a stopped response never does."""
        self.item.data["status"] = status
        if status == "completed":
            await self.target.emit(
                ev.function_call_arguments_done(
                    self.target.response_id,
                    self.item.id,
                    self._output_index,
                    self.call_id,
                    self.name,
                    self.arguments,
                )
            )
        await self.target.done(self.item, self._output_index)


def output_wire(items: list[Item]) -> list[dict[str, Any]]:
    return [item.wire() for item in items]
