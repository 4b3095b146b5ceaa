"""A stock ``openai-agents`` realtime client (``agents.realtime``) against a real ``parley serve``.

The Agents SDK validates every server event with the ``openai`` package's GA pydantic models and
turns anything it rejects into an ``error`` session event (or an exception raised from the session
iterator, or an error in its ``openai.agents`` log); it runs ``@function_tool`` calls itself, sends
their ``function_call_output`` items and asks for the next response on its own. These tests run
whole tool round trips through it, with the SDK's own WebSocket model pointed at Parley, and assert
that nothing Parley sends is rejected.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from agents import function_tool
from agents.realtime import (
    RealtimeAgent,
    RealtimeAgentEndEvent,
    RealtimeAudio,
    RealtimeAudioEnd,
    RealtimeError,
    RealtimeHistoryUpdated,
    RealtimeModelConfig,
    RealtimeRawModelEvent,
    RealtimeRunConfig,
    RealtimeRunner,
    RealtimeSession,
    RealtimeSessionEvent,
    RealtimeToolEnd,
    RealtimeToolStart,
)
from agents.realtime.items import AssistantAudio, AssistantMessageItem, AssistantText, RealtimeToolCallItem
from agents.realtime.model_events import (
    RealtimeModelErrorEvent,
    RealtimeModelExceptionEvent,
    RealtimeModelRawServerEvent,
)
from agents.realtime.openai_realtime import OpenAIRealtimeWebSocketModel
from openai.types.realtime import RealtimeClientEvent

from tests.conformance.conftest import Server
from tests.scripted_llm import Reply, ScriptedLLM, ToolCall
from tests.wire import validate_ga

Event = dict[str, Any]
E = TypeVar("E")
TURN_TIMEOUT_S = 60.0
"""A safety net so a broken round trip fails instead of hanging; not a measurement."""
SDK_LOGGER = "openai.agents"


class RecordingModel(OpenAIRealtimeWebSocketModel):
    """The SDK's own WebSocket model, recording every client event it sends, as sent."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[Event] = []

    async def _send_raw_message(self, event: RealtimeClientEvent) -> None:
        self.sent.append(json.loads(event.model_dump_json(exclude_unset=True)))
        await super()._send_raw_message(event)


@dataclass
class Run:
    """Everything one agent session produced."""

    model: RecordingModel
    events: list[RealtimeSessionEvent] = field(default_factory=list)

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]

    def model_events(self, kind: type[E]) -> list[E]:
        """Events of the SDK's model layer (forwarded to the session as ``raw_model_event``)."""
        return [e.data for e in self.of(RealtimeRawModelEvent) if isinstance(e.data, kind)]

    @property
    def server_events(self) -> list[Event]:
        """The raw server events, in arrival order, exactly as the SDK received them."""
        return [e.data for e in self.model_events(RealtimeModelRawServerEvent)]

    def server_of_type(self, type_: str) -> list[Event]:
        return [e for e in self.server_events if e["type"] == type_]

    def sent_of_type(self, type_: str) -> list[Event]:
        return [e for e in self.model.sent if e["type"] == type_]

    def problems(self) -> list[str]:
        """Every error the SDK reported: session ``error`` events (which include events it failed
        to validate), model-layer errors and exceptions, and ``error`` events from the server."""
        found = [f"session error: {e.error!r}" for e in self.of(RealtimeError)]
        found += [f"model error: {e.error!r}" for e in self.model_events(RealtimeModelErrorEvent)]
        found += [
            f"model exception ({e.context}): {e.exception!r}"
            for e in self.model_events(RealtimeModelExceptionEvent)
        ]
        found += [f"server error event: {e}" for e in self.server_of_type("error")]
        return found


def agent_run(
    server: Server, agent: RealtimeAgent, *, async_tool_calls: bool = True, **model_settings: Any
) -> tuple[RealtimeRunner, RealtimeModelConfig, RecordingModel]:
    """A runner for ``agent`` on Parley's socket through the SDK's own (recording) WebSocket model."""
    model = RecordingModel()
    config: RealtimeRunConfig = {
        "model_settings": {"model_name": "gpt-realtime", **model_settings},  # type: ignore[typeddict-item]
        "tracing_disabled": True,
        "async_tool_calls": async_tool_calls,
    }
    runner = RealtimeRunner(agent, model=model, config=config)
    model_config: RealtimeModelConfig = {
        "url": f"{server.ws_base}/realtime?model=gpt-realtime",
        "api_key": "sk-test",
    }
    return runner, model_config, model


