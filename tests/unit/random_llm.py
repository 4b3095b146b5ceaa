"""The fake language model of the interruption tests: it answers each request with the next scripted
random :class:`Reply` (text, one or two tool calls, text then a call, a failure, a reply cut by the
token limit), pausing a number of event-loop turns between its events, and records which calls of
the conversation were completed when it was asked."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from parley.engines.base import (
    ChatRequest,
    EngineError,
    Finish,
    LLMEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
)

KINDS = ("text", "tool", "two_tools", "text_tool", "fail", "length", "fail_after_tool", "unknown_tool")


@dataclass(frozen=True)
class Reply:
    """One scripted answer: its shape, the loop turns to pause before each event (cycled), and whether
    the model names its calls (else the server makes the call ids up)."""

    kind: str
    pauses: tuple[int, ...] = (0,)
    named_calls: bool = True


class _Fail:
    """Stands in the event list where the model's stream breaks."""


FAIL = _Fail()


@dataclass
class Request:
    request: ChatRequest
    call_status: dict[str, str]
    """The status of every function call in the conversation when the model was asked."""


@dataclass
class RandomLLM:
    """Answers each request with the next scripted :class:`Reply` (cycling through them)."""

    replies: list[Reply]
    name: str = "random-llm"
    requests: list[Request] = field(default_factory=list)
    forced: Reply | None = None
    session: Any = None
    _count: int = 0
    _calls: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def _call(self, reply: Reply, index: int, name: str, arguments: str) -> list[LLMEvent]:
        call_id = f"call_{next(self._calls)}" if reply.named_calls else None
        half = len(arguments) // 2
        return [
            ToolCallDelta(index, call_id=call_id, name=name, arguments=arguments[:half]),
            ToolCallDelta(index, arguments=arguments[half:]),
        ]

    def _events(self, reply: Reply) -> list[LLMEvent | _Fail]:
        weather = '{"city": "Paris"}'
        if reply.kind == "text":
            return [TextDelta("Sure thing. "), TextDelta("It is done."), Usage(12, 6), Finish("stop")]
        if reply.kind == "tool":
            return [*self._call(reply, 0, "get_weather", weather), Finish("tool_calls")]
        if reply.kind == "two_tools":
            first = self._call(reply, 0, "get_weather", weather)
            second = self._call(reply, 1, "get_time", '{"tz": "CET"}')
            return [first[0], second[0], first[1], second[1], Finish("tool_calls")]
        if reply.kind == "text_tool":
            return [
                TextDelta("Let me check. "),
                *self._call(reply, 0, "get_weather", weather),
                Finish("tool_calls"),
            ]
        if reply.kind == "fail":
            return [TextDelta("I was about to"), FAIL]
        if reply.kind == "unknown_tool":
            return [*self._call(reply, 0, "get_stock", '{"symbol": "ACME"}'), Finish("tool_calls")]
        if reply.kind == "fail_after_tool":
            return [*self._call(reply, 0, "get_weather", weather), FAIL]
        assert reply.kind == "length"
        return [*self._call(reply, 0, "get_weather", '{"city": "Par'), Finish("length")]

    async def stream(self, request: ChatRequest) -> AsyncIterator[LLMEvent]:
        status = {
            str(item.data["call_id"]): str(item.data["status"])
            for item in self.session.conversation.items()
            if item.type == "function_call"
        }
        self.requests.append(Request(request, status))
        if self.forced is not None:
            reply = self.forced
        else:
            reply = self.replies[self._count % len(self.replies)]
            self._count += 1
        for index, item in enumerate(self._events(reply)):
            for _ in range(reply.pauses[index % len(reply.pauses)]):
                await asyncio.sleep(0)
            if isinstance(item, _Fail):
                raise EngineError("scripted language model failure")
            yield item

    async def warm_up(self) -> None:
        pass
