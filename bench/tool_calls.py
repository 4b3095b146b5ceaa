"""What checking tool calls and running MCP tools add to a response.

Three measurements, each through Parley's session engine with fake speech engines and a language
model that answers at once (so only Parley's own work is timed):

- schema check: ``violation()`` on a booking tool's arguments (the validator is compiled once per
  schema and cached; the first call is shown apart);
- function call turn: ``response.create`` to ``response.done`` for a response with one call, with
  argument validation on and off (``PARLEY_TOOL_ARGUMENT_VALIDATION``);
- MCP call: a response whose model calls ``lookup_order`` on the real MCP server of the tests
  (``tests/mcp_server.py``, streamable HTTP on loopback): ``response.mcp_call.in_progress`` to
  ``.completed`` (the call's round trip inside Parley), and the whole two-step response.

    .venv/bin/python bench/tool_calls.py [-n 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tests.fakes import FakeLLM, Recorder, text_reply, tool_reply
from tests.mcp_server import McpTestServer

from common import header, ms, percentile, table
from parley.config import Settings
from parley.tools.arguments import violation

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "party_size": {"type": "integer", "minimum": 1, "maximum": 12},
        "time": {"type": "string", "pattern": "^[0-2][0-9]:[0-5][0-9]$"},
        "area": {"type": "string", "enum": ["inside", "terrace"]},
        "name": {"type": "string", "maxLength": 80},
    },
    "required": ["party_size", "time", "name"],
    "additionalProperties": False,
}
ARGUMENTS = '{"party_size": 4, "time": "19:30", "area": "terrace", "name": "Ada Lovelace"}'
TOOL = {"type": "function", "name": "book_table", "parameters": SCHEMA}
USER = {
    "type": "conversation.item.create",
    "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "book it"}]},
}


def row(label: str, values: list[float]) -> list[str]:
    return [label, str(len(values)), ms(percentile(values, 50)), ms(percentile(values, 95))]


def schema_check(n: int) -> list[list[str]]:
    started = time.perf_counter()
    violation(SCHEMA, ARGUMENTS)
    first = time.perf_counter() - started
    times = []
    for _ in range(n * 10):
        started = time.perf_counter()
        assert violation(SCHEMA, ARGUMENTS) is None
        times.append(time.perf_counter() - started)
    return [row("schema check, first call (compiles)", [first]), row("schema check, cached", times)]


async def session(llm: FakeLLM, tools: list[dict[str, Any]], validate: bool = True) -> Recorder:
    limits = {"requests_per_minute": 10**6, "tokens_per_minute": 10**9}
    rec = Recorder(llm=llm, settings=Settings(tool_argument_validation=validate, **limits))
    await rec.session.start()
    session_update = {"type": "realtime", "output_modalities": ["text"], "tools": tools}
    await rec.send({"type": "session.update", "session": session_update})
    await rec.send(USER)
    return rec


async def one_response(rec: Recorder) -> float:
    count = rec.types().count("response.done") + 1
    started = time.perf_counter()
    await rec.send({"type": "response.create"})
    await rec.wait_for("response.done", count)
    return time.perf_counter() - started


async def function_turns(n: int, validate: bool) -> list[float]:
    llm = FakeLLM(replies=[tool_reply("book_table", ARGUMENTS) for _ in range(n + 10)])
    rec = await session(llm, [TOOL], validate)
    times = [await one_response(rec) for _ in range(n + 10)][10:]
    await rec.session.close()
    return times


def mcp_tool(url: str) -> dict[str, Any]:
    return {"type": "mcp", "server_label": "orders", "server_url": url, "require_approval": "never"}


async def mcp_turns(n: int) -> tuple[list[float], list[float]]:
    calls: list[float] = []
    turns: list[float] = []
    async with McpTestServer() as server:
        tool = mcp_tool(server.url)
        replies = []
        for _ in range(n + 5):
            replies += [tool_reply("lookup_order", '{"order_id": "A100"}'), text_reply("It has shipped.")]
        rec = await session(FakeLLM(replies=replies), [tool])
        for index in range(n + 5):
            before = len(rec.events)
            turn = await one_response(rec)
            stamps = {e["type"]: e for e in rec.events[before:]}
            assert "response.mcp_call.completed" in stamps, json.dumps(rec.events[before:])[:500]
            if index >= 5:
                turns.append(turn)
        await rec.session.close()
    # The call alone: time the hook between in_progress and completed.
    async with McpTestServer() as server:
        tool = mcp_tool(server.url)
        rec = await session(FakeLLM(), [tool])
        specs = await rec.session.mcp.specs([tool], set())
        lookup = next(spec for spec in specs if spec.remote_name == "lookup_order")
        for index in range(n + 5):
            started = time.perf_counter()
            outcome = await rec.session.mcp.run(lookup, {"order_id": "A100"})
            assert outcome.error is None
            if index >= 5:
                calls.append(time.perf_counter() - started)
        await rec.session.close()
    return calls, turns


async def main(n: int) -> None:
    header("tool calls", f"{n} responses a case; fake speech engines, a language model that answers at once")
    rows = [["case", "n", "p50", "p95"], *schema_check(n)]
    on = await function_turns(n, validate=True)
    off = await function_turns(n, validate=False)
    rows += [
        row("function-call response, validation on", on),
        row("function-call response, validation off", off),
    ]
    calls, turns = await mcp_turns(n // 2)
    rows += [
        row("MCP call (session -> MCP server -> result)", calls),
        row("MCP response (call + answer)", turns),
    ]
    print(table(rows))
    added = percentile(on, 50) - percentile(off, 50)
    print(f"validation adds {ms(added)} at the median to a function-call response")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=200, help="responses per case")
    asyncio.run(main(parser.parse_args().n))