async def events_until(
    session: RealtimeSession, run: Run, done: Callable[[Run], bool], timeout_s: float = TURN_TIMEOUT_S
) -> None:
    """Collect session events into ``run`` until ``done(run)``; stopping short fails with what arrived."""
    iterator: AsyncIterator[RealtimeSessionEvent] = session.__aiter__()
    deadline = time.monotonic() + timeout_s
    while not done(run):
        try:
            event = await asyncio.wait_for(iterator.__anext__(), max(0.1, deadline - time.monotonic()))
        except (TimeoutError, StopAsyncIteration) as stop:
            seen = [e["type"] for e in run.server_events]
            raise AssertionError(
                f"session stopped short ({type(stop).__name__}); server events: {seen}; "
                f"problems: {run.problems()}"
            ) from stop
        run.events.append(event)


def responses_done(count: int) -> Callable[[Run], bool]:
    """True once ``count`` responses are done and the SDK has ended the agent's turn after each."""

    def done(run: Run) -> bool:
        return (
            len(run.server_of_type("response.done")) >= count and len(run.of(RealtimeAgentEndEvent)) >= count
        )

    return done


def assert_clean(run: Run, server: Server, caplog: pytest.LogCaptureFixture) -> None:
    """No errors anywhere, and every server event passes the strict GA models on its own too (the
    SDK hand-converts message items in ``response.output_item.*`` without validating them)."""
    assert run.problems() == [], (run.problems(), server.log()[-4000:])
    sdk_errors = [
        r.getMessage() for r in caplog.records if r.name.startswith(SDK_LOGGER) and r.levelno >= logging.ERROR
    ]
    assert sdk_errors == []
    for event in run.server_events:
        validate_ga(event)


def tool_messages(request: Event) -> list[Event]:
    return [m for m in request["messages"] if m["role"] == "tool"]


def last_history(run: Run) -> list[Any]:
    return list(run.of(RealtimeHistoryUpdated)[-1].history)


# ----------------------------------------------------------------------------------------- tests


async def test_text_session_tool_round_trip(
    server: Server, scripted: ScriptedLLM, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=SDK_LOGGER)
    calls: list[str] = []

    @function_tool
    def get_order_status(order_id: str) -> str:
        """Look up the shipping status of an order."""
        calls.append(order_id)
        return f"Order {order_id}: shipped on Monday."

    agent = RealtimeAgent(
        name="Support",
        instructions="You help customers with their orders. Use tools.",
        tools=[get_order_status],
    )
    scripted.script(
        Reply(tool_calls=[ToolCall("get_order_status", '{"order_id": "A100"}', "call_order_1")]),
        "Your order A100 has shipped.",
    )
    runner, model_config, model = agent_run(server, agent, output_modalities=["text"])
    run = Run(model)
    async with await runner.run(model_config=model_config) as session:
        await session.send_message("Where is my order A100?")
        await events_until(session, run, responses_done(2))

    assert_clean(run, server, caplog)
    assert calls == ["A100"]

    # The session the SDK configured took: text output, the tool, the agent's instructions.
    updated = run.server_of_type("session.updated")[-1]["session"]
    assert updated["output_modalities"] == ["text"]
    assert [t["name"] for t in updated["tools"]] == ["get_order_status"]
    assert updated["instructions"] == "You help customers with their orders. Use tools."

    # The SDK ran the tool once and reported it, then sent its output and a new response.create.
    (tool_start,) = run.of(RealtimeToolStart)
    (tool_end,) = run.of(RealtimeToolEnd)
    assert tool_start.tool.name == "get_order_status"
    assert json.loads(tool_start.arguments) == {"order_id": "A100"}
    assert tool_end.output == "Order A100: shipped on Monday."
    created_items = [e["item"] for e in run.sent_of_type("conversation.item.create")]
    assert created_items[-1] == {
        "type": "function_call_output",
        "call_id": "call_order_1",
        "output": "Order A100: shipped on Monday.",
    }
    assert len(run.sent_of_type("response.create")) == 2

    # On the server: a call response, the output item, then a text response.
    dones = [e["response"] for e in run.server_of_type("response.done")]
    assert [d["status"] for d in dones] == ["completed", "completed"]
    (call_item,) = dones[0]["output"]
    assert (call_item["type"], call_item["name"], call_item["call_id"]) == (
        "function_call",
        "get_order_status",
        "call_order_1",
    )
    assert json.loads(call_item["arguments"]) == {"order_id": "A100"}
    output_added = [
        e["item"]
        for e in run.server_of_type("conversation.item.added")
        if e["item"]["type"] == "function_call_output"
    ]
    assert [(i["call_id"], i["output"]) for i in output_added] == [
        ("call_order_1", "Order A100: shipped on Monday.")
    ]
    (message,) = dones[1]["output"]
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["content"] == [{"type": "output_text", "text": "Your order A100 has shipped."}]
    assert not run.server_of_type("response.output_audio.delta")

    # The SDK's history holds the call with its output, then the assistant's answer.
    history = last_history(run)
    (tool_item,) = [i for i in history if isinstance(i, RealtimeToolCallItem)]
    assert tool_item.output == "Order A100: shipped on Monday." and tool_item.status == "completed"
    answer = [i for i in history if isinstance(i, AssistantMessageItem)][-1]
    assert isinstance(answer.content[0], AssistantText)
    assert "shipped" in (answer.content[0].text or "")

    # What reached the LLM: the tool declared, then the call and its output before the reply.
    assert len(scripted.requests) == 2
    assert [t["function"]["name"] for t in scripted.requests[0]["tools"]] == ["get_order_status"]
    assert tool_messages(scripted.requests[1]) == [
        {"role": "tool", "tool_call_id": "call_order_1", "content": "Order A100: shipped on Monday."}
    ]


