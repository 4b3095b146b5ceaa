"""Builders for GA server events, one function per event, in the wire's own field names.

Every event gets a fresh server ``event_id``. Tests validate each built event strictly against the
``openai`` package's GA models (``RealtimeServerEvent``), so these stay exactly on the wire.
"""

from __future__ import annotations

from typing import Any

from parley import ids
from parley.protocol.errors import ProtocolError

Event = dict[str, Any]


def _event(type_: str, **fields: Any) -> Event:
    return {"type": type_, "event_id": ids.event_id(), **fields}


def error(exc: ProtocolError) -> Event:
    return _event(
        "error",
        error={
            "type": exc.type,
            "code": exc.code,
            "message": exc.message,
            "param": exc.param,
            "event_id": exc.event_id,
        },
    )


def session_created(session: dict[str, Any]) -> Event:
    return _event("session.created", session=session)


def session_updated(session: dict[str, Any]) -> Event:
    return _event("session.updated", session=session)


# -- input audio buffer ---------------------------------------------------------------------------


def input_audio_buffer_committed(item_id: str, previous_item_id: str | None) -> Event:
    return _event("input_audio_buffer.committed", item_id=item_id, previous_item_id=previous_item_id)


def input_audio_buffer_cleared() -> Event:
    return _event("input_audio_buffer.cleared")


def input_audio_buffer_speech_started(audio_start_ms: int, item_id: str) -> Event:
    return _event("input_audio_buffer.speech_started", audio_start_ms=audio_start_ms, item_id=item_id)


def input_audio_buffer_speech_stopped(audio_end_ms: int, item_id: str) -> Event:
    return _event("input_audio_buffer.speech_stopped", audio_end_ms=audio_end_ms, item_id=item_id)


def input_audio_buffer_timeout_triggered(audio_start_ms: int, audio_end_ms: int, item_id: str) -> Event:
    return _event(
        "input_audio_buffer.timeout_triggered",
        audio_start_ms=audio_start_ms,
        audio_end_ms=audio_end_ms,
        item_id=item_id,
    )


def input_audio_buffer_dtmf_event_received(digit: str, received_at: int) -> Event:
    """A telephone keypad press on a phone call (SIP, carrier media streams)."""
    return _event("input_audio_buffer.dtmf_event_received", event=digit, received_at=received_at)


def output_audio_buffer(kind: str, response_id: str) -> Event:
    """``output_audio_buffer.started|stopped|cleared`` (WebRTC/SIP only)."""
    return _event(f"output_audio_buffer.{kind}", response_id=response_id)


# -- conversation ---------------------------------------------------------------------------------


def conversation_item_added(item: dict[str, Any], previous_item_id: str | None) -> Event:
    return _event("conversation.item.added", item=item, previous_item_id=previous_item_id)


def conversation_item_done(item: dict[str, Any], previous_item_id: str | None) -> Event:
    return _event("conversation.item.done", item=item, previous_item_id=previous_item_id)


def conversation_item_retrieved(item: dict[str, Any]) -> Event:
    return _event("conversation.item.retrieved", item=item)


def conversation_item_deleted(item_id: str) -> Event:
    return _event("conversation.item.deleted", item_id=item_id)


def conversation_item_truncated(item_id: str, content_index: int, audio_end_ms: int) -> Event:
    return _event(
        "conversation.item.truncated", item_id=item_id, content_index=content_index, audio_end_ms=audio_end_ms
    )


def transcription_delta(item_id: str, content_index: int, delta: str) -> Event:
    return _event(
        "conversation.item.input_audio_transcription.delta",
        item_id=item_id,
        content_index=content_index,
        delta=delta,
    )


def transcription_completed(item_id: str, content_index: int, transcript: str, seconds: float) -> Event:
    return _event(
        "conversation.item.input_audio_transcription.completed",
        item_id=item_id,
        content_index=content_index,
        transcript=transcript,
        usage={"type": "duration", "seconds": round(seconds, 3)},
    )


def transcription_failed(item_id: str, content_index: int, code: str, message: str) -> Event:
    return _event(
        "conversation.item.input_audio_transcription.failed",
        item_id=item_id,
        content_index=content_index,
        error={"type": "transcription_error", "code": code, "message": message, "param": None},
    )


# -- responses ------------------------------------------------------------------------------------


def rate_limits_updated(rate_limits: list[dict[str, Any]]) -> Event:
    return _event("rate_limits.updated", rate_limits=rate_limits)


def response_created(response: dict[str, Any]) -> Event:
    return _event("response.created", response=response)


def response_done(response: dict[str, Any]) -> Event:
    return _event("response.done", response=response)


def output_item_added(response_id: str, output_index: int, item: dict[str, Any]) -> Event:
    return _event("response.output_item.added", response_id=response_id, output_index=output_index, item=item)


def output_item_done(response_id: str, output_index: int, item: dict[str, Any]) -> Event:
    return _event("response.output_item.done", response_id=response_id, output_index=output_index, item=item)


def _part_event(type_: str, ids_: PartIds, **fields: Any) -> Event:
    return _event(
        type_,
        response_id=ids_.response_id,
        item_id=ids_.item_id,
        output_index=ids_.output_index,
        content_index=ids_.content_index,
        **fields,
    )


class PartIds:
    """The four ids every content-part event carries."""

    __slots__ = ("content_index", "item_id", "output_index", "response_id")

    def __init__(self, response_id: str, item_id: str, output_index: int, content_index: int) -> None:
        self.response_id = response_id
        self.item_id = item_id
        self.output_index = output_index
        self.content_index = content_index


def content_part_added(ids_: PartIds, part: dict[str, Any]) -> Event:
    return _part_event("response.content_part.added", ids_, part=part)


def content_part_done(ids_: PartIds, part: dict[str, Any]) -> Event:
    return _part_event("response.content_part.done", ids_, part=part)


def output_text_delta(ids_: PartIds, delta: str) -> Event:
    return _part_event("response.output_text.delta", ids_, delta=delta)


def output_text_done(ids_: PartIds, text: str) -> Event:
    return _part_event("response.output_text.done", ids_, text=text)


def output_audio_delta(ids_: PartIds, delta: str) -> Event:
    return _part_event("response.output_audio.delta", ids_, delta=delta)


def output_audio_done(ids_: PartIds) -> Event:
    return _part_event("response.output_audio.done", ids_)


def output_audio_transcript_delta(ids_: PartIds, delta: str) -> Event:
    return _part_event("response.output_audio_transcript.delta", ids_, delta=delta)


def output_audio_transcript_done(ids_: PartIds, transcript: str) -> Event:
    return _part_event("response.output_audio_transcript.done", ids_, transcript=transcript)


def function_call_arguments_delta(
    response_id: str, item_id: str, output_index: int, call_id: str, delta: str
) -> Event:
    return _event(
        "response.function_call_arguments.delta",
        response_id=response_id,
        item_id=item_id,
        output_index=output_index,
        call_id=call_id,
        delta=delta,
    )


def function_call_arguments_done(
    response_id: str, item_id: str, output_index: int, call_id: str, name: str, arguments: str
) -> Event:
    return _event(
        "response.function_call_arguments.done",
        response_id=response_id,
        item_id=item_id,
        output_index=output_index,
        call_id=call_id,
        name=name,
        arguments=arguments,
    )
