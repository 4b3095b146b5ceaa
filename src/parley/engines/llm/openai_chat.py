"""Any OpenAI-compatible chat-completions server (Ollama, llama.cpp, vLLM, OpenAI) as a language model.

It talks to the server through the official ``openai`` client, streams with
``stream_options.include_usage`` and turns the chunks into Parley's :data:`LLMEvent`\\ s. Every failure
becomes an :class:`EngineError` that names the server and says what went wrong.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import openai
from openai import AsyncOpenAI, omit
from openai.types.chat import (
    ChatCompletionChunk,
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageParam,
    ChatCompletionToolChoiceOptionParam,
)

from parley.config import Settings, env_name
from parley.engines.base import (
    ChatRequest,
    EngineError,
    Finish,
    FunctionTool,
    LLMEvent,
    TextDelta,
    ToolCallDelta,
    ToolChoice,
    Usage,
)
from parley.engines.openai_client import NO_API_KEY, client_error

log = logging.getLogger("parley.engines.llm")

WARM_UP_TIMEOUT_S = 5.0

FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]
_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


class OpenAIChatLLM:
    """A :class:`~parley.engines.base.LanguageModel` backed by ``POST {base_url}/chat/completions``."""

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 1,
        name: str = "openai",
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.model = model
        """The model to ask for; when None, the request's model, else the first one the server lists."""
        self.timeout_s = timeout_s
        self._listed_model: str | None = None
        self._client = AsyncOpenAI(
            base_url=self.base_url,
            api_key=api_key or NO_API_KEY,
            timeout=timeout_s,
            max_retries=max_retries,
        )

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.close()

    # ------------------------------------------------------------------------------------ streaming

    async def stream(self, request: ChatRequest) -> AsyncIterator[LLMEvent]:
        model = self.model or request.model or await self._first_listed_model()
        try:
            chunks = await self._client.chat.completions.create(
                model=model,
                messages=cast(list[ChatCompletionMessageParam], request.messages),
                stream=True,
                stream_options={"include_usage": True},
                tools=[_tool_param(tool) for tool in request.tools] if request.tools else omit,
                tool_choice=_tool_choice_param(request.tool_choice) if request.tools else omit,
                parallel_tool_calls=(
                    request.parallel_tool_calls
                    if request.tools and request.parallel_tool_calls is not None
                    else omit
                ),
                max_tokens=request.max_output_tokens if request.max_output_tokens is not None else omit,
                temperature=request.temperature if request.temperature is not None else omit,
            )
        except (openai.OpenAIError, ValueError) as exc:
            raise self._engine_error(exc, model) from exc
        reader = _ChunkReader()
        try:
            async for chunk in chunks:
                for event in reader.read(chunk):
                    yield event
        except (openai.OpenAIError, ValueError) as exc:
            raise self._engine_error(exc, model) from exc
        finally:
            # Runs on completion, on error, when the task is cancelled and when the consumer stops
            # iterating (aclose): the HTTP response is closed at once, so the server stops generating.
            await chunks.close()
        yield Finish(reader.finish_reason or ("tool_calls" if reader.calls else "stop"))

    # ------------------------------------------------------------------------------------ warm-up

    async def warm_up(self) -> None:
        """Check that the server answers (listing its models); log what was found, never fail."""
        try:
            models = await self._list_models()
        except openai.NotFoundError:
            log.info("LLM server %s does not list its models; assuming it is up", self.base_url)
            return
        except openai.OpenAIError as exc:
            log.warning("%s", self._engine_error(exc, self.model))
            return
        log.info("LLM server %s is up and offers %d model(s)", self.base_url, len(models))
        if self.model and models and not {self.model, f"{self.model}:latest"} & set(models):
            log.warning(
                "LLM server %s does not list model %r (it lists: %s); set %s to one of them",
                self.base_url,
                self.model,
                ", ".join(models[:10]),
                env_name("llm_model"),
            )

    async def _list_models(self) -> list[str]:
        client = self._client.with_options(max_retries=0, timeout=min(WARM_UP_TIMEOUT_S, self.timeout_s))
        page = await client.models.list()
        models = [model.id for model in page.data]
        if models and self._listed_model is None:
            self._listed_model = models[0]
        return models

    async def _first_listed_model(self) -> str:
        if self._listed_model is None:
            try:
                await self._list_models()
            except openai.OpenAIError as exc:
                raise self._engine_error(exc, None) from exc
        if self._listed_model is None:
            raise EngineError(
                f"No model is configured for the language model server at {self.base_url} and it "
                f"lists none: set {env_name('llm_model')}"
            )
        return self._listed_model

    # ------------------------------------------------------------------------------------ errors

    def _engine_error(self, exc: Exception, model: str | None) -> EngineError:
        return client_error(
            exc,
            where=f"the language model server at {self.base_url}",
            timeout_s=self.timeout_s,
            key_setting=env_name("llm_api_key"),
            not_found_hint=f"is the model name {model!r} right? set {env_name('llm_model')}"
            if model
            else None,
        )