PARALLEL_OUTPUTS = {"call_a": "Sunny in Tokyo.", "call_b": "It is noon in Asia/Tokyo."}


def _has_both_outputs(request: Event) -> bool:
    return {m["tool_call_id"]: m["content"] for m in tool_messages(request)} == PARALLEL_OUTPUTS


@pytest.mark.parametrize("async_tool_calls", [False, True], ids=["inline-tools", "async-tools"])
async def test_two_parallel_tool_calls(
    server: Server, scripted: ScriptedLLM, caplog: pytest.LogCaptureFixture, async_tool_calls: bool
) -> None:
    """Two calls in one response. With ``async_tool_calls=False`` the SDK runs each tool as its
    ``response.output_item.done`` arrives, so both outputs go out before ``response.done`` and one
    ``response.create`` follows. With the SDK's default (tools run in tasks) it asks for a response
    after each output, coalescing only the requests made before it sends one; when the first output
    goes out before the second tool has finished, that makes a second follow-up response, as it
    would against OpenAI. Either way both outputs must reach the model and nothing may be rejected."""
    caplog.set_level(logging.WARNING, logger=SDK_LOGGER)
    weather_calls: list[str] = []
    time_calls: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        weather_calls.append(city)
        return f"Sunny in {city}."

    @function_tool
    def get_time(tz: str) -> str:
        """The current time in a time zone."""
        time_calls.append(tz)
        return f"It is noon in {tz}."

    agent = RealtimeAgent(name="Helper", instructions="Use tools.", tools=[get_weather, get_time])
    calls = [
        ToolCall("get_weather", '{"city": "Tokyo"}', "call_a"),
        ToolCall("get_time", '{"tz": "Asia/Tokyo"}', "call_b"),
    ]
    scripted.script(Reply(tool_calls=calls), "Sunny, and it is noon.", "Sunny, and it is noon.")
    runner, model_config, model = agent_run(
        server, agent, output_modalities=["text"], async_tool_calls=async_tool_calls
    )
    run = Run(model)

    def settled(run: Run) -> bool:
        """Both tools ran, the model saw both outputs, and every response asked for is done."""
        responses = len(run.server_of_type("response.done"))
        return (
            len(run.of(RealtimeToolEnd)) == 2
            and any(_has_both_outputs(r) for r in scripted.requests)
            and responses == len(scripted.requests) == len(run.sent_of_type("response.create"))
            and len(run.of(RealtimeAgentEndEvent)) >= responses
        )

    async with await runner.run(model_config=model_config) as session:
        await session.send_message("Weather and time in Tokyo?")
        await events_until(session, run, settled)

    assert_clean(run, server, caplog)
    assert weather_calls == ["Tokyo"] and time_calls == ["Asia/Tokyo"]
    assert sorted(e.tool.name for e in run.of(RealtimeToolEnd)) == ["get_time", "get_weather"]

    dones = [e["response"] for e in run.server_of_type("response.done")]
    assert all(d["status"] == "completed" for d in dones), dones
    assert [(i["name"], i["call_id"], json.loads(i["arguments"])) for i in dones[0]["output"]] == [
        ("get_weather", "call_a", {"city": "Tokyo"}),
        ("get_time", "call_b", {"tz": "Asia/Tokyo"}),
    ]
    sent_outputs = {
        e["item"]["call_id"]: e["item"]["output"]
        for e in run.sent_of_type("conversation.item.create")
        if e["item"]["type"] == "function_call_output"
    }
    assert sent_outputs == PARALLEL_OUTPUTS
    added_outputs = {
        e["item"]["call_id"]: e["item"]["output"]
        for e in run.server_of_type("conversation.item.added")
        if e["item"]["type"] == "function_call_output"
    }
    assert added_outputs == PARALLEL_OUTPUTS
    if async_tool_calls:
        assert len(dones) in (2, 3), [d["output"] for d in dones]
    else:
        assert len(dones) == 2 and len(scripted.requests) == 2

    # The last request holds both calls, each followed by its output.
    messages = scripted.requests[-1]["messages"]
    assert _has_both_outputs(scripted.requests[-1])
    for message in tool_messages(scripted.requests[-1]):
        call = messages[messages.index(message) - 1]
        assert call["role"] == "assistant"
        assert [c["id"] for c in call["tool_calls"]] == [message["tool_call_id"]]
    texts = [
        part["text"]
        for done in dones[1:]
        for item in done["output"]
        if item["type"] == "message"
        for part in item["content"]
    ]
    assert texts and set(texts) == {"Sunny, and it is noon."}


