"""One response: the language model's stream turned into output items, speech and events.

A response runs as its own task. However it ends (completed, cut by ``max_output_tokens``,
cancelled by the client or a barge-in, failed in an engine) the open items are finished and
``response.done`` is sent with the matching status; function calls of a response that did not
complete are left ``incomplete`` and never announced as calls to make.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from parley import ids
from parley.audio.pcm import AudioFormat
from parley.engines.base import (
    ChatRequest,
    EngineError,
    Finish,
    LanguageModel,
    TextDelta,
    TextToSpeech,
    ToolCallDelta,
    Usage,
)
from parley.protocol import server_events as ev
from parley.protocol.errors import ProtocolError
from parley.realtime.context import Message, build_messages, estimate_tokens
from parley.realtime.conversation import Conversation, Item
from parley.realtime.response_output import Emit, MessageWriter, OutputTarget
from parley.realtime.response_tools import ResponseTools
from parley.realtime.tool_calls import CallChecker, CallRejected, PendingCall, collect, required_tool
from parley.realtime.toolbox import McpRunner, Toolbox, function_specs

log = logging.getLogger("parley.response")

CancelReason = Literal["turn_detected", "client_cancelled"]
AUDIO_TOKENS_PER_SECOND_IN = 10
AUDIO_TOKENS_PER_SECOND_OUT = 20
MAX_TOOL_STEPS = 8
"""Language-model requests one response may make while MCP calls feed it results."""


@dataclass
class ResponseParams:
    """Everything a response needs, resolved from the session and ``response.create``."""

    instructions: str
    output_modalities: list[str]
    voice: str
    speed: float
    output_format: AudioFormat
    tools: list[dict[str, Any]]
    tool_choice: Any
    max_output_tokens: int | None
    model: str
    in_conversation: bool = True
    metadata: dict[str, str] | None = None
    input: list[Item] | None = None
    """A private context instead of the conversation (``response.input``)."""
    parallel_tool_calls: bool | None = None
    temperature: float | None = None
    """Sampling temperature (set by the beta dialect); None leaves it to the language model."""

    @property
    def audio(self) -> bool:
        return self.output_modalities == ["audio"]

    def wire_max_output_tokens(self) -> int | str:
        return self.max_output_tokens if self.max_output_tokens is not None else "inf"


@dataclass
class ResponseTimings:
    created: float = field(default_factory=time.perf_counter)
    llm_first_token: float | None = None
    first_audio: float | None = None


def _tool_choice(choice: Any) -> str:
    """``tool_choice`` as engines take it: ``auto`` / ``none`` / ``required`` or the one tool's name."""
    return required_tool(choice) or ("auto" if isinstance(choice, dict) else str(choice))


