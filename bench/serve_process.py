"""Shared pieces of the transport benchmarks (``webrtc.py``, ``sip.py``, ``telephony.py``).

Each runs a ``parley serve`` process of its own (``tests/conformance/conftest.py``'s ``start_server``:
real Silero VAD, pocketsphinx and espeak-ng) with the tests' scripted LLM, which answers at once,
pins that process to core 0 and itself to core 1, and prints turn latencies the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# The repository root (tests) on the path, for this module imported on its own too.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conformance.conftest import LLMThread, Server, start_server, stop_server

from common import header, percentile

LATENCY_COLUMNS = ["turns", "median ms", "p95 ms", "min ms", "max ms"]


@contextmanager
def pinned_server(name: str, reply: str, replies: int, env: dict[str, str]) -> Iterator[Server]:
    """``parley serve`` with ``env`` on top of the scripted LLM (``replies`` times ``reply``), its
    process pinned to core 0 and this one to core 1 where there are two cores or more."""
    llm = LLMThread()
    llm.llm.script(*([reply] * replies))
    try:
        full_env = {
            "PARLEY_LLM_BASE_URL": llm.llm.base_url,
            "PARLEY_LLM_MODEL": "scripted-model",
            **env,
            "PARLEY_LOG_LEVEL": "warning",
        }
        tmp = Path(tempfile.mkdtemp(prefix=f"parley-bench-{name}-"))
        server = start_server(tmp, full_env, name=f"{name}-bench")
        try:
            if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
                os.sched_setaffinity(server.process.pid, {0})
                os.sched_setaffinity(0, {1})
            yield server
        finally:
            stop_server(server)
    finally:
        llm.stop()


def latency_row(values: Sequence[float]) -> list[str]:
    """Cells under ``LATENCY_COLUMNS``: how many, then median, p95, min and max in whole ms."""
    stats = [percentile(values, 50), percentile(values, 95), min(values), max(values)]
    return [str(len(values)), *(f"{v * 1000:.0f}" for v in stats)]


def run(
    doc: str,
    title: str,
    details: str,
    bench: Callable[[argparse.Namespace], Coroutine[Any, Any, None]],
    window: bool = True,
) -> None:
    """Parse ``--turns``, ``--calls`` (and ``--window``), print the header, run ``bench``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--calls", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4, 8])
    if window:
        parser.add_argument("--window", type=float, default=10.0)
    args = parser.parse_args()
    header(title, details)
    asyncio.run(bench(args))