async def test_audio_session_tool_round_trip(
    server: Server, scripted: ScriptedLLM, caplog: pytest.LogCaptureFixture
) -> None:
    """The SDK's default session (audio out as pcm16, semantic VAD, input transcription): the
    agent calls the tool, then speaks the answer."""
    caplog.set_level(logging.WARNING, logger=SDK_LOGGER)
    calls: list[str] = []

    @function_tool
    def get_order_status(order_id: str) -> str:
        """Look up the shipping status of an order."""
        calls.append(order_id)
        return f"Order {order_id}: shipped."

    agent = RealtimeAgent(name="Voice", instructions="Answer briefly.", tools=[get_order_status])
    scripted.script(
        Reply(tool_calls=[ToolCall("get_order_status", '{"order_id": "B7"}', "call_b7")]),
        "Your order has shipped.",
    )
    runner, model_config, model = agent_run(server, agent)
    run = Run(model)
    async with await runner.run(model_config=model_config) as session:
        await session.send_message("Where is order B7?")
        await events_until(session, run, responses_done(2))

    assert_clean(run, server, caplog)
    assert calls == ["B7"]
    updated = run.server_of_type("session.updated")[-1]["session"]
    assert updated["output_modalities"] == ["audio"]
    assert updated["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}

    audio = run.of(RealtimeAudio)
    assert audio, [e["type"] for e in run.server_events]
    pcm = b"".join(e.audio.data for e in audio)
    assert len(pcm) > 4800 and len(pcm) % 2 == 0, "at least 100 ms of pcm16 speech"
    assert {e.item_id for e in audio} == {e.item_id for e in run.of(RealtimeAudioEnd)}
    transcript = "".join(e["delta"] for e in run.server_of_type("response.output_audio_transcript.delta"))
    assert "shipped" in transcript
    (message,) = run.server_of_type("response.done")[-1]["response"]["output"]
    assert message["content"][0]["type"] == "output_audio"
    assert "shipped" in message["content"][0]["transcript"]

    answer = [i for i in last_history(run) if isinstance(i, AssistantMessageItem)][-1]
    assert isinstance(answer.content[0], AssistantAudio)
    assert "shipped" in (answer.content[0].transcript or "")
    assert tool_messages(scripted.requests[-1]) == [
        {"role": "tool", "tool_call_id": "call_b7", "content": "Order B7: shipped."}
    ]
