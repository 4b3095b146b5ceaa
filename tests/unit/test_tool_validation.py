"""Argument checking in the session engine: the JSON Schema check, its setting, and the wording."""

from __future__ import annotations

from parley.config import Settings
from parley.engines.base import Finish, ToolCallDelta
from parley.tools.arguments import violation
from tests.fakes import FakeLLM, Recorder, tool_reply
from tests.wire import validate_ga

SCHEMA = {
    "type": "object",
    "properties": {
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer"},
    },
    "required": ["unit"],
}
TOOL = {"type": "function", "name": "forecast", "parameters": SCHEMA}
SETUP = {
    "type": "session.update",
    "session": {"type": "realtime", "output_modalities": ["text"], "tools": [TOOL]},
}
USER = {
    "type": "conversation.item.create",
    "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "forecast"}]},
}


def test_violations_are_described_for_the_model() -> None:
    assert violation(SCHEMA, '{"unit": "celsius", "days": 3}') is None
    assert (
        violation(SCHEMA, '{"unit": "kelvin"}')
        == "at 'unit': 'kelvin' is not one of ['celsius', 'fahrenheit']"
    )
    assert violation(SCHEMA, '{"days": "three"}') == (
        "'unit' is a required property; at 'days': 'three' is not of type 'integer'"
    )
    assert violation(SCHEMA, "[1, 2]") == "the arguments must be a JSON object, not list"
    assert violation(SCHEMA, '{"unit": ').startswith("the arguments are not valid JSON")
    assert violation({}, "") is None  # a tool without parameters takes no arguments


async def test_with_validation_off_arguments_stream_as_written() -> None:
    bad = '{"unit": "kelvin"}'
    llm = FakeLLM(replies=[tool_reply("forecast", bad)])
    rec = Recorder(llm=llm, settings=Settings(tool_argument_validation=False))
    await rec.session.start()
    await rec.send(SETUP)
    await rec.send(USER)
    await rec.send({"type": "response.create"})
    done = await rec.wait_for("response.done")
    assert done["response"]["status"] == "completed"
    args = next(e for e in rec.events if e["type"] == "response.function_call_arguments.done")
    assert args["arguments"] == bad
    assert len(llm.requests) == 1  # no correction was asked for
    for event in rec.events:
        validate_ga(event)
    await rec.session.close()


async def test_a_correction_reaches_the_same_call_item() -> None:
    first = [
        ToolCallDelta(0, call_id="call_f", name="forecast", arguments='{"unit": "K"}'),
        Finish("tool_calls"),
    ]
    llm = FakeLLM(replies=[first, tool_reply("forecast", '{"unit": "celsius"}', call_id="call_other")])
    rec = Recorder(llm=llm)
    await rec.session.start()
    await rec.send(SETUP)
    await rec.send(USER)
    await rec.send({"type": "response.create"})
    done = await rec.wait_for("response.done")
    [call] = done["response"]["output"]
    assert call["call_id"] == "call_f" and call["arguments"] == '{"unit": "celsius"}'
    assert call["status"] == "completed"
    correction = llm.requests[1]
    assert correction.tool_choice == "forecast" and correction.parallel_tool_calls is False
    assert (
        correction.messages[-1]["role"] == "tool"
        and "'K' is not one of" in correction.messages[-1]["content"]
    )
    await rec.session.close()
