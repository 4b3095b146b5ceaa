"""Tool calling for the in-process llama.cpp engine, with no model at hand: pure text and JSON.

- :func:`template_messages` turns OpenAI chat messages into what chat templates expect (call arguments
  as objects, no ``None`` content). For a template that knows no tools, calls and results are written
  as Hermes-style ``<tool_call>``/``<tool_response>`` text and :func:`tools_system_prompt` describes
  the tools in the system message.
- :func:`call_schema` is the JSON schema of the one call ``tool_choice`` demands; the engine turns it
  into a llama.cpp grammar, so the model cannot write anything else.
- :class:`ReplyParser` reads a reply as it streams and finds the calls a model writes on its own:
  ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (Hermes, Qwen) anywhere, or a bare
  ``{"name": ..., "parameters": {...}}`` object (or a list of them) as the whole reply (Llama 3.1).
  Text that could be the start of a call is held back until it is known not to be one, so a call is
  never spoken. Other formats (Mistral's ``[TOOL_CALLS]``, Functionary) are not recognised.
- :func:`drop_oldest_turn` shortens a conversation that does not fit the context.
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import Collection, Sequence
from typing import Any

from parley.engines.base import EngineError, FunctionTool, LLMEvent, TextDelta, ToolCallDelta, ToolChoice

log = logging.getLogger("parley.engines.llm.llama_cpp")

Message = dict[str, Any]

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def tool_spec(tool: FunctionTool) -> dict[str, Any]:
    """The tool as chat templates and the OpenAI API know it."""
    parameters = tool.parameters or {"type": "object", "properties": {}}
    function = {"name": tool.name, "description": tool.description, "parameters": parameters}
    return {"type": "function", "function": function}


def call_schema(tools: Sequence[FunctionTool], choice: ToolChoice) -> dict[str, Any]:
    """The JSON schema of a call ``tool_choice`` allows: ``{"name": <const>, "arguments": <parameters>}``
    for the named tool, or any of them for ``required``."""
    chosen = list(tools) if choice == "required" else [tool for tool in tools if tool.name == choice]
    if not chosen:
        raise EngineError(f"tool_choice names the function {choice!r}, which is not among the tools")
    alternatives = [
        {
            "type": "object",
            "properties": {
                "name": {"const": tool.name},
                "arguments": tool_spec(tool)["function"]["parameters"],
            },
            "required": ["name", "arguments"],
        }
        for tool in chosen
    ]
    return alternatives[0] if len(alternatives) == 1 else {"anyOf": alternatives}


def tools_system_prompt(tools: Sequence[FunctionTool]) -> str:
    signatures = "\n".join(json.dumps(tool_spec(tool)["function"], ensure_ascii=False) for tool in tools)
    return (
        "# Tools\n\nYou may call functions to help with the user's request. Their signatures:\n"
        f"<tools>\n{signatures}\n</tools>\n\n"
        "To call a function, reply with its name and arguments as a JSON object in tags, like this:\n"
        f'{CALL_OPEN}{{"name": "<function name>", "arguments": {{<arguments>}}}}{CALL_CLOSE}'
    )


# ------------------------------------------------------------------------------------ messages


def template_messages(
    messages: Sequence[Message], *, native_tools: bool, tools_prompt: str | None = None
) -> list[Message]:
    """``messages`` as a chat template renders them. With ``native_tools`` the template gets assistant
    ``tool_calls`` (arguments parsed to objects) and ``tool`` messages; otherwise they become text."""
    names: dict[str, str] = {}
    out: list[Message] = []
    for message in messages:
        role, content = str(message.get("role")), _content(message.get("content"))
        calls = [_call_for_template(call) for call in message.get("tool_calls") or ()]
        names.update((call["id"], call["function"]["name"]) for call in calls)
        if role == "assistant" and calls and native_tools:
            out.append({"role": role, "content": content, "tool_calls": calls})
        elif role == "assistant" and calls:
            written = "".join(_written_call(call["function"]) for call in calls)
            out.append({"role": role, "content": f"{content}\n{written}" if content else written})
        elif role == "tool" and native_tools:
            call_id = str(message.get("tool_call_id", ""))
            out.append(
                {"role": role, "tool_call_id": call_id, "name": names.get(call_id, ""), "content": content}
            )
        elif role == "tool":
            out.append({"role": "user", "content": f"<tool_response>\n{content}\n</tool_response>"})
        else:
            out.append({"role": role, "content": content})
    if tools_prompt:
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{tools_prompt}"}
        else:
            out.insert(0, {"role": "system", "content": tools_prompt})
    return out if native_tools else _merge_same_roles(out)


def _content(content: Any) -> str:
    if isinstance(content, list):  # content parts
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return "" if content is None else str(content)


def _call_for_template(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    arguments: Any = function.get("arguments") or "{}"
    with contextlib.suppress(json.JSONDecodeError):  # else templates write the string as it is
        arguments = json.loads(arguments) if isinstance(arguments, str) else arguments
    name = str(function.get("name", ""))
    return {
        "id": str(call.get("id", "")),
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


def _written_call(function: dict[str, Any]) -> str:
    return f"{CALL_OPEN}{json.dumps(function, ensure_ascii=False)}{CALL_CLOSE}"


def _merge_same_roles(messages: list[Message]) -> list[Message]:
    """Consecutive user (or assistant) messages as one: strict templates demand alternating roles."""
    merged: list[Message] = []
    for message in messages:
        if merged and message["role"] == merged[-1]["role"] != "system":
            merged[-1] = {**merged[-1], "content": f"{merged[-1]['content']}\n\n{message['content']}"}
        else:
            merged.append(message)
    return merged


def drop_oldest_turn(messages: Sequence[Message]) -> list[Message] | None:
    """``messages`` without the oldest one after the leading system messages (with the results of the
    calls it made); None when only those and the last user turn are left."""
    first = next((i for i, m in enumerate(messages) if m.get("role") != "system"), len(messages))
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    keep_from = users[-1] if users else len(messages) - 1
    if first >= keep_from:
        return None
    end = first + 1
    while end < keep_from and messages[end].get("role") == "tool":
        end += 1
    return [*messages[:first], *messages[end:]]


# ------------------------------------------------------------------------------------ reading calls


def parse_calls(value: Any, known: Collection[str] | None = None) -> list[tuple[str, str]] | None:
    """``(name, arguments JSON)`` of each call in a decoded call object or list of them, or None if it
    is not one (or names a function not in ``known``, when given)."""
    calls = []
    for item in value if isinstance(value, list) else [value]:
        if not isinstance(item, dict):
            return None
        function = item["function"] if isinstance(item.get("function"), dict) else item
        name = function.get("name")
        arguments = function.get("arguments", function.get("parameters", {}))
        if not isinstance(name, str) or (known is not None and name not in known):
            return None
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments, strict=False)
            except json.JSONDecodeError:
                return None
        if not isinstance(arguments, dict):
            return None
        calls.append((name, json.dumps(arguments, ensure_ascii=False)))
    return calls or None


def decode_json(text: str) -> tuple[Any, int] | None:
    """The JSON value ``text`` starts with (after whitespace) and where it ends, or None. Raw control
    characters in strings (a newline a model wrote in an argument) are accepted."""
    stripped = text.lstrip()
    try:
        value, end = json.JSONDecoder(strict=False).raw_decode(stripped)
    except json.JSONDecodeError:
        return None
    return value, end + len(text) - len(stripped)


class ReplyParser:
    """Splits a streamed reply into spoken text and tool calls (see the module docstring).

    ``feed`` each piece of text, then ``finish``. ``stopped`` turns true when generation should end:
    a stop string was written, or the one call allowed without ``parallel`` calls is complete.
    Leading whitespace is dropped, and text after a call is not spoken.
    """

    def __init__(
        self, tools: Collection[str] = (), *, parallel: bool = True, stop: Sequence[str] = ()
    ) -> None:
        self.tools = frozenset(tools)
        self.parallel = parallel
        self.stop = [s for s in stop if s]
        self.calls = 0
        self.stopped = False
        self._markers = ([CALL_OPEN] if self.tools else []) + self.stop
        self._buffer = ""
        self._mode = "start"  # start | text | call | bare | after_call

    def feed(self, text: str) -> list[LLMEvent]:
        self._buffer += text
        return self._drain(final=False)

    def finish(self) -> list[LLMEvent]:
        return self._drain(final=True)

    def _drain(self, *, final: bool) -> list[LLMEvent]:
        events: list[LLMEvent] = []
        while not self.stopped and self._step(events, final):
            pass
        return events

    def _step(self, events: list[LLMEvent], final: bool) -> bool:
        """Consume what the current mode can; False when it needs more text."""
        if self._mode in ("start", "after_call"):
            self._buffer = self._buffer.lstrip()
            if not self._buffer:
                return False
            self._mode = "bare" if self.tools and self._buffer[0] in "{[" else "text"
            return True
        if self._mode == "bare":
            return self._step_bare(events, final)
        if self._mode == "call":
            return self._step_call(events, final)
        return self._step_text(events, final)

    def _step_bare(self, events: list[LLMEvent], final: bool) -> bool:
        decoded = decode_json(self._buffer)
        if decoded is None and not final and _may_open_call(self._buffer):
            return False
        calls = parse_calls(decoded[0], self.tools) if decoded else None
        if decoded is None or calls is None:
            self._mode = "text"
        else:
            self._buffer = self._buffer[decoded[1] :].lstrip(";")
            self._mode = "after_call"
            self._emit_calls(calls, events)
        return True

    def _step_call(self, events: list[LLMEvent], final: bool) -> bool:
        end = self._buffer.find(CALL_CLOSE)
        if end < 0 and not final:
            return False
        body = self._buffer if end < 0 else self._buffer[:end]
        self._buffer = "" if end < 0 else self._buffer[end + len(CALL_CLOSE) :]
        self._mode = "after_call"
        decoded = decode_json(body)
        calls = parse_calls(decoded[0]) if decoded and not body[decoded[1] :].strip() else None
        if calls is None:
            log.warning("llama-cpp: ignoring a malformed tool call: %.200r", body)
        else:
            self._emit_calls(calls, events)
        return True

    def _step_text(self, events: list[LLMEvent], final: bool) -> bool:
        found = [(at, marker) for marker in self._markers if (at := self._buffer.find(marker)) >= 0]
        if found:
            at, marker = min(found)
            self._text(self._buffer[:at], events)
            self._buffer = self._buffer[at + len(marker) :]
            if marker == CALL_OPEN:
                self._mode = "call"
            else:
                self.stopped = True
            return True
        held = 0 if final else _partial_marker(self._buffer, self._markers)
        self._text(self._buffer[: len(self._buffer) - held], events)
        self._buffer = self._buffer[len(self._buffer) - held :]
        return False

    def _text(self, text: str, events: list[LLMEvent]) -> None:
        if text and not self.calls:
            events.append(TextDelta(text))

    def _emit_calls(self, calls: list[tuple[str, str]], events: list[LLMEvent]) -> None:
        for name, arguments in calls if self.parallel else calls[:1]:
            events.append(ToolCallDelta(self.calls, arguments, call_id=new_call_id(), name=name))
            self.calls += 1
        self.stopped = not self.parallel


def _may_open_call(text: str) -> bool:
    """Whether text starting with ``{`` or ``[`` can still become a call object or a list of them."""
    rest = text[1:].lstrip()
    if not rest:
        return True
    if text[0] == "[":
        return rest[0] == "{" and _may_open_call(rest)
    return rest[0] == '"'


def _partial_marker(text: str, markers: Sequence[str]) -> int:
    """The length of the longest end of ``text`` that begins one of ``markers``."""
    for size in range(min(len(text), max((len(m) for m in markers), default=1) - 1), 0, -1):
        if any(marker.startswith(text[-size:]) for marker in markers):
            return size
    return 0
