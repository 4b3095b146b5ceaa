"""Tool calls as the language model writes them, checked before anything acts on them.

A call's arguments are held until the model's stream ends, then checked: the tool must exist, the
call must obey ``tool_choice``, and the arguments must match the tool's JSON Schema. A call that
breaks a rule is sent back to the model once, with the violation, for a corrected call; a second
violation fails the response (:class:`CallRejected`), so the client never receives arguments that
break the schema. ``PARLEY_TOOL_ARGUMENT_VALIDATION=false`` turns the schema check off.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from parley import ids
from parley.engines.base import ChatRequest, LanguageModel, ToolCallDelta, Usage
from parley.realtime.context import Message
from parley.realtime.toolbox import Toolbox
from parley.tools.arguments import violation

log = logging.getLogger("parley.tools")


@dataclass
class PendingCall:
    """One call the model is writing (or has written) in this step of a response."""

    name: str
    call_id: str
    pieces: list[str] = field(default_factory=list)
    """The arguments as they streamed; replaced by one piece when the call was corrected."""

    @property
    def arguments(self) -> str:
        return "".join(self.pieces)

    def chat_tool_call(self) -> dict[str, Any]:
        return {
            "id": self.call_id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments or "{}"},
        }


class CallRejected(Exception):
    """The model broke a tool rule even after one correction; the response fails with this error."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def required_tool(choice: Any) -> str | None:
    """The one tool ``tool_choice`` names, if it names one."""
    if isinstance(choice, dict):
        name = choice.get("name")
        return str(name) if name else None
    return None


def collect(calls: dict[int, PendingCall], delta: ToolCallDelta) -> tuple[PendingCall, bool]:
    """Add a streamed piece; returns the call and whether this piece began it."""
    call = calls.get(delta.index)
    began = call is None
    if call is None:
        call = PendingCall(name=delta.name or "", call_id=delta.call_id or ids.call_id())
        calls[delta.index] = call
    elif delta.name and not call.name:
        call.name = delta.name
    if delta.arguments:
        call.pieces.append(delta.arguments)
    return call, began


class CallChecker:
    """Checks one step's calls and asks the model once to correct what breaks a rule."""

    def __init__(
        self,
        llm: LanguageModel,
        toolbox: Toolbox,
        template: ChatRequest,
        *,
        validate_arguments: bool,
        on_usage: Callable[[Usage], None],
    ) -> None:
        self.llm = llm
        self.toolbox = toolbox
        self.template = template
        self.validate_arguments = validate_arguments
        self.on_usage = on_usage

    def problem(self, call: PendingCall, choice: Any) -> str | None:
        """What is wrong with ``call``, in words for the model, or None."""
        wanted = required_tool(choice)
        if wanted is not None and call.name != wanted:
            return f"tool_choice requires a call to '{wanted}', not '{call.name}'"
        spec = self.toolbox.get(call.name)
        if spec is None:
            known = ", ".join(self.toolbox.names()) or "none"
            return f"there is no tool named '{call.name}' (the tools are: {known})"
        if not self.validate_arguments:
            return None
        return violation(spec.parameters, call.arguments)

    async def check(
        self, calls: list[PendingCall], messages: list[Message], choice: Any
    ) -> list[PendingCall]:
        """The calls to make, each obeying the rules; raises :class:`CallRejected`."""
        if choice == "none":
            return []
        if self.template.parallel_tool_calls is False and len(calls) > 1:
            log.info("parallel_tool_calls is false: %d calls after the first are dropped", len(calls) - 1)
            calls = calls[:1]
        if not calls and (choice == "required" or required_tool(choice) is not None):
            return [await self._require(messages, choice)]
        checked: list[PendingCall] = []
        for call in calls:
            problem = self.problem(call, choice)
            if problem is None:
                checked.append(call)
                continue
            log.info(
                "tool call %s to %r rejected: %s; asking the model to correct it",
                call.call_id,
                call.name,
                problem,
            )
            corrected = await self._correct(call, problem, messages, choice)
            checked.append(corrected)
        return checked

    async def _correct(
        self, call: PendingCall, problem: str, messages: list[Message], choice: Any
    ) -> PendingCall:
        name = required_tool(choice) or (call.name if self.toolbox.get(call.name) else None)
        again = f"Call {name!r} again" if name else "Call one of the available tools instead"
        note = (
            f"Error: the call was not made because {problem}. {again}, with arguments that match its schema."
        )
        retry = [
            *messages,
            {"role": "assistant", "content": None, "tool_calls": [call.chat_tool_call()]},
            {"role": "tool", "tool_call_id": call.call_id, "content": note},
        ]
        fixed = await self._ask(retry, name or "required")
        second = problem if fixed is None else self.problem(fixed, choice)
        if fixed is None or second is not None:
            raise CallRejected(
                "invalid_tool_arguments",
                f"The model's call to tool '{call.name}' was invalid ({problem}) and still invalid after "
                f"one correction ({second or 'no call was made'}).",
            )
        return replace(fixed, call_id=call.call_id, pieces=[fixed.arguments])

    async def _require(self, messages: list[Message], choice: Any) -> PendingCall:
        wanted = required_tool(choice)
        demand = f"the tool '{wanted}'" if wanted else "one of the tools"
        retry = [*messages, {"role": "system", "content": f"You must call {demand} now."}]
        fixed = await self._ask(retry, wanted or "required")
        problem = "no call was made" if fixed is None else self.problem(fixed, choice)
        if fixed is None or problem is not None:
            raise CallRejected(
                "tool_choice_not_followed",
                f"tool_choice requires a call to {demand}, but the model did not make a valid one "
                f"even when asked again ({problem}).",
            )
        return replace(fixed, pieces=[fixed.arguments])

    async def _ask(self, messages: list[Message], tool_choice: str) -> PendingCall | None:
        """Stream one correction request; its first call, text ignored."""
        request = replace(
            self.template, messages=messages, tool_choice=tool_choice, parallel_tool_calls=False
        )
        calls: dict[int, PendingCall] = {}
        async for event in self.llm.stream(request):
            if isinstance(event, ToolCallDelta):
                collect(calls, event)
            elif isinstance(event, Usage):
                self.on_usage(event)
        return calls[min(calls)] if calls else None
