"""The audit trail of one session, kept in memory from its events and handed out in batches.

:class:`SessionLog` is pure and synchronous: ``observe(direction, event)`` updates rows (as dicts
of column values) and marks them dirty; ``take()`` snapshots the dirty rows for the writer, and
``restore()`` puts a batch back when writing it failed. Nothing here touches the database, so it
is cheap enough to run on the event loop for every event; redaction happens in the writer thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from parley.store import wire
from parley.store.audio_log import AudioLog
from parley.store.models import utcnow

Row = dict[str, Any]


@dataclass
class Batch:
    session: Row | None = None
    items: list[Row] = field(default_factory=list)
    responses: list[Row] = field(default_factory=list)
    errors: list[Row] = field(default_factory=list)
    audio: list[Row] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.session is None


@dataclass
class _Timing:
    created: float
    turn_end: float | None
    output_format: dict[str, Any] | None
    first_output: bool = False


class SessionLog:
    def __init__(
        self,
        *,
        session_id: str | None = None,
        key_id: str | None = None,
        transport: str = "websocket",
        model: str | None = None,
        record_audio: bool = False,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._monotonic = monotonic
        self.session: Row = wire.new_session_row(session_id, key_id, transport, model, clock())
        self.items: dict[str, Row] = {}
        self.responses: dict[str, Row] = {}
        self._timing: dict[str, _Timing] = {}
        self._dirty_session = True
        self._dirty_items: dict[str, None] = {}
        self._dirty_responses: dict[str, None] = {}
        self._errors: list[Row] = []
        self.audio = AudioLog(record=record_audio, clock=clock)
        self._turn_end: tuple[float, str | None] | None = None

    @property
    def session_id(self) -> str | None:
        return self.session["id"]  # type: ignore[no-any-return]

    # -- events -----------------------------------------------------------------------------------

    def observe(self, direction: str, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if direction == "client":
            if kind == "input_audio_buffer.append" and isinstance(event.get("audio"), str):
                self.audio.appended(event["audio"])
                self._dirty_session = True
            return
        handler = _HANDLERS.get(str(kind))
        if handler is not None:
            handler(self, event)

    def end(self, reason: str | None = None) -> None:
        """The session is over: flush audio still held and stamp the end."""
        self.audio.finish()
        if self.session["ended_at"] is None:
            self.session["ended_at"] = self._clock()
            self.session["end_reason"] = reason
        self._dirty_session = True

    def touch(self) -> None:
        """Mark the session row for writing (a heartbeat that keeps ``updated_at`` fresh)."""
        self._dirty_session = True

    def _session_config(self, event: dict[str, Any]) -> None:
        config = event.get("session") or {}
        if self.session["id"] is None:
            self.session["id"] = config.get("id")
        self.session["model"] = config.get("model") or self.session["model"]
        self.session["session_type"] = config.get("type")
        self.session["config"] = wire.safe_config(config)
        self.audio.input_format, self.audio.output_format = wire.session_formats(config)
        self._dirty_session = True

    def _speech_stopped(self, event: dict[str, Any]) -> None:
        self._turn_end = (self._monotonic(), event.get("item_id"))

    def _committed(self, event: dict[str, Any]) -> None:
        item_id = event.get("item_id")
        if self._turn_end is None or self._turn_end[1] != item_id:  # a manual commit ends the turn
            self._turn_end = (self._monotonic(), item_id)
        self.audio.committed(item_id)

    def _cleared(self, event: dict[str, Any]) -> None:
        self.audio.cleared()

    def _item_event(self, event: dict[str, Any]) -> None:
        item = event.get("item") or {}
        in_conversation = event["type"].startswith("conversation.")
        self._item(item, response_id=event.get("response_id"), conversation=in_conversation)
        if in_conversation and item.get("id") in self.items:
            self.items[item["id"]]["previous_item_id"] = event.get("previous_item_id")

    def _item(
        self, item: dict[str, Any], *, response_id: str | None = None, conversation: bool = False
    ) -> None:
        item_id = item.get("id")
        if not isinstance(item_id, str):
            return
        row = self._row(item_id)
        row.update((name, value) for name, value in wire.item_columns(item).items() if value is not None)
        row["response_id"] = response_id or row["response_id"]
        row["in_conversation"] = row["in_conversation"] or conversation

    def _row(self, item_id: str) -> Row:
        row = self.items.get(item_id)
        if row is None:
            row = self.items[item_id] = wire.new_item_row(item_id, len(self.items), self._clock())
        self._dirty_items[item_id] = None
        return row

    def _transcript(self, event: dict[str, Any]) -> None:
        if isinstance(event.get("item_id"), str) and isinstance(event.get("transcript"), str):
            row = self._row(event["item_id"])
            if event["type"].startswith("conversation."):
                row.update(role=row["role"] or "user", in_conversation=True)
            row["transcript"] = event["transcript"]

    def _text_done(self, event: dict[str, Any]) -> None:
        if isinstance(event.get("item_id"), str) and isinstance(event.get("text"), str):
            self._row(event["item_id"])["text"] = event["text"]

    def _deleted(self, event: dict[str, Any]) -> None:
        if event.get("item_id") in self.items:
            self._row(event["item_id"])["deleted_at"] = self._clock()

    def _truncated(self, event: dict[str, Any]) -> None:
        if event.get("item_id") in self.items:
            self._row(event["item_id"])["truncated_audio_end_ms"] = event.get("audio_end_ms")

    def _response_created(self, event: dict[str, Any]) -> None:
        response = event.get("response") or {}
        response_id = response.get("id")
        if not isinstance(response_id, str):
            return
        in_conversation = response.get("conversation_id") is not None
        turn = self._turn_end if in_conversation else None
        if turn is not None:
            self._turn_end = None
        output_format = ((response.get("audio") or {}).get("output") or {}).get("format")
        self._timing[response_id] = _Timing(
            self._monotonic(), turn[0] if turn else None, output_format or self.audio.output_format
        )
        self.responses[response_id] = {
            **wire.new_response_row(response_id, len(self.responses), self._clock()),
            "in_conversation": in_conversation,
            "input_item_id": turn[1] if turn else None,
        }
        self._dirty_responses[response_id] = None

    def _output_delta(self, event: dict[str, Any]) -> None:
        response_id = event.get("response_id")
        timing = self._timing.get(response_id) if isinstance(response_id, str) else None
        if timing is None or response_id not in self.responses:
            return
        if event["type"] == "response.output_audio.delta" and isinstance(event.get("delta"), str):
            self.audio.output_delta(event.get("item_id"), event["delta"], timing.output_format)
            self._dirty_session = True
        if not timing.first_output:
            timing.first_output = True
            now = self._monotonic()
            row = self.responses[response_id]
            row["first_output_ms"] = (now - timing.created) * 1000
            if timing.turn_end is not None:
                row["latency_ms"] = (now - timing.turn_end) * 1000
            self._dirty_responses[response_id] = None

    def _output_audio_done(self, event: dict[str, Any]) -> None:
        if isinstance(event.get("item_id"), str):
            self.audio.output_done(event["item_id"])

    def _response_done(self, event: dict[str, Any]) -> None:
        response = event.get("response") or {}
        response_id = response.get("id")
        row = self.responses.get(response_id) if isinstance(response_id, str) else None
        if row is None or not isinstance(response_id, str):
            return
        usage = wire.usage_columns(response.get("usage"))
        row.update(usage, status=response.get("status"), done_at=self._clock())
        row["status_reason"] = wire.status_reason(response.get("status_details"))
        for name in ("input_tokens", "output_tokens", "total_tokens"):
            self.session[name] += usage[name]
        self._dirty_session = True
        self._dirty_responses[response_id] = None
        for item in response.get("output") or []:
            if isinstance(item, dict):
                self._item(item, response_id=response_id)
        self._timing.pop(response_id, None)

    def _error(self, event: dict[str, Any]) -> None:
        """``error`` events, and ``…input_audio_transcription.failed`` (with the item's id)."""
        error = event.get("error") or {}
        self._errors.append(
            {
                "at": self._clock(),
                "type": error.get("type"),
                "code": error.get("code"),
                "message": error.get("message"),
                "param": error.get("param"),
                "event_id": error.get("event_id"),
                "item_id": event.get("item_id"),
            }
        )

    # -- batches ----------------------------------------------------------------------------------

    def take(self) -> Batch:
        """The rows changed since the last batch (empty until the session id is known)."""
        sid = self.session_id
        dirty = self._dirty_session or self._dirty_items or self._dirty_responses or self._errors
        if sid is None or not (dirty or self.audio.rows):
            return Batch()
        self.session.update(
            updated_at=self._clock(),
            audio_in_seconds=self.audio.seconds_in,
            audio_out_seconds=self.audio.seconds_out,
        )
        batch = Batch(
            session=dict(self.session),
            items=[{**self.items[i], "session_id": sid} for i in self._dirty_items],
            responses=[{**self.responses[r], "session_id": sid} for r in self._dirty_responses],
            errors=[{**e, "session_id": sid} for e in self._errors],
            audio=[{**a, "session_id": sid} for a in self.audio.rows],
        )
        self._dirty_session = False
        self._dirty_items, self._dirty_responses = {}, {}
        self._errors, self.audio.rows = [], []
        return batch

    def restore(self, batch: Batch) -> None:
        """Put back a batch that could not be written, to go with the next one."""
        if batch.empty:
            return
        self._dirty_session = True
        self._dirty_items = {**{r["id"]: None for r in batch.items}, **self._dirty_items}
        self._dirty_responses = {**{r["id"]: None for r in batch.responses}, **self._dirty_responses}
        strip = ("session_id",)
        self._errors[:0] = [{k: v for k, v in e.items() if k not in strip} for e in batch.errors]
        self.audio.rows[:0] = [{k: v for k, v in a.items() if k not in strip} for a in batch.audio]


_HANDLERS: dict[str, Callable[[SessionLog, dict[str, Any]], None]] = {
    "session.created": SessionLog._session_config,
    "session.updated": SessionLog._session_config,
    "input_audio_buffer.speech_stopped": SessionLog._speech_stopped,
    "input_audio_buffer.committed": SessionLog._committed,
    "input_audio_buffer.cleared": SessionLog._cleared,
    "conversation.item.added": SessionLog._item_event,
    "conversation.item.done": SessionLog._item_event,
    "response.output_item.done": SessionLog._item_event,
    "conversation.item.input_audio_transcription.completed": SessionLog._transcript,
    "conversation.item.input_audio_transcription.failed": SessionLog._error,
    "response.output_audio_transcript.done": SessionLog._transcript,
    "response.output_text.done": SessionLog._text_done,
    "conversation.item.deleted": SessionLog._deleted,
    "conversation.item.truncated": SessionLog._truncated,
    "response.created": SessionLog._response_created,
    "response.output_audio.delta": SessionLog._output_delta,
    "response.output_text.delta": SessionLog._output_delta,
    "response.output_audio.done": SessionLog._output_audio_done,
    "response.done": SessionLog._response_done,
    "error": SessionLog._error,
}
