"""One ``parley talk`` session: sends turns over an SDK realtime connection and follows the replies.

A single receiver task reads ``conn.recv()`` and updates the state here; the sending side waits on
that state (``_wait``). Events are dispatched on their ``type`` string: the SDK parses leniently, so
an event a server sends that the SDK does not know arrives as some other model with that ``type``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from openai.types.realtime import RealtimeServerEvent, RealtimeSessionCreateRequestParam

from parley.client.report import Printer, Turn, describe_error, shorten

TEXT_DELTAS = {"response.output_text.delta", "response.text.delta"}
TEXT_DONE = {"response.output_text.done", "response.text.done"}
TRANSCRIPT_DELTAS = {"response.output_audio_transcript.delta", "response.audio_transcript.delta"}
TRANSCRIPT_DONE = {"response.output_audio_transcript.done", "response.audio_transcript.done"}
AUDIO_DELTAS = {"response.output_audio.delta", "response.audio.delta"}
FIRST_DELTAS = TEXT_DELTAS | TRANSCRIPT_DELTAS | AUDIO_DELTAS | {"response.function_call_arguments.delta"}


class ConnectionLost(Exception):
    """The server closed the connection."""


class SessionRejected(Exception):
    """The server answered ``session.update`` with an error."""


def _text(event: Any, name: str) -> str:
    value = getattr(event, name, None)
    return value if isinstance(value, str) else ""


class Conversation:
    def __init__(self, conn: Any, printer: Printer, *, show_events: bool = False) -> None:
        self.conn = conn
        self.printer = printer
        self.show_events = show_events
        self.turns: list[Turn] = []
        self.closed: str | None = None
        """Why the connection ended, once it has."""
        self.transcribe = False
        self.vad = False
        self._ids = itertools.count(1)
        self._changed = asyncio.Event()
        self._awaiting: Turn | None = None
        self._vad_label = "audio"
        self._by_response: dict[str, Turn] = {}
        self._active: set[str] = set()
        self._speaking = False
        self._speech_stops = 0
        self._last_stop_at: float | None = None
        self._pending_transcripts: set[str] = set()
        self._streamed_items: set[str] = set()
        self._session_event: str | None = None
        self._session_result: str | None = None

    # ------------------------------------------------------------------------------------ plumbing

    def event_id(self) -> str:
        return f"talk_{next(self._ids)}"

    async def receive(self) -> None:
        """Read events until the connection closes (run as a task)."""
        from websockets.exceptions import ConnectionClosed

        try:
            while True:
                event = await self.conn.recv()
                try:
                    self._handle(event)
                except (AttributeError, TypeError, ValueError) as exc:
                    self.printer.line(
                        f"warning: ignored a malformed {_text(event, 'type')!r} event: {exc}", err=True
                    )
                self._changed.set()
        except ConnectionClosed as exc:
            if exc.rcvd is None:
                self.closed = "the connection to the server dropped (no close frame)"
            else:
                reason = f": {exc.rcvd.reason}" if exc.rcvd.reason else ""
                self.closed = f"the server closed the connection (code {exc.rcvd.code}{reason})"
        except Exception as exc:
            self.closed = f"lost the connection: {exc!r}"
        finally:
            self.printer.end()
            self._changed.set()

    async def _wait(self, ready: Callable[[], bool], deadline: float) -> bool:
        """Wait until ``ready()``; False when ``deadline`` (monotonic) passes first."""
        while not ready():
            if self.closed is not None:
                raise ConnectionLost(self.closed)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return True

    # ------------------------------------------------------------------------------------ actions

    async def configure(self, session: RealtimeSessionCreateRequestParam, timeout_s: float) -> None:
        """Send ``session.update`` and wait for ``session.updated``; raises SessionRejected on error."""
        self._session_event = self.event_id()
        await self.conn.session.update(session=session, event_id=self._session_event)
        if not await self._wait(lambda: self._session_result is not None, time.monotonic() + timeout_s):
            raise SessionRejected(f"no session.updated within {timeout_s:g} s")
        if self._session_result != "ok":
            raise SessionRejected(self._session_result or "")

    async def send_text(self, text: str, timeout_s: float) -> Turn:
        """One text turn: a user message, ``response.create``, and the reply."""
        turn = self._start(f'text "{shorten(text)}"')
        item_event, response_event = self.event_id(), self.event_id()
        turn.event_ids |= {item_event, response_event}
        await self.conn.conversation.item.create(
            item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]},
            event_id=item_event,
        )
        await self.conn.response.create(event_id=response_event)
        turn.input_done_at = time.monotonic()
        await self._finish(turn, time.monotonic() + timeout_s, timeout_s)
        return turn

    async def send_audio(self, label: str, chunks: AsyncIterator[bytes], timeout_s: float) -> list[Turn]:
        """One audio input; with VAD the server ends the turn(s), else commit + ``response.create``."""
        if self.vad:
            return await self._send_audio_vad(label, chunks, timeout_s)
        turn = self._start(label)
        async for chunk in chunks:
            await self.conn.input_audio_buffer.append(audio=base64.b64encode(chunk).decode("ascii"))
        commit_event, response_event = self.event_id(), self.event_id()
        turn.event_ids |= {commit_event, response_event}
        await self.conn.input_audio_buffer.commit(event_id=commit_event)
        await self.conn.response.create(event_id=response_event)
        turn.input_done_at = time.monotonic()
        await self._finish(turn, time.monotonic() + timeout_s, timeout_s)
        return [turn]

    async def _send_audio_vad(self, label: str, chunks: AsyncIterator[bytes], timeout_s: float) -> list[Turn]:
        self._awaiting = None
        self._vad_label = label
        first = len(self.turns)
        stops = self._speech_stops
        async for chunk in chunks:
            await self.conn.input_audio_buffer.append(audio=base64.b64encode(chunk).decode("ascii"))
        sent_at = time.monotonic()

        def answered() -> bool:
            turns = self.turns[first:]
            return (
                bool(turns)
                and not self._speaking
                and not self._active
                and all(t.done for t in turns)
                and len(turns) >= self._speech_stops - stops
            )

        heard = await self._wait(
            lambda: self._speech_stops > stops or self._speaking, sent_at + min(timeout_s, 5.0)
        )
        if not heard:
            self.printer.line(f"warning: server VAD heard no speech in {label}; try --no-vad", err=True)
            return []
        if not await self._wait(answered, sent_at + timeout_s):
            self.printer.line(f"error: no reply to {label} within {timeout_s:g} s (try --no-vad)", err=True)
            for turn in self.turns[first:]:
                if not turn.done:
                    turn.status, turn.done = "timeout", True
        await self._wait_transcripts(sent_at + timeout_s)
        return self.turns[first:]

    def abandon(self, status: str) -> bool:
        """Give unfinished turns ``status``; whether there were any."""
        unfinished = [turn for turn in self.turns if not turn.done]
        for turn in unfinished:
            turn.status, turn.done = status, True
        return bool(unfinished)

    def vad_label(self, label: str) -> None:
        """Label for responses the server starts on its own (server VAD turns)."""
        self._awaiting = None
        self._vad_label = label

    async def settle(self, timeout_s: float) -> None:
        """Wait for responses still running (after the microphone stops)."""
        deadline = time.monotonic() + timeout_s
        if not await self._wait(lambda: not self._active and not self._speaking, deadline):
            self.printer.line("warning: stopped while a response was still running", err=True)
        await self._wait_transcripts(deadline)

    def _start(self, label: str) -> Turn:
        turn = Turn(label)
        self.turns.append(turn)
        self._awaiting = turn
        return turn

    async def _finish(self, turn: Turn, deadline: float, timeout_s: float) -> None:
        if not await self._wait(lambda: turn.done, deadline):
            turn.status, turn.done = "timeout", True
            self.printer.line(f"error: no response.done for {turn.label} within {timeout_s:g} s", err=True)
        if self._awaiting is turn:
            self._awaiting = None
        await self._wait_transcripts(deadline)

    async def _wait_transcripts(self, deadline: float) -> None:
        if not await self._wait(lambda: not self._pending_transcripts, deadline):
            self.printer.line("warning: the input transcription did not arrive", err=True)
            self._pending_transcripts.clear()

    # ------------------------------------------------------------------------------------ events

    def _turn_for(self, response_id: str) -> Turn:
        turn = self._by_response.get(response_id)
        if turn is None:
            awaiting = self._awaiting
            if awaiting is not None and awaiting.response_id is None and not awaiting.done:
                turn = awaiting
            else:  # started by the server (VAD): the input ended when the speech stopped
                turn = Turn(self._vad_label, input_done_at=self._last_stop_at)
                self.turns.append(turn)
            turn.response_id = response_id
            turn.status = "in_progress"
            self._by_response[response_id] = turn
        return turn

    def _handle(self, event: RealtimeServerEvent) -> None:
        kind = _text(event, "type")
        if self.show_events:
            self.printer.line(f"· {kind}", err=True)
        now = time.monotonic()
        if kind in FIRST_DELTAS:
            turn = self._turn_for(_text(event, "response_id"))
            if turn.first_delta_at is None:
                turn.first_delta_at = now
        if kind == "error":
            self._on_error(event)
        elif kind == "session.updated":
            if self._session_result is None and self._session_event is not None:
                self._session_result = "ok"
        elif kind == "response.created":
            turn = self._turn_for(getattr(getattr(event, "response", None), "id", None) or "")
            self._active.add(turn.response_id or "")
        elif kind == "response.done":
            self._on_response_done(event)
        elif kind in TEXT_DELTAS or kind in TRANSCRIPT_DELTAS:
            item_id = _text(event, "item_id")
            self._streamed_items.add(item_id)
            self.printer.stream(item_id, "assistant: ", _text(event, "delta"))
        elif kind in TEXT_DONE or kind in TRANSCRIPT_DONE:
            item_id = _text(event, "item_id")
            if item_id not in self._streamed_items:
                self.printer.line(f"assistant: {_text(event, 'text') or _text(event, 'transcript')}")
            self.printer.end(item_id)
        elif kind in AUDIO_DELTAS:
            audio = base64.b64decode(_text(event, "delta"))
            self._turn_for(_text(event, "response_id")).audio.extend(audio)
        elif kind == "response.function_call_arguments.done":
            name = _text(event, "name") or "function"
            self.printer.line(
                f"assistant called {name}({_text(event, 'arguments')}) [call_id {_text(event, 'call_id')}]"
            )
        elif kind == "input_audio_buffer.speech_started":
            self._speaking = True
        elif kind == "input_audio_buffer.speech_stopped":
            self._speaking = False
            self._speech_stops += 1
            self._last_stop_at = now
        elif kind == "input_audio_buffer.committed":
            if self.transcribe:
                self._pending_transcripts.add(_text(event, "item_id"))
        elif kind == "conversation.item.input_audio_transcription.completed":
            self._pending_transcripts.discard(_text(event, "item_id"))
            self.printer.line(f"you: {_text(event, 'transcript').strip()}")
        elif kind == "conversation.item.input_audio_transcription.failed":
            self._pending_transcripts.discard(_text(event, "item_id"))
            self.printer.line(
                f"error: transcription failed: {describe_error(getattr(event, 'error', None))}", err=True
            )

    def _on_error(self, event: Any) -> None:
        error = getattr(event, "error", None)
        self.printer.line(f"error: {describe_error(error)}", err=True)
        failed_event = getattr(error, "event_id", None)
        if failed_event is None:
            return
        if failed_event == self._session_event and self._session_result is None:
            self._session_result = describe_error(error)
        for turn in self.turns:
            if failed_event in turn.event_ids and turn.response_id is None and not turn.done:
                turn.status, turn.error, turn.done = "error", describe_error(error), True

    def _on_response_done(self, event: Any) -> None:
        response = event.response
        turn = self._turn_for(getattr(response, "id", None) or "")
        self._active.discard(turn.response_id or "")
        turn.status = getattr(response, "status", None) or "completed"
        details = getattr(response, "status_details", None)
        if turn.status == "failed":
            turn.error = describe_error(getattr(details, "error", None))
            self.printer.line(f"error: the response failed: {turn.error}", err=True)
        elif turn.status in ("cancelled", "incomplete") and details is not None:
            turn.status = f"{turn.status} ({getattr(details, 'reason', None) or '?'})"
        turn.done = True
        self.printer.end()