# ------------------------------------------------------------------------------------ request mapping


def _tool_param(tool: FunctionTool) -> ChatCompletionFunctionToolParam:
    parameters = tool.parameters or {"type": "object", "properties": {}}
    function = {"name": tool.name, "description": tool.description, "parameters": parameters}
    return {"type": "function", "function": cast(Any, function)}


def _tool_choice_param(choice: ToolChoice) -> ChatCompletionToolChoiceOptionParam:
    if choice in ("auto", "none", "required"):
        return choice
    return {"type": "function", "function": {"name": choice}}


# ------------------------------------------------------------------------------------ chunk reading


@dataclass
class _Call:
    index: int
    server_index: int
    call_id: str | None = None
    name: str | None = None
    pending_arguments: str = ""
    started: bool = False


@dataclass
class _ChunkReader:
    """Turns chunks into events, keeping the tool-call contract whatever the server's quirks: the
    first delta of a call carries its id and name (held back until the name is known; an id is made up
    if the server sends none), and a new id at a known index (a bug in some servers) is a new call."""

    calls: list[_Call] = field(default_factory=list)
    finish_reason: FinishReason | None = None

    def read(self, chunk: ChatCompletionChunk) -> Iterator[LLMEvent]:
        for choice in chunk.choices:
            if choice.index != 0:
                continue
            delta = choice.delta
            if delta.content:
                yield TextDelta(delta.content)
            for tool_call in delta.tool_calls or ():
                function = tool_call.function
                event = self._tool_call_delta(
                    getattr(tool_call, "index", None) or 0,
                    tool_call.id,
                    function.name if function else None,
                    (function.arguments if function else None) or "",
                )
                if event is not None:
                    yield event
            if choice.finish_reason:
                self.finish_reason = _FINISH_REASONS.get(choice.finish_reason, "stop")
        if chunk.usage is not None:
            yield Usage(chunk.usage.prompt_tokens or 0, chunk.usage.completion_tokens or 0)

    def _tool_call_delta(
        self, server_index: int, call_id: str | None, name: str | None, arguments: str
    ) -> ToolCallDelta | None:
        call = self._call(server_index, call_id)
        call.call_id = call.call_id or call_id
        call.name = call.name or name
        if call.started:
            return ToolCallDelta(call.index, arguments) if arguments else None
        call.pending_arguments += arguments
        if call.name is None:
            return None
        call.started = True
        call_id = call.call_id or f"call_{uuid.uuid4().hex[:24]}"
        return ToolCallDelta(call.index, call.pending_arguments, call_id=call_id, name=call.name)

    def _call(self, server_index: int, call_id: str | None) -> _Call:
        for call in reversed(self.calls):
            if call.server_index == server_index:
                if call_id is None or call.call_id in (None, call_id):
                    return call
                break
        call = _Call(index=len(self.calls), server_index=server_index)
        self.calls.append(call)
        return call


def create(settings: Settings) -> OpenAIChatLLM:
    if not settings.llm_base_url:
        raise ValueError(
            "The openai LLM engine needs the URL of an OpenAI-compatible chat-completions server: set "
            f"{env_name('llm_base_url')} (for example http://127.0.0.1:11434/v1 for a local Ollama)"
        )
    return OpenAIChatLLM(
        settings.llm_base_url,
        model=settings.llm_model,
        api_key=settings.llm_api_key,
        timeout_s=settings.llm_timeout_s,
    )
