"""MCP tool call round trip on loopback: ``McpConnection`` against the real MCP server of the tests.

The server is ``tests/mcp_server.py``: the official SDK's ``MCPServer`` over streamable HTTP, served by
uvicorn on a free ``127.0.0.1`` port from a thread of this process with its own event loop. Measured:

- connect: ``McpConnection.start()``, i.e. TCP connect, protocol negotiation and ``tools/list``, each
  time on a fresh connection (the process's first one, still cold, is shown apart);
- call: ``call_tool("lookup_order", ...)`` after a warm-up, one at a time on one connection, from the
  caller's ``await`` to its result; the CPU column is the whole process's (client and server threads);
- for comparison, the same calls through the SDK's ``mcp.Client`` directly, without the hand-off to
  the task that owns the connection (see ``src/parley/tools/mcp.py``).

    .venv/bin/python bench/mcp_call.py [-n 200] [--warmup 20] [--connects 20]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

# Run as a script: the benchmarks (common) and the repository root (tests) on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tests.mcp_server import McpTestServer

from common import counted_parser, header, ms, percentile, run_and_report, table
from parley.tools.mcp import McpConnection

ARGUMENTS = {"order_id": "A100"}


@dataclass
class Series:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    async def measure(self, step: Callable[[], Awaitable[object]]) -> None:
        at, cpu = time.perf_counter(), time.process_time()
        await step()
        self.wall.append(time.perf_counter() - at)
        self.cpu.append(time.process_time() - cpu)

    def row(self, name: str) -> list[str]:
        w, c = self.wall, self.cpu
        stats = [percentile(w, 50), percentile(w, 95), percentile(w, 99), max(w)]
        return [name, str(len(w)), *map(ms, stats), ms(percentile(c, 50))]


@dataclass
class Results:
    first_connect: float = 0.0
    tools: int = 0
    connect: Series = field(default_factory=Series)
    call: Series = field(default_factory=Series)
    sdk_call: Series = field(default_factory=Series)


async def bench(args: argparse.Namespace) -> Results:
    results = Results()
    async with McpTestServer() as server:
        started = time.perf_counter()
        connection = McpConnection("orders", server.url)
        results.tools = len(await connection.start())
        results.first_connect = time.perf_counter() - started
        await connection.close()

        for _ in range(args.connects):
            connection = McpConnection("orders", server.url)
            await results.connect.measure(connection.start)
            await connection.close()

        connection = McpConnection("orders", server.url)
        await connection.start()
        for index in range(args.warmup + args.iterations):
            series = results.call if index >= args.warmup else Series()
            await series.measure(lambda: connection.call_tool("lookup_order", ARGUMENTS))
        await connection.close()

        from mcp import Client

        async with Client(server.url, cache=None) as client:
            await client.list_tools()
            for index in range(args.warmup + args.iterations):
                series = results.sdk_call if index >= args.warmup else Series()
                await series.measure(lambda: client.call_tool("lookup_order", ARGUMENTS))
    return results


def report(results: Results, args: argparse.Namespace) -> None:
    header(
        "MCP tool call round trip: McpConnection -> MCPServer over streamable HTTP (loopback)",
        f"calls: {args.iterations} measured after {args.warmup} warm-up, one at a time | "
        f"connects: {args.connects} | server: uvicorn in a thread of this process",
    )
    rows = [["(ms)", "n", "p50", "p95", "p99", "max", "cpu p50"]]
    rows.append(results.connect.row(f"connect + initialize + list {results.tools} tools"))
    rows.append(results.call.row("call_tool lookup_order (McpConnection)"))
    rows.append(results.sdk_call.row("call_tool lookup_order (mcp.Client directly)"))
    print(table(rows))
    print(f"the process's first connect (cold): {ms(results.first_connect)} ms")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = counted_parser(__doc__, "iterations", "calls", 200, 20, "calls first made and not measured")
    parser.add_argument("--connects", type=int, default=20, help="measured fresh connections (default 20)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    run_and_report(bench, report, parse_args(argv))


if __name__ == "__main__":
    main()
