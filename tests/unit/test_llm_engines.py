"""The LLM engines: OpenAIChatLLM against the scripted server, EchoLLM, and how ``auto`` chooses."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any, cast

import openai
import pytest
from aiohttp import web
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from parley.config import Settings
from parley.engines.base import (
    ChatRequest,
    EngineError,
    Finish,
    FunctionTool,
    LanguageModel,
    LLMEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from parley.engines.llm import auto, openai_chat
from parley.engines.llm.echo import EchoLLM
from parley.engines.llm.openai_chat import OpenAIChatLLM
from tests.scripted_llm import Reply, ScriptedLLM, ToolCall

WEATHER = FunctionTool(
    "get_weather",
    "The weather in a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def ask(text: str, **kwargs: Any) -> ChatRequest:
    return ChatRequest(
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}], **kwargs
    )


async def collect(events: AsyncIterator[LLMEvent]) -> list[LLMEvent]:
    return [event async for event in events]


def text_of(events: Sequence[LLMEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def calls_of(events: Sequence[LLMEvent]) -> dict[int, dict[str, Any]]:
    """Reassemble tool calls from their deltas, checking that only first deltas carry id and name."""
    calls: dict[int, dict[str, Any]] = {}
    for event in events:
        if isinstance(event, ToolCallDelta):
            if event.index not in calls:
                assert event.call_id and event.name, "the first delta of a call must carry its id and name"
                calls[event.index] = {"id": event.call_id, "name": event.name, "arguments": ""}
            else:
                assert event.call_id is None and event.name is None
            calls[event.index]["arguments"] += event.arguments
    return calls


@pytest.fixture
async def llm() -> AsyncIterator[ScriptedLLM]:
    async with ScriptedLLM() as server:
        yield server


@pytest.fixture
async def engine(llm: ScriptedLLM) -> AsyncIterator[OpenAIChatLLM]:
    model = OpenAIChatLLM(llm.base_url, model="test-model", max_retries=0)
    yield model
    await model.aclose()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# ------------------------------------------------------------------------------------ ScriptedLLM


async def test_scripted_stream_chunks_are_valid_openai_chunks(llm: ScriptedLLM) -> None:
    llm.script(
        Reply(text="Hello there, friend.", tool_calls=[("get_weather", '{"city": "Paris"}', "call_1")])
    )
    client = openai.AsyncOpenAI(base_url=llm.base_url, api_key="x", max_retries=0)
    stream = await client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [ChatCompletionChunk.model_validate(chunk.model_dump()) async for chunk in stream]
    await client.close()
    assert [c.choices[0].delta.content for c in chunks[1:4]] == ["Hello", " there,", " friend."]
    assert chunks[-2].choices[0].finish_reason == "tool_calls"
    assert (
        chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    )
    arguments = "".join(
        (tc.function.arguments or "") if tc.function else ""
        for c in chunks[1:]
        for tc in (c.choices[0].delta.tool_calls or [] if c.choices else [])
    )
    assert json.loads(arguments) == {"city": "Paris"}
    assert llm.streams[0].completed and not llm.streams[0].client_gone


async def test_scripted_non_streaming_and_echo_when_nothing_queued(llm: ScriptedLLM) -> None:
    client = openai.AsyncOpenAI(base_url=llm.base_url, api_key="x", max_retries=0)
    completion = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi there"}]
    )
    models = await client.models.list()
    await client.close()
    ChatCompletion.model_validate(completion.model_dump())
    assert completion.choices[0].message.content == "You said: hi there"
    assert completion.usage is not None and completion.usage.total_tokens > 0
    assert [m.id for m in models.data] == [llm.model]


# ------------------------------------------------------------------------------------ OpenAIChatLLM


async def test_streams_text_usage_and_finish(llm: ScriptedLLM, engine: OpenAIChatLLM) -> None:
    assert isinstance(engine, LanguageModel)
    llm.script(Reply(text="The sky is blue today.", usage=(12, 6)))
    events = await collect(engine.stream(ask("What colour is the sky?", model="gpt-realtime")))
    assert text_of(events) == "The sky is blue today."
    assert len([e for e in events if isinstance(e, TextDelta)]) > 1
    assert events[-2:] == [Usage(12, 6), Finish("stop")]
    body = llm.last_request
    assert body["model"] == "test-model"  # the configured model wins over the session's
    assert body["messages"][-1] == {"role": "user", "content": "What colour is the sky?"}
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert "tools" not in body and "tool_choice" not in body and "max_tokens" not in body


async def test_one_tool_call(llm: ScriptedLLM, engine: OpenAIChatLLM) -> None:
    llm.script(Reply(tool_calls=[ToolCall("get_weather", '{"city": "Paris"}', "call_abc")]))
    events = await collect(engine.stream(ask("Weather in Paris?", tools=[WEATHER])))
    assert calls_of(events) == {
        0: {"id": "call_abc", "name": "get_weather", "arguments": '{"city": "Paris"}'}
    }
    assert len([e for e in events if isinstance(e, ToolCallDelta)]) > 2  # arguments arrive in pieces
    assert events[-1] == Finish("tool_calls")


async def test_two_parallel_tool_calls(llm: ScriptedLLM, engine: OpenAIChatLLM) -> None:
    llm.script(Reply(tool_calls=[("get_weather", '{"city": "Paris"}'), ("get_weather", '{"city": "Oslo"}')]))
    events = await collect(engine.stream(ask("Paris and Oslo?", tools=[WEATHER], parallel_tool_calls=True)))
    calls = calls_of(events)
    assert [json.loads(calls[i]["arguments"]) for i in (0, 1)] == [{"city": "Paris"}, {"city": "Oslo"}]
    assert calls[0]["id"] != calls[1]["id"]
    assert llm.last_request["parallel_tool_calls"] is True


def chunk(tool_calls: list[dict[str, Any]]) -> ChatCompletionChunk:
    choice = {"index": 0, "delta": {"tool_calls": tool_calls}, "finish_reason": None}
    return ChatCompletionChunk.model_validate(
        {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": [choice]}
    )


def test_tool_calls_from_quirky_servers_keep_the_contract() -> None:
    reader = openai_chat._ChunkReader()
    chunks = [
        chunk([{"index": 0, "function": {"arguments": ""}}]),  # no id, no name yet
        chunk([{"index": 0, "function": {"name": "get_weather", "arguments": '{"city": '}}]),
        chunk([{"index": 0, "function": {"arguments": '"Paris"}'}}]),
        # two whole calls at the same index with different ids (as some Ollama versions send them)
        chunk([{"index": 1, "id": "a", "function": {"name": "f", "arguments": "{}"}}]),
        chunk([{"index": 1, "id": "b", "function": {"name": "g", "arguments": '{"x": 1}'}}]),
    ]
    calls = calls_of([event for c in chunks for event in reader.read(c)])
    assert calls[0]["name"] == "get_weather" and calls[0]["id"].startswith("call_")
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris"}
    assert calls[1] == {"id": "a", "name": "f", "arguments": "{}"}
    assert calls[2] == {"id": "b", "name": "g", "arguments": '{"x": 1}'}


async def test_finish_reason_length_is_passed_on(llm: ScriptedLLM, engine: OpenAIChatLLM) -> None:
    llm.script(Reply(text="Cut short", finish_reason="length"))
    events = await collect(engine.stream(ask("hi", max_output_tokens=2)))
    assert events[-1] == Finish("length") and llm.last_request["max_tokens"] == 2


async def test_tools_tool_choice_and_max_tokens_are_sent(llm: ScriptedLLM, engine: OpenAIChatLLM) -> None:
    await collect(engine.stream(ask("a", tools=[WEATHER], tool_choice="required", max_output_tokens=50)))
    await collect(engine.stream(ask("b", tools=[WEATHER], tool_choice="get_weather")))
    await collect(engine.stream(ask("c", tools=[WEATHER], tool_choice="none")))
    first, second, third = llm.requests
    assert first["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": WEATHER.description,
                "parameters": WEATHER.parameters,
            },
        }
    ]
    assert first["tool_choice"] == "required" and first["max_tokens"] == 50
    assert "max_completion_tokens" not in first and "parallel_tool_calls" not in first
    assert second["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert third["tool_choice"] == "none"


async def test_model_falls_back_to_request_then_server_list(llm: ScriptedLLM) -> None:
    engine = OpenAIChatLLM(llm.base_url, max_retries=0)
    await collect(engine.stream(ask("a", model="from-request")))
    await collect(engine.stream(ask("b")))
    await engine.aclose()
    assert [r["model"] for r in llm.requests] == ["from-request", llm.model]


async def test_http_error_becomes_engine_error(llm: ScriptedLLM, engine: OpenAIChatLLM) -> None:
    llm.script(Reply(error_status=500, error_message="the GPU caught fire"))
    with pytest.raises(EngineError) as caught:
        await collect(engine.stream(ask("hi")))
    assert llm.base_url in str(caught.value) and "500" in str(caught.value)
    assert "the GPU caught fire" in str(caught.value)


async def test_error_mid_stream_becomes_engine_error(llm: ScriptedLLM, engine: OpenAIChatLLM) -> None:
    llm.script(Reply(text="one two three four", fail_after_chunks=2, error_message="out of memory"))
    with pytest.raises(EngineError, match="out of memory"):
        await collect(engine.stream(ask("hi")))


async def test_one_retry_by_default(llm: ScriptedLLM) -> None:
    llm.script(Reply(error_status=503, retryable=True), Reply(text="Back again."))
    engine = OpenAIChatLLM(llm.base_url, model="m")
    events = await collect(engine.stream(ask("hi")))
    await engine.aclose()
    assert text_of(events) == "Back again." and len(llm.requests) == 2


async def test_connection_refused_becomes_engine_error() -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    engine = OpenAIChatLLM(url, model="m", max_retries=0)
    with pytest.raises(EngineError, match="Could not reach") as caught:
        await collect(engine.stream(ask("hi")))
    await engine.aclose()
    assert url in str(caught.value)


async def test_stopping_iteration_closes_the_stream(llm: ScriptedLLM, engine: OpenAIChatLLM) -> None:
    llm.script(Reply(text=" ".join(["word"] * 200), chunk_delay_s=0.05))
    events = cast(AsyncGenerator[LLMEvent, None], engine.stream(ask("talk a lot")))
    assert isinstance(await anext(events), TextDelta)
    await events.aclose()
    await llm.wait_client_gone()
    assert llm.streams[0].client_gone and not llm.streams[0].completed
    assert llm.streams[0].chunks_sent < 200


async def test_cancelling_the_task_closes_the_stream(llm: ScriptedLLM, engine: OpenAIChatLLM) -> None:
    llm.script(Reply(text=" ".join(["word"] * 200), chunk_delay_s=0.05))
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in engine.stream(ask("talk a lot")):
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await llm.wait_client_gone()
    assert llm.streams[0].client_gone and not llm.streams[0].completed


async def test_warm_up_logs_and_never_fails(
    llm: ScriptedLLM, engine: OpenAIChatLLM, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "parley.engines.llm")
    await engine.warm_up()
    assert "does not list model 'test-model'" in caplog.text
    down = OpenAIChatLLM(f"http://127.0.0.1:{closed_port()}/v1", max_retries=0)
    await down.warm_up()
    await down.aclose()
    assert "Could not reach" in caplog.text


# ------------------------------------------------------------------------------------ EchoLLM


async def test_echo_repeats_the_last_user_message() -> None:
    events = await collect(EchoLLM().stream(ask("turn on the lights", tools=[WEATHER])))
    assert text_of(events) == (
        "No language model is configured, so I can only repeat what I heard: turn on the lights."
    )
    assert len([e for e in events if isinstance(e, TextDelta)]) > 5
    assert not any(isinstance(e, ToolCallDelta) for e in events)
    usage = events[-2]
    assert isinstance(usage, Usage) and usage.output_tokens == -(-len(text_of(events)) // 4)
    assert events[-1] == Finish("stop")


async def test_echo_without_user_text_says_how_to_configure() -> None:
    events = await collect(EchoLLM().stream(ChatRequest(messages=[{"role": "system", "content": "x"}])))
    assert "PARLEY_LLM_BASE_URL" in text_of(events) and events[-1] == Finish("stop")


async def test_echo_honours_max_output_tokens() -> None:
    events = await collect(EchoLLM().stream(ask("hello", max_output_tokens=5)))
    text = text_of(events)
    assert text.startswith("No language") and len(text.rstrip()) <= 20
    assert events[-1] == Finish("length")


# ------------------------------------------------------------------------------------ auto


def settings(**values: Any) -> Settings:
    return Settings(**{"ollama_url": f"http://127.0.0.1:{closed_port()}", **values})


async def test_auto_uses_the_configured_server() -> None:
    engine = auto.create(settings(llm_base_url="http://127.0.0.1:9/v1", llm_model="m"))
    assert isinstance(engine, OpenAIChatLLM) and engine.base_url == "http://127.0.0.1:9/v1"
    assert engine.model == "m"


async def test_auto_falls_back_to_echo(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "parley.engines.llm")
    engine = await asyncio.to_thread(auto.create, settings())
    assert isinstance(engine, EchoLLM)
    assert "echo" in caplog.text and "PARLEY_LLM_BASE_URL" in caplog.text


async def test_auto_finds_a_local_ollama() -> None:
    app = web.Application()
    tags = {"models": [{"name": "nomic-embed-text:latest"}, {"name": "llama3.2:latest"}]}

    async def api_tags(request: web.Request) -> web.Response:
        return web.json_response(tags)

    app.router.add_get("/api/tags", api_tags)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        found = await asyncio.to_thread(auto.create, settings(ollama_url=url))
        chosen = await asyncio.to_thread(auto.create, settings(ollama_url=url + "/", llm_model="qwen3"))
    finally:
        await runner.cleanup()
    assert (
        isinstance(found, OpenAIChatLLM)
        and found.base_url == f"{url}/v1"
        and found.model == "llama3.2:latest"
    )
    assert isinstance(chosen, OpenAIChatLLM) and chosen.model == "qwen3"


def test_openai_engine_without_base_url_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="PARLEY_LLM_BASE_URL"):
        openai_chat.create(settings(llm="openai"))
