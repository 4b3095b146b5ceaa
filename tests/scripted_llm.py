"""An in-process OpenAI-compatible chat-completions server that replies from a script.

    async with ScriptedLLM() as llm:
        llm.script(Reply(text="Hello there."), Reply(tool_calls=[("get_weather", '{"city": "Paris"}')]))
        engine = OpenAIChatLLM(llm.base_url)
        ...
        assert llm.requests[0]["messages"][-1]["content"] == "hi"

Each ``POST /v1/chat/completions`` consumes the next scripted :class:`Reply`; with nothing queued the
server answers ``You said: <last user message>``. Streaming replies follow the ``chat.completion.chunk``
SSE wire format (``data: {...}`` events, a usage chunk when ``stream_options.include_usage``, then
``data: [DONE]``), so the official ``openai`` client parses them like OpenAI's own.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.local_app import LocalApp

DEFAULT_MODEL = "scripted-model"


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: str = "{}"
    """The arguments as the model would write them: a JSON string."""
    call_id: str | None = None
    """Generated (``call_...``) when not given."""


ToolCallSpec = ToolCall | tuple[str, str] | tuple[str, str, str]
"""A :class:`ToolCall`, ``(name, arguments)`` or ``(name, arguments, call_id)``."""


@dataclass(frozen=True)
class Reply:
    text: str = ""
    """Streamed word by word, before any tool calls."""
    tool_calls: Sequence[ToolCallSpec] = ()
    delay_s: float = 0.0
    """Wait this long before the first chunk (or the error, or the whole non-streamed reply)."""
    chunk_delay_s: float = 0.0
    """Wait this long between chunks."""
    error_status: int | None = None
    """Answer with this HTTP status and an OpenAI-style error body instead of a completion."""
    error_message: str = "The scripted server was told to fail."
    retryable: bool = False
    """Whether the error invites the client to retry; by default it sends ``x-should-retry: false``,
    so one scripted error is one failure whatever the client's retry policy."""
    fail_after_chunks: int | None = None
    """Stream this many chunks, then an SSE error event (``data: {"error": ...}``) and stop."""
    finish_reason: str | None = None
    """Defaults to ``tool_calls`` when there are tool calls, else ``stop``."""
    usage: tuple[int, int] | None = None
    """``(prompt_tokens, completion_tokens)``; estimated at about four characters a token if None."""

    @property
    def calls(self) -> list[ToolCall]:
        return [call if isinstance(call, ToolCall) else ToolCall(*call) for call in self.tool_calls]


@dataclass
class StreamRecord:
    """What happened to one streamed reply."""

    chunks_sent: int = 0
    completed: bool = False
    client_gone: bool = False


class ScriptedLLM(LocalApp):
    """The server; use it as ``async with ScriptedLLM() as llm:``."""

    def __init__(self, *, model: str = DEFAULT_MODEL) -> None:
        self.model = model
        """The one model ``GET /v1/models`` lists."""
        self.requests: list[dict[str, Any]] = []
        """Every chat-completions request body, in order."""
        self.headers: list[dict[str, str]] = []
        """The HTTP headers of each request in ``requests``."""
        self.streams: list[StreamRecord] = []
        """One record per streamed reply, in order."""
        self._queue: deque[Reply] = deque()
        self._port = 0
        self._client_gone = asyncio.Event()

    # ---------------------------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> ScriptedLLM:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_get("/v1/models", self._models)
        self._port = await self._serve(app, "127.0.0.1", 0)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def base_url(self) -> str:
        """What an OpenAI client takes as ``base_url``."""
        return f"{self.url}/v1"

    # ---------------------------------------------------------------------------------- scripting

    def script(self, *replies: Reply | str) -> None:
        """Queue replies; a plain string is ``Reply(text=...)``."""
        self._queue.extend(Reply(text=r) if isinstance(r, str) else r for r in replies)

    def reset(self) -> None:
        """Forget the script and what was recorded (between tests sharing one server)."""
        self._queue.clear()
        self.requests.clear()
        self.headers.clear()
        self.streams.clear()

    @property
    def pending(self) -> int:
        """Scripted replies not yet consumed."""
        return len(self._queue)

    @property
    def last_request(self) -> dict[str, Any]:
        return self.requests[-1]

    async def wait_client_gone(self, timeout_s: float = 10.0) -> None:
        """Wait until a client abandons a streamed reply (a safety timeout only, not a measurement)."""
        await asyncio.wait_for(self._client_gone.wait(), timeout_s)

    # ---------------------------------------------------------------------------------- handlers

    async def _models(self, request: web.Request) -> web.Response:
        model = {"id": self.model, "object": "model", "created": 0, "owned_by": "parley-tests"}
        return web.json_response({"object": "list", "data": [model]})

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        body: dict[str, Any] = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        reply = self._queue.popleft() if self._queue else Reply(text=f"You said: {last_user_text(body)}")
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.error_status is not None:
            return _error_response(reply)
        if body.get("stream"):
            return await self._stream(request, body, reply)
        return web.json_response(_completion(body, reply))

    async def _stream(self, request: web.Request, body: dict[str, Any], reply: Reply) -> web.StreamResponse:
        record = StreamRecord()
        self.streams.append(record)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        try:
            for index, chunk in enumerate(_chunks(body, reply)):
                if index and reply.chunk_delay_s:
                    await asyncio.sleep(reply.chunk_delay_s)
                if reply.fail_after_chunks is not None and index >= reply.fail_after_chunks:
                    await response.write(_sse({"error": _error_body(reply, 500)["error"]}))
                    return response
                await response.write(_sse(chunk))
                record.chunks_sent += 1
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
            record.completed = True
        except (asyncio.CancelledError, ConnectionError):
            record.client_gone = True
            self._client_gone.set()
            raise
        return response