class Response:
    def __init__(
        self,
        params: ResponseParams,
        *,
        llm: LanguageModel,
        tts: TextToSpeech,
        conversation: Conversation,
        context: Callable[[list[Item], ResponseParams], Awaitable[list[Message]]],
        emit: Emit,
        input_audio_seconds: Callable[[list[Item]], float],
        tools: Callable[[ResponseParams], Awaitable[Toolbox]] | None = None,
        run_mcp: McpRunner | None = None,
        validate_arguments: bool = True,
    ) -> None:
        self.id = ids.response_id()
        self.params = params
        self.llm = llm
        self.tts = tts
        self.conversation = conversation
        self._context = context
        self._emit = emit
        self._input_audio_seconds = input_audio_seconds
        self.status = "in_progress"
        self.status_details: dict[str, Any] | None = None
        self.output: list[Item] = []
        self.cancel_reason: CancelReason | None = None
        self.task: asyncio.Task[None] | None = None
        self.timings = ResponseTimings()
        self._usage: Usage | None = None
        self.usage: dict[str, Any] | None = None
        """The wire ``usage``, set once the response is done."""
        self._tools = tools
        self._toolbox: Toolbox | None = None
        self._validate_arguments = validate_arguments
        self._items = params.input if params.input is not None else conversation.items()
        """The context: the conversation as it was when the response was created."""
        self._running = False
        self._messages: list[Message] = []
        self._message: MessageWriter | None = None
        """The assistant message being written; a response may write one before each tool step."""
        self._audio_ms = 0.0
        """Audio of the finished messages."""
        self._finish_reason: str | None = None
        self._output_chars = 0
        self.target = OutputTarget(
            self.id, self.output, conversation if params.in_conversation else None, emit
        )
        self.tools = ResponseTools(self.target, run_mcp)

    @property
    def done(self) -> bool:
        return self.status != "in_progress"

    def wire(self) -> dict[str, Any]:
        p = self.params
        return {
            "object": "realtime.response",
            "id": self.id,
            "status": self.status,
            "status_details": self.status_details,
            "output": [item.wire() for item in self.output],
            "conversation_id": self.conversation.id if p.in_conversation else None,
            "output_modalities": p.output_modalities,
            "max_output_tokens": p.wire_max_output_tokens(),
            "audio": {"output": {"format": p.output_format.to_wire(), "voice": p.voice}},
            "usage": self.usage,
            "metadata": p.metadata,
        }

    async def start(self, rate_limits: list[dict[str, Any]]) -> asyncio.Task[None]:
        """Send ``response.created`` (before whatever the client sends next is handled), then run."""
        await self._emit(ev.response_created(self.wire()))
        await self._emit(ev.rate_limits_updated(rate_limits))
        self.task = asyncio.create_task(self._run(), name=f"response {self.id}")
        return self.task

    def cancel(self, reason: CancelReason) -> None:
        if self.done or self.cancel_reason is not None:
            return
        self.cancel_reason = reason
        if self._running and self.task is not None:
            self.task.cancel()
        # else the task has not begun: cancelling it now would skip ``_run`` (and response.done);
        # it sees the reason as it starts.

    async def _run(self) -> None:
        self._running = True
        if self.cancel_reason is not None:
            await self._finish("cancelled", None)
            return
        error: ProtocolError | None = None
        try:
            await self._generate()
            status = "incomplete" if self._finish_reason in ("length", "content_filter") else "completed"
        except asyncio.CancelledError:
            status = "cancelled"
            if self.cancel_reason is None:  # the session itself is going away
                self.cancel_reason = "client_cancelled"
        except CallRejected as exc:
            log.warning("response %s failed: %s", self.id, exc.message)
            status = "failed"
            error = ProtocolError(exc.code, exc.message, type="server_error")
        except EngineError as exc:
            log.warning("response %s failed in an engine: %s", self.id, exc)
            status = "failed"
            error = ProtocolError(exc.code, str(exc), type="server_error")
        except Exception as exc:
            log.exception("response %s failed", self.id)
            status = "failed"
            error = ProtocolError("server_error", f"The response failed: {exc}", type="server_error")
        await self._finish(status, error)

    async def _generate(self) -> None:
        p = self.params
        self._messages = await self._context(self._items, p)
        toolbox = await self._tools(p) if self._tools is not None else Toolbox(function_specs(p.tools))
        self._toolbox = toolbox
        checker = CallChecker(
            self.llm,
            toolbox,
            self._request(self._messages, toolbox, "auto"),
            validate_arguments=self._validate_arguments,
            on_usage=self._add_usage,
        )
        if p.in_conversation:
            await self.tools.run_approved(self._items, toolbox)
        choice = toolbox.resolve_choice(p.tool_choice)
        for _ in range(MAX_TOOL_STEPS):
            messages = [*self._messages, *build_messages("", self.output)]
            calls = await self._stream_step(self._request(messages, toolbox, choice), toolbox)
            live = [c for c in calls if c.call_id in self.tools.live]
            pending = [c for c in calls if c.call_id not in self.tools.live]
            checked = await checker.check(pending, messages, "auto" if live else choice)
            if not await self.tools.make(checked, toolbox) or live:
                return
            choice = "auto"  # with the tools' results the model may answer in words

    def _request(self, messages: list[Message], toolbox: Toolbox, choice: Any) -> ChatRequest:
        p = self.params
        return ChatRequest(
            messages=messages,
            tools=toolbox.for_model(),
            tool_choice=_tool_choice(choice),
            max_output_tokens=p.max_output_tokens,
            model=None,  # the engine's configured model (PARLEY_LLM_MODEL), not the realtime name
            parallel_tool_calls=p.parallel_tool_calls,
            temperature=p.temperature,
        )

    async def _stream_step(self, request: ChatRequest, toolbox: Toolbox) -> list[PendingCall]:
        """One language-model request: text is spoken as it comes, calls are collected."""
        calls = self.tools.writing = {}
        async for event in self.llm.stream(request):
            if self.timings.llm_first_token is None and isinstance(event, TextDelta | ToolCallDelta):
                self.timings.llm_first_token = time.perf_counter()
            if isinstance(event, TextDelta):
                if calls:
                    log.warning("response %s: text after a tool call is dropped", self.id)
                else:
                    await self._on_text(event.text)
            elif isinstance(event, ToolCallDelta):
                if request.tool_choice == "none":
                    log.warning("response %s: a tool call although tool_choice is 'none'", self.id)
                    continue
                await self._end_message()  # output items stream one after another
                self._output_chars += len(event.arguments)
                call, _ = collect(calls, event)
                spec = toolbox.get(call.name)
                if not self._validate_arguments and (spec is None or not spec.is_mcp):
                    await self.tools.stream_live(call, event)
            elif isinstance(event, Usage):
                self._add_usage(event)
            elif isinstance(event, Finish):
                self._finish_reason = event.reason
        if self._message is not None:
            await self._message.finish_speaking()
        return [calls[i] for i in sorted(calls)]

    async def _on_text(self, text: str) -> None:
        if not text:
            return
        self._output_chars += len(text)
        if self._message is None:
            p = self.params
            self._message = MessageWriter(
                self.target,
                audio=p.audio,
                tts=self.tts,
                voice=p.voice,
                speed=p.speed,
                audio_format=p.output_format,
            )
            self._message.on_first_audio = self._mark_first_audio
            await self._message.start()
        await self._message.push(text)

    async def _end_message(self) -> None:
        if self._message is None:
            return
        message, self._message = self._message, None
        await message.finish_speaking()
        await message.done("completed")
        self._audio_ms += message.audio_ms

    def _mark_first_audio(self) -> None:
        self.timings.first_audio = time.perf_counter()

    def _add_usage(self, usage: Usage) -> None:
        before = self._usage or Usage(0, 0)
        self._usage = Usage(
            before.input_tokens + usage.input_tokens, before.output_tokens + usage.output_tokens
        )

    async def _finish(self, status: str, error: ProtocolError | None) -> None:
        self.status = status
        if status == "cancelled":
            self.status_details = {"type": "cancelled", "reason": self.cancel_reason}
        elif status == "incomplete":
            reason = "max_output_tokens" if self._finish_reason == "length" else "content_filter"
            self.status_details = {"type": "incomplete", "reason": reason}
        elif status == "failed" and error is not None:
            self.status_details = {
                "type": "failed",
                "error": {"type": error.type, "code": error.code, "message": error.message},
            }
        if self._message is not None:
            await self._message.done("completed" if status == "completed" else "incomplete")
            self._audio_ms += self._message.audio_ms
            self._message = None
        await self.tools.finish(status, self._toolbox)
        self.usage = self._usage_wire()  # after the items finished: it counts the audio they hold
        if error is not None:
            await self._emit(ev.error(error))
        await self._emit(ev.response_done(self.wire()))

    def _usage_wire(self) -> dict[str, Any]:
        audio_in = int(self._input_audio_seconds(self._items) * AUDIO_TOKENS_PER_SECOND_IN)
        audio_out = int(self._audio_ms / 1000 * AUDIO_TOKENS_PER_SECOND_OUT)
        if self._usage is not None:
            text_in, text_out = self._usage.input_tokens, self._usage.output_tokens
        else:
            text_in = estimate_tokens(self._messages)
            text_out = (self._output_chars + 3) // 4
        input_tokens = text_in + audio_in
        output_tokens = text_out + audio_out
        return {
            "total_tokens": input_tokens + output_tokens,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "input_token_details": {
                "text_tokens": text_in,
                "audio_tokens": audio_in,
                "image_tokens": 0,
                "cached_tokens": 0,
                "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
            },
            "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out},
        }
