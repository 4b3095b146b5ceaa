"""A real ``parley serve`` process and a scripted OpenAI-compatible LLM, shared by conformance tests.

The scripted LLM (``llm_thread`` and ``scripted``, from ``tests/conftest.py``) runs on its own event
loop in a thread, so one server process (started once per test session, engines warmed) serves
every test; each test starts with an empty script.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from openai import AsyncOpenAI

from tests.conftest import LLMThread
from tests.wire import validate_ga

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    host: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_base(self) -> str:
        return f"ws://{self.host}:{self.port}/v1"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(tmp: Path, env: dict[str, str], name: str = "server", port: int | None = None) -> Server:
    port = port or free_port()
    log_path = tmp / f"{name}.log"
    full_env = {**os.environ, "PARLEY_DATA_DIR": str(tmp / f"{name}-data"), **env}
    process = subprocess.Popen(
        [sys.executable, "-m", "parley", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=full_env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    server = Server("127.0.0.1", port, process, log_path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"parley serve exited with {process.returncode}:\n{server.log()}")
        try:
            with urllib.request.urlopen(f"{server.http_url}/readyz", timeout=2) as reply:
                if reply.status == 200:
                    return server
        except OSError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"parley serve did not become ready:\n{server.log()}")


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(5)


@pytest.fixture(scope="session")
def server(llm_thread: LLMThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("parley")
    env = {
        "PARLEY_LLM_BASE_URL": llm_thread.llm.base_url,
        "PARLEY_LLM_MODEL": "scripted-model",
        "PARLEY_WEBRTC_HOST_ADDRESSES": "127.0.0.1",  # WebRTC tests call over loopback
    }
    srv = start_server(tmp, env)
    yield srv
    stop_server(srv)


@pytest.fixture
def client(server: Server) -> AsyncOpenAI:
    return AsyncOpenAI(api_key="sk-test", base_url=f"{server.http_url}/v1", websocket_base_url=server.ws_base)


async def next_event(conn: Any, timeout: float = 30.0) -> dict[str, Any]:
    """The next server event as the raw dict, validated strictly against the GA models."""
    raw = await asyncio.wait_for(conn.recv_bytes(), timeout)
    event: dict[str, Any] = json.loads(raw)
    validate_ga(event)
    return event


async def collect_until(conn: Any, type_: str, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Every event up to and including the first of ``type_``, each validated strictly."""
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        event = await next_event(conn, max(0.1, deadline - time.monotonic()))
        events.append(event)
        if event["type"] == type_:
            return events


async def events_of(conn: Any, count: int) -> AsyncIterator[dict[str, Any]]:
    for _ in range(count):
        yield await next_event(conn)
