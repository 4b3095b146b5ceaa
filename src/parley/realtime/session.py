"""The realtime session engine: one per connection, transport- and dialect-agnostic.

It takes decoded client events (GA dialect), owns the session config, the conversation, the input
audio buffer and the responses, and sends GA server events (plain dicts) to ``emit``. It can be
driven entirely in a unit test with fake engines and a list as the sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from base64 import b64encode
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Literal

from openai.types.realtime import (
    ConversationItemCreateEvent,
    ConversationItemDeleteEvent,
    ConversationItemRetrieveEvent,
    ConversationItemTruncateEvent,
    InputAudioBufferClearEvent,
    InputAudioBufferCommitEvent,
    OutputAudioBufferClearEvent,
    ResponseCancelEvent,
    SessionUpdateEvent,
)
from pydantic import BaseModel

from parley import ids
from parley.config import Settings
from parley.engines.base import LanguageModel
from parley.engines.llm.fixed import FixedReply
from parley.engines.registry import Engines
from parley.protocol import server_events as ev
from parley.protocol.client_events import (
    ParsedAppend,
    ParsedResponseCreate,
    decode_json,
    event_id_of,
    parse_client_event,
)
from parley.protocol.errors import ProtocolError
from parley.protocol.session_config import SessionConfig, new_config
from parley.realtime.audio_rate import AudioRate
from parley.realtime.audio_spill import AudioSpill
from parley.realtime.context import Message, build_messages
from parley.realtime.conversation import Conversation, Item
from parley.realtime.input_audio import InputAudio
from parley.realtime.items import item_from_client, truncate_item
from parley.realtime.mcp_tools import McpServers, check_mcp_urls
from parley.realtime.playback import Playback
from parley.realtime.rate_limits import RateLimits
from parley.realtime.response import Response, ResponseParams
from parley.realtime.response_params import resolve_params
from parley.realtime.toolbox import Toolbox, function_specs

log = logging.getLogger("parley.session")

Emit = Callable[[ev.Event], Awaitable[None]]
SessionType = Literal["realtime", "transcription"]

_TRANSCRIPTION_ONLY = (
    SessionUpdateEvent,
    InputAudioBufferCommitEvent,
    InputAudioBufferClearEvent,
    ConversationItemRetrieveEvent,
    ConversationItemDeleteEvent,
)
"""Client events a transcription session takes (and ``input_audio_buffer.append``)."""


def apply_session_update(
    config: SessionConfig, event: SessionUpdateEvent, settings: Settings, *, audio_produced: bool
) -> None:
    """Merge a ``session.update`` into ``config`` (MCP server URLs checked against
    ``PARLEY_MCP_ALLOWED_URLS``); raises ProtocolError, leaving ``config`` as it was."""
    tools = getattr(event.session, "tools", None)
    if tools is not None:
        check_mcp_urls([t.model_dump(mode="json") for t in tools], settings.mcp_allowed_urls)
    config.apply_update(event.session, audio_produced=audio_produced)


STORED_TEMPERATURE = "temperature"
"""Beside a stored GA session (a beta client secret's): the sampling temperature GA has no field for."""

Direction = Literal["client", "server"]
Observer = Callable[[Direction, dict[str, Any]], None]


def _seconds_in(items: list[Item]) -> float:
    """Seconds of user audio in ``items`` (input audio usage)."""
    return sum(i.audio_ms(k) for i in items if i.role == "user" for k in i.audio) / 1000


class RealtimeSession:
    def __init__(
        self,
        *,
        settings: Settings,
        engines: Engines,
        emit: Emit,
        model: str,
        playback_rate: int | None = None,
        on_expired: Callable[[], Awaitable[None]] | None = None,
        session_type: SessionType = "realtime",
        max_minutes: float | None = None,
    ) -> None:
        self.settings = settings
        self.max_minutes = max_minutes if max_minutes is not None else settings.session_max_minutes
        """How long the session may last (the API key's limit, else ``PARLEY_SESSION_MAX_MINUTES``)."""
        self.engines = engines
        self._emit = emit
        self.id = ids.session_id()
        self.config = new_config(settings, session_type, session_id=self.id, model=model)
        self.conversation = Conversation(
            AudioSpill(
                int(settings.session_audio_memory_mb * 1024 * 1024),
                settings.data_dir / "spill" if settings.data_dir is not None else None,
            )
        )
        self.playback = Playback(self, playback_rate) if playback_rate else None
        """On WebRTC and SIP the server plays the audio out itself, at ``playback_rate``: response
        audio goes to its buffer instead of ``response.output_audio.delta`` events."""
        self.responses: dict[str, Response] = {}
        """Responses still running, by id (the default-conversation one and out-of-band ones)."""
        self.active: Response | None = None
        """The running response of the default conversation; at most one."""
        self.rate_limits = RateLimits(settings.requests_per_minute, settings.tokens_per_minute)
        self.audio = InputAudio(self)
        self.audio_rate = AudioRate(settings.max_audio_speed, settings.audio_burst_s * 1000)
        self.mcp = McpServers(
            conversation=self.conversation, emit=self.emit, timeout_s=settings.mcp_timeout_s
        )
        self._on_expired = on_expired
        self._expiry: asyncio.TimerHandle | None = None
        self._closed = False
        self.observers: list[Observer] = []
        """Called with every event the session receives (``"client"``, after decoding) and sends
        (``"server"``, in GA shape): metrics and the audit trail watch sessions this way. Cheap and
        synchronous; an observer that raises is logged and skipped."""
        self.background: set[asyncio.Task[None]] = set()
        """Tasks the session started on its own; referenced here so they are not collected."""

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self, initial: dict[str, Any] | None = None) -> None:
        """Send ``session.created``; with ``initial`` (the session a client secret carries) the
        session starts with that configuration applied."""
        if initial is not None:
            initial = dict(initial)
            temperature = initial.pop(STORED_TEMPERATURE, None)
            event = parse_client_event({"type": "session.update", "session": initial})
            assert isinstance(event, SessionUpdateEvent)
            self._apply_session(event)
            if isinstance(temperature, int | float):
                self.config.temperature = float(temperature)
        await self.emit(ev.session_created(self.config.wire()))
        if initial is not None and self.config.type == "realtime":
            await self.mcp.configure(self.config.tools)
        loop = asyncio.get_running_loop()
        self._expiry = loop.call_later(self.max_minutes * 60, self._expire)

    def _expire(self) -> None:
        async def expire() -> None:
            minutes = f"{round(self.max_minutes, 2):g}"
            await self.emit(
                ev.error(
                    ProtocolError(
                        "session_expired", f"Your session hit the maximum duration of {minutes} minutes."
                    )
                )
            )
            await self.close()
            if self._on_expired is not None:
                await self._on_expired()

        self.spawn(expire())

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def close(self) -> None:
        """Stop everything the session runs (responses, recognition); idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._expiry is not None:
            self._expiry.cancel()
        current = asyncio.current_task()
        pending = [task for task in self.background if task is not current]
        for task in pending:  # e.g. a response due after a turn, not yet created
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for response in list(self.responses.values()):
            response.cancel("client_cancelled")
        tasks = [r.task for r in self.responses.values() if r.task is not None]
        await self.audio.close()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.mcp.close()
        if self.conversation.spill is not None:
            self.conversation.spill.close()

    async def emit(self, event: ev.Event) -> None:
        self.observe("server", event)
        if self.playback is not None and self.playback.take(event):
            return
        await self._emit(event)
        if self.playback is not None:
            self.playback.sent(event)

    def observe(self, direction: Direction, event: dict[str, Any]) -> None:
        for observer in self.observers:
            try:
                observer(direction, event)
            except Exception:
                log.exception("session %s: an observer failed on %s", self.id, event.get("type"))

    # -- client events ----------------------------------------------------------------------------

    async def handle_text(self, text: str | bytes) -> None:
        """One client frame: decode, validate, dispatch. Errors become ``error`` events."""
        data: dict[str, Any] | None = None
        try:
            data = decode_json(text)
            self.observe("client", data)
            await self.dispatch(parse_client_event(data))
        except ProtocolError as exc:
            await self.emit(ev.error(exc.with_event_id(event_id_of(data))))
        except Exception as exc:
            log.exception("session %s: unexpected error handling a client event", self.id)
            error = ProtocolError(
                "server_error", f"The server failed to handle the event: {exc}", type="server_error"
            )
            await self.emit(ev.error(error.with_event_id(event_id_of(data))))

    async def dispatch(self, event: BaseModel | ParsedAppend | ParsedResponseCreate) -> None:
        try:
            await self._dispatch(event)
        except ProtocolError as exc:
            raise exc.with_event_id(getattr(event, "event_id", None)) from None

    async def _dispatch(self, event: BaseModel | ParsedAppend | ParsedResponseCreate) -> None:
        accepted = (ParsedAppend, *_TRANSCRIPTION_ONLY)
        if self.config.type == "transcription" and not isinstance(event, accepted):
            kind = getattr(event, "type", "response.create")
            raise ProtocolError(
                "invalid_event",
                f"'{kind}' is not available in a transcription session, which transcribes input audio "
                "and creates no responses; open a realtime session for that.",
            )
        if isinstance(event, ParsedAppend):
            self._admit_audio(len(event.audio))
            await self.audio.append(event.audio)
        elif isinstance(event, ParsedResponseCreate):
            await self.create_response(event)
        elif isinstance(event, SessionUpdateEvent):
            await self._session_update(event)
        elif isinstance(event, InputAudioBufferCommitEvent):
            await self.audio.commit()
        elif isinstance(event, InputAudioBufferClearEvent):
            self.audio.clear()
            await self.emit(ev.input_audio_buffer_cleared())
        elif isinstance(event, ConversationItemCreateEvent):
            await self._item_create(event)
        elif isinstance(event, ConversationItemRetrieveEvent):
            item = self.conversation.get(event.item_id)
            await self.emit(ev.conversation_item_retrieved(item.wire(with_audio=True)))
        elif isinstance(event, ConversationItemDeleteEvent):
            self.conversation.delete(event.item_id)
            await self.emit(ev.conversation_item_deleted(event.item_id))
        elif isinstance(event, ConversationItemTruncateEvent):
            item = self.conversation.get(event.item_id)
            truncate_item(item, event.content_index, event.audio_end_ms)
            await self.emit(ev.conversation_item_truncated(item.id, event.content_index, event.audio_end_ms))
        elif isinstance(event, ResponseCancelEvent):
            await self._response_cancel(event.response_id)
        elif isinstance(event, OutputAudioBufferClearEvent):
            await self._output_audio_buffer_clear()

    def _admit_audio(self, size: int) -> None:
        audio_ms = self.audio.format.duration_ms(size)
        if not self.audio_rate.admit(audio_ms):
            speed = self.settings.max_audio_speed
            raise ProtocolError(
                "input_audio_rate_exceeded",
                f"Input audio is arriving faster than {speed:g}x real time; these {audio_ms:.0f} ms "
                "were dropped. Stream audio as it is spoken (or at most that much faster).",
            )

    def _apply_session(self, event: SessionUpdateEvent) -> None:
        apply_session_update(self.config, event, self.settings, audio_produced=self._audio_produced())
        self.audio.configure()

    async def _session_update(self, event: SessionUpdateEvent) -> None:
        self._apply_session(event)
        await self.emit(ev.session_updated(self.config.wire()))
        if self.config.type == "realtime":
            await self.mcp.configure(self.config.tools)

    def _audio_produced(self) -> bool:
        return any(item.role == "assistant" and item.audio_indices() for item in self.conversation.items())

    async def _item_create(self, event: ConversationItemCreateEvent) -> None:
        item = item_from_client(event.item, self.audio.format)
        if item.type == "mcp_approval_response":
            self._check_approval(item)
        previous = self.conversation.insert(item, event.previous_item_id)
        await self.emit(ev.conversation_item_added(item.wire(), previous))
        await self.emit(ev.conversation_item_done(item.wire(), previous))
        if item.audio:
            self.audio.recognition.transcribe(item)

    def _check_approval(self, answer: Item) -> None:
        request_id = answer.data.get("approval_request_id")
        items = self.conversation.items()
        if not any(i.type == "mcp_approval_request" and i.id == request_id for i in items):
            raise ProtocolError(
                "invalid_value",
                f"No mcp_approval_request with id '{request_id}' in the conversation.",
                param="item.approval_request_id",
            )
        if any(
            i.type == "mcp_approval_response" and i.data.get("approval_request_id") == request_id
            for i in items
        ):
            raise ProtocolError(
                "invalid_value",
                f"The approval request '{request_id}' was already answered.",
                param="item.approval_request_id",
            )

    # -- responses --------------------------------------------------------------------------------

    async def say(self, text: str) -> Response:
        """Speak ``text`` as the assistant's next response (a phone call's greeting), word for word,
        without asking the language model; it stays in the conversation like any reply."""
        return await self.create_response(llm=FixedReply(text))

    async def dtmf(self, digit: str) -> None:
        """A keypad press on a phone call: ``input_audio_buffer.dtmf_event_received``."""
        await self.emit(ev.input_audio_buffer_dtmf_event_received(digit, int(time.time())))

    async def create_response(
        self, event: ParsedResponseCreate | None = None, *, llm: LanguageModel | None = None
    ) -> Response:
        if self._closed:
            raise ProtocolError("session_closed", "The session is closed.")
        params = resolve_params(self.config, event, self.conversation, self.audio.format)
        if params.in_conversation and self.active is not None:
            raise ProtocolError(
                "conversation_already_has_active_response",
                f"Conversation already has an active response in progress: {self.active.id}. "
                "Wait until the response is finished before creating a new one.",
            )
        exhausted = self.rate_limits.exhausted()
        if exhausted is not None:
            limit = self.rate_limits.snapshot()[0 if exhausted == "requests" else 1]
            raise ProtocolError(
                "rate_limit_exceeded",
                f"This session used its {exhausted} budget for the minute (limit {limit['limit']}); "
                f"try again in {limit['reset_seconds']:.1f} s.",
                type="rate_limit_error",
            )
        response = Response(
            params,
            llm=llm or self.engines.llm,
            tts=self.engines.tts,
            conversation=self.conversation,
            context=self._context,
            emit=self.emit,
            input_audio_seconds=_seconds_in,
            tools=self._toolbox,
            run_mcp=self.mcp.run,
            validate_arguments=self.settings.tool_argument_validation,
        )
        self.responses[response.id] = response
        if params.in_conversation:
            self.active = response
        self.audio.response_started(response)
        reserved = params.max_output_tokens or 4096
        task = await response.start(self.rate_limits.start_response(reserved))
        task.add_done_callback(lambda _: self._response_finished(response, reserved))
        return response

    def _response_finished(self, response: Response, reserved: int) -> None:
        self.responses.pop(response.id, None)
        if self.active is response:
            self.active = None
        usage = response.usage or {}
        self.rate_limits.record_tokens(reserved, int(usage.get("total_tokens", 0)))
        if not self._closed:
            self.audio.response_finished(response)

    async def _toolbox(self, params: ResponseParams) -> Toolbox:
        functions = function_specs(params.tools)
        taken = {spec.name for spec in functions}
        return Toolbox([*functions, *await self.mcp.specs(params.tools, taken)])

    async def _context(self, items: list[Item], params: ResponseParams) -> list[Message]:
        await self.audio.recognition.wait_for(items)
        return build_messages(params.instructions, items)

    async def _response_cancel(self, response_id: str | None) -> None:
        response = self.responses.get(response_id) if response_id is not None else self.active
        if response is None or response.done:
            raise ProtocolError(
                "response_cancel_not_active",
                "Cancellation failed: no active response found",
                param="response_id",
            )
        response.cancel("client_cancelled")
        if response.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(response.task)

    async def _output_audio_buffer_clear(self) -> None:
        if self.playback is None:
            raise ProtocolError(
                "invalid_event",
                "output_audio_buffer.clear is only available on WebRTC and SIP connections; on a "
                "WebSocket the client plays the audio and truncates with conversation.item.truncate.",
            )
        await self.playback.clear(self.active)

    async def append_audio(self, audio: bytes) -> None:
        """Input audio from a media track (WebRTC, SIP), in the session's input format: the same
        as an ``input_audio_buffer.append``, observed as one so metrics and the audit trail see it."""
        if self._closed:
            return
        if self.observers:
            self.observe("client", {"type": "input_audio_buffer.append", "audio": b64encode(audio).decode()})
        await self.audio.append(audio)