# -------------------------------------------------------------------------------------- wire format


def last_user_text(body: dict[str, Any]) -> str:
    """The text of the last user message (string content or text parts)."""
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _words(text: str) -> list[str]:
    return re.findall(r"\s*\S+", text) or ([text] if text else [])


def _pieces(text: str, count: int = 3) -> list[str]:
    size = max(1, -(-len(text) // count))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _estimate_tokens(text: str) -> int:
    return max(1, -(-len(text) // 4)) if text else 0


def _usage(body: dict[str, Any], reply: Reply) -> dict[str, int]:
    if reply.usage is not None:
        prompt, completion = reply.usage
    else:
        prompt = _estimate_tokens(json.dumps(body.get("messages", [])))
        written = reply.text + "".join(c.name + c.arguments for c in reply.calls)
        completion = _estimate_tokens(written)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _finish_reason(reply: Reply) -> str:
    return reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")


def _call_ids(reply: Reply) -> list[str]:
    return [call.call_id or f"call_{uuid.uuid4().hex[:24]}" for call in reply.calls]


def _chunks(body: dict[str, Any], reply: Reply) -> list[dict[str, Any]]:
    """The ``chat.completion.chunk`` objects of one streamed reply, as OpenAI sends them."""
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    base = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body.get("model") or DEFAULT_MODEL,
        "system_fingerprint": "fp_scripted",
    }
    if include_usage:
        base["usage"] = None

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {**base, "choices": [choice]}

    chunks = [chunk({"role": "assistant", "content": "", "refusal": None})]
    chunks += [chunk({"content": word}) for word in _words(reply.text)]
    for index, (call, call_id) in enumerate(zip(reply.calls, _call_ids(reply), strict=True)):
        head = {"index": index, "id": call_id, "type": "function"}
        chunks.append(chunk({"tool_calls": [{**head, "function": {"name": call.name, "arguments": ""}}]}))
        for piece in _pieces(call.arguments):
            chunks.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}))
    chunks.append(chunk({}, _finish_reason(reply)))
    if include_usage:
        chunks.append({**base, "choices": [], "usage": _usage(body, reply)})
    return chunks


def _completion(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    """A non-streamed ``chat.completion`` object."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None, "refusal": None}
    if reply.calls:
        message["tool_calls"] = [
            {"id": call_id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
            for call, call_id in zip(reply.calls, _call_ids(reply), strict=True)
        ]
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": _finish_reason(reply)}
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model") or DEFAULT_MODEL,
        "choices": [choice],
        "usage": _usage(body, reply),
    }


def _error_body(reply: Reply, status: int) -> dict[str, Any]:
    kind = "invalid_request_error" if 400 <= status < 500 else "server_error"
    return {"error": {"message": reply.error_message, "type": kind, "param": None, "code": None}}


def _error_response(reply: Reply) -> web.Response:
    status = reply.error_status or 500
    headers = {} if reply.retryable else {"x-should-retry": "false"}
    return web.json_response(_error_body(reply, status), status=status, headers=headers)


def _sse(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data)}\n\n".encode()
