"""Running Parley as a service, end to end against real `parley serve` processes on SQLite and on
a real PostgreSQL: database API keys and their limits, the audit trail (redacted), reading and
deleting it from the CLI and over REST, and nothing lost when the server stops."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conformance.conftest import ROOT, LLMThread, Server, free_port, start_server, stop_server
from tests.scripted_llm import ScriptedLLM

pytest_plugins = ("tests.postgres",)

SECRET_TEXT = "Email me at jane.doe@example.com and charge card 4111 1111 1111 1111 please."


class Ops:
    """A server with its database, and the `parley` CLI on the same database."""

    def __init__(self, server: Server, env: dict[str, str]) -> None:
        self.server = server
        self.env = env

    def cli(self, *args: str) -> tuple[int, str]:
        result = subprocess.run(
            [sys.executable, "-m", "parley", *args],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
        return result.returncode, result.stdout + result.stderr

    def create_key(self, name: str, *limits: str) -> tuple[str, str]:
        """(key id, plaintext key)."""
        code, out = self.cli("keys", "create", "--name", name, *limits)
        assert code == 0, out
        key_id = out.split("Created API key ", 1)[1].split(" ", 1)[0]
        return key_id, out.strip().splitlines()[-1]

    def open(self, key: str | None = None) -> connect:
        headers = {"Authorization": f"Bearer {key}"} if key else None
        return connect(
            f"{self.server.ws_base}/realtime?model=gpt-realtime", additional_headers=headers, proxy=None
        )

    def http(self, method: str, path: str, key: str) -> tuple[int, Any]:
        request = urllib.request.Request(
            f"{self.server.http_url}{path}", method=method, headers={"Authorization": f"Bearer {key}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                body = reply.read()
                return reply.status, json.loads(body) if body else None
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")


@pytest.fixture(params=["sqlite", "postgresql"])
def ops(
    request: pytest.FixtureRequest, llm_thread: LLMThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Ops]:
    tmp = tmp_path_factory.mktemp(f"parley-ops-{request.param}")
    url = (
        f"sqlite:///{tmp / 'parley.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    env = {
        "PARLEY_DATABASE_URL": url,
        "PARLEY_REDACT": "true",
        "PARLEY_SHUTDOWN_GRACE_S": "0",
        "PARLEY_LLM_BASE_URL": llm_thread.llm.base_url,
        "PARLEY_LLM_MODEL": "scripted-model",
    }
    server = start_server(tmp, env, name="ops")
    yield Ops(server, env)
    stop_server(server)


def _read(request: urllib.request.Request) -> bytes:
    with urllib.request.urlopen(request, timeout=30) as reply:
        body: bytes = reply.read()
        return body


async def _until(ws: ClientConnection, type_: str) -> dict[str, Any]:
    while True:
        event: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 60))
        if event["type"] == type_:
            return event


async def _text_turn(ws: ClientConnection, text: str) -> str:
    """A text turn; the session id."""
    session_id = str((await _until(ws, "session.created"))["session"]["id"])
    await ws.send(
        json.dumps({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}})
    )
    await _until(ws, "session.updated")
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
    await ws.send(json.dumps({"type": "response.create"}))
    await _until(ws, "response.done")
    return session_id


async def _refused(ops: Ops, key: str | None) -> tuple[int, str]:
    with pytest.raises(InvalidStatus) as refused:
        async with ops.open(key):
            pass
    response = refused.value.response
    return response.status_code, json.loads(response.body or b"{}")["error"]["code"]


async def test_keys_limits_audit_trail_and_deletion(ops: Ops, scripted: ScriptedLLM) -> None:
    async with ops.open() as ws:  # no key anywhere yet: dev mode
        await _until(ws, "session.created")
    support_id, support = ops.create_key("support", "--max-concurrent-sessions", "1")
    _, other = ops.create_key("other")
    assert await _refused(ops, None) == (401, "missing_api_key")
    assert await _refused(ops, "sk-parley-wrong") == (401, "invalid_api_key")

    scripted.script("Done, I will email you.")
    async with ops.open(support) as ws:
        assert await _refused(ops, support) == (429, "too_many_sessions")
        async with ops.open(other) as second:  # another key has its own count
            await _until(second, "session.created")
        session_id = await _text_turn(ws, SECRET_TEXT)

    # The CLI shows the session, redacted, under the key that made it.
    code, out = ops.cli("sessions", "list")
    assert code == 0 and session_id in out, out
    for _ in range(50):  # the recorder writes its last batch as the session closes
        code, out = ops.cli("sessions", "show", session_id)
        if "Done, I will email you." in out:
            break
        await asyncio.sleep(0.2)
    detail = json.loads(out)
    stored = json.dumps(detail)
    assert detail["key_id"] == support_id
    assert "jane.doe@example.com" not in stored and "4111" not in stored
    assert "[email]" in stored and "[card]" in stored and "Done, I will email you." in stored

    # REST: a key sees only its own sessions, and can delete them.
    status, listing = ops.http("GET", "/v1/parley/sessions", other)
    assert status == 200 and session_id not in [s["id"] for s in listing["data"]]
    assert ops.http("GET", f"/v1/parley/sessions/{session_id}", other)[0] == 404
    status, own = ops.http("GET", f"/v1/parley/sessions/{session_id}", support)
    assert status == 200 and own["id"] == session_id
    assert ops.http("GET", "/v1/parley/sessions", "sk-parley-wrong")[0] == 401
    assert ops.http("DELETE", f"/v1/parley/sessions/{session_id}", support)[0] in (200, 204)
    code, out = ops.cli("sessions", "show", session_id)
    assert code == 1 and session_id in out

    # A revoked key is refused at once.
    code, out = ops.cli("keys", "revoke", "support")
    assert code == 0, out
    assert await _refused(ops, support) == (401, "invalid_api_key")


async def test_session_length_and_daily_minutes_per_key(ops: Ops) -> None:
    _, short = ops.create_key("short", "--max-session-minutes", "0.02")  # 1.2 s
    async with ops.open(short) as ws:
        error = await _until(ws, "error")
        assert error["error"]["code"] == "session_expired"
        with pytest.raises(ConnectionClosed):
            await _until(ws, "never")
    _, daily = ops.create_key("daily", "--session-minutes-per-day", "0.01")  # 0.6 s a day
    async with ops.open(daily) as ws:
        await _until(ws, "session.created")
        await asyncio.sleep(1.0)  # longer than the key's minutes for the day
    for _ in range(50):  # once the closed session is recorded, the day's minutes are used up
        try:
            async with ops.open(daily):
                await asyncio.sleep(0.2)
        except InvalidStatus as refused:
            assert refused.response.status_code == 429
            assert json.loads(refused.response.body or b"{}")["error"]["code"] == "quota_exceeded"
            break
    else:
        pytest.fail("the key's daily minutes were never enforced")


async def test_nothing_said_is_lost_when_the_server_stops(ops: Ops, scripted: ScriptedLLM) -> None:
    scripted.script("Noted.")
    async with ops.open() as ws:
        session_id = await _text_turn(ws, "Remember that my order is B-2231.")
        ops.server.process.send_signal(signal.SIGTERM)
        error = await _until(ws, "error")
        assert error["error"]["code"] == "server_shutting_down"
    assert ops.server.process.wait(30) == 0
    code, out = ops.cli("sessions", "show", session_id)
    assert code == 0, out
    assert "B-2231" in out and "Noted." in out


def test_the_data_dir_holds_the_default_database(tmp_path: Path) -> None:
    env = {"PARLEY_DATA_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "parley", "keys", "list"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0 and "No API keys" in result.stdout
    assert (tmp_path / "parley.db").exists()


async def test_two_workers_share_one_port_and_their_secrets(
    llm_thread: LLMThread, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tmp = tmp_path_factory.mktemp("parley-workers")
    port = free_port()
    env = {
        "PARLEY_WORKERS": "2",
        "PARLEY_PORT": str(port),
        "PARLEY_DATA_DIR": str(tmp / "data"),
        "PARLEY_LLM_BASE_URL": llm_thread.llm.base_url,
    }
    server = start_server(tmp, env, name="workers", port=port)
    try:
        for _ in range(600):  # /readyz answers once one worker is up: wait for both
            if server.log().count(" listening on ") >= 2:
                break
            await asyncio.sleep(0.2)
        request = urllib.request.Request(
            f"{server.http_url}/v1/realtime/client_secrets",
            data=json.dumps({"session": {"type": "realtime", "instructions": "From the secret."}}).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": "Bearer sk-dev"},
        )
        secret = json.loads(await asyncio.to_thread(_read, request))["value"]
        for _ in range(16):  # new connections land on either worker
            headers = {"Authorization": f"Bearer {secret}"}
            async with connect(
                f"{server.ws_base}/realtime?model=gpt-realtime", additional_headers=headers, proxy=None
            ) as ws:
                created = await _until(ws, "session.created")
                assert created["session"]["instructions"] == "From the secret."
        log = server.log()
        minted_by = log.split("minted (expires in 600 s, pid ", 1)[1].split(")", 1)[0]
        opened_by = {
            line.rsplit("pid ", 1)[1].rstrip(")") for line in log.splitlines() if " opened (model " in line
        }
        assert len(opened_by) == 2, log  # both workers served sessions with the one secret
        assert opened_by - {minted_by}, log  # ...including one that did not mint it
    finally:
        stop_server(server)


async def test_a_keys_concurrency_limit_holds_across_servers(ops: Ops) -> None:
    """Two servers on one database (two nodes behind a load balancer): a key allowed one session
    gets one in all, and gets it back as soon as that session ends."""
    tmp = ops.server.log_path.parent
    other = start_server(tmp, ops.env, name="ops-second-node")
    try:
        _, key = ops.create_key("one-at-a-time", "--max-concurrent-sessions", "1")
        headers = {"Authorization": f"Bearer {key}"}
        second_url = f"{other.ws_base}/realtime?model=gpt-realtime"
        async with ops.open(key) as ws:
            session_id = str((await _until(ws, "session.created"))["session"]["id"])
            for _ in range(100):  # the first node records its session within a moment
                if session_id in ops.cli("sessions", "list")[1]:
                    break
                await asyncio.sleep(0.1)
            with pytest.raises(InvalidStatus) as refused:
                async with connect(second_url, additional_headers=headers, proxy=None):
                    pass
            body = json.loads(refused.value.response.body or b"{}")
            assert refused.value.response.status_code == 429
            assert body["error"]["code"] == "too_many_sessions"
            assert "1 of them on other server processes" in body["error"]["message"]
        for _ in range(100):  # ended: the second node lets the key in once the end is recorded
            try:
                async with connect(second_url, additional_headers=headers, proxy=None) as ws:
                    await _until(ws, "session.created")
                break
            except InvalidStatus:
                await asyncio.sleep(0.1)
        else:
            raise AssertionError("the second node still refuses the key after its session ended")
        # a node's own session that just ended counts for nothing there, recorded or not
        async with connect(second_url, additional_headers=headers, proxy=None) as ws:
            await _until(ws, "session.created")
    finally:
        stop_server(other)
