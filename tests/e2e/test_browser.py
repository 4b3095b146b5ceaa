"""The playground in a real browser: headless Chromium opens ``/``, its fake microphone speaks a
flite question, and the page's WebRTC call to a real ``parley serve`` (scripted LLM) is checked from
what the page itself saw. Then the playground's gating: off (404) unless dev mode or ``on``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer
from openai.types.realtime import ClientSecretCreateResponse
from yarl import URL

from parley.audio.wav import write_wav
from parley.config import Settings
from parley.server.admin_routes import STORE
from parley.server.app import create_app
from tests.browser import Chromium, Page, chromium_path
from tests.conformance.conftest import Server
from tests.fakes import fake_engines
from tests.scripted_llm import ScriptedLLM
from tests.speech import flite_speech, silence

pytestmark = pytest.mark.slow
log = logging.getLogger(__name__)

QUESTION = "What is the weather like in Paris tomorrow morning?"
QUESTION_WORDS = ("weather", "paris", "tomorrow", "morning")
"""pocketsphinx hears this sentence well through Chrome's audio processing (it can miss a word)."""
REPLY = "It is sunny and warm today."
LIMIT_S = 120.0
"""A safety net for a hung call, never a measurement."""
CALLING = "['connecting', 'connected'].includes(window.parley.state)"
RATE = 16000
CALL_EVENTS = (
    "session.created",
    "input_audio_buffer.speech_started",
    "input_audio_buffer.speech_stopped",
    "conversation.item.input_audio_transcription.completed",
    "response.created",
    "response.output_audio_transcript.delta",
    "response.done",
    "output_audio_buffer.started",
    "output_audio_buffer.stopped",
)


@pytest.fixture
def question_wav(tmp_path: Path) -> Path:
    """Silence while the call connects, the question, then silence for the server's VAD to end it."""
    path = tmp_path / "question.wav"
    write_wav(
        path, np.concatenate([silence(3000, RATE), flite_speech(QUESTION, RATE), silence(3000, RATE)]), RATE
    )
    return path


async def parley_state(page: Page) -> dict[str, Any]:
    state: dict[str, Any] | None = json.loads(await page.evaluate("JSON.stringify(window.parley ?? null)"))
    return state or {}


async def poll_state(page: Page, until: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
    """``window.parley`` once ``until`` holds, or as it is at the deadline (the asserts then say why)."""
    deadline = time.monotonic() + timeout
    while True:
        state = await parley_state(page)
        if (state and until(state)) or time.monotonic() > deadline:
            return state
        await asyncio.sleep(0.25)


def _turn_done(state: dict[str, Any]) -> bool:
    if state["state"] in ("error", "ended"):
        return True
    return all(t in state["events"] for t in CALL_EVENTS) and bool(state["latenciesMs"])


async def test_a_browser_call_through_the_playground(
    dev_server: Server, scripted: ScriptedLLM, question_wav: Path, tmp_path: Path
) -> None:
    chromium = chromium_path()
    if chromium is None:
        pytest.fail("Chromium is not installed, and the browser test needs it: run `make setup-test`.")
    scripted.script(REPLY)
    browser = Chromium(
        f"{dev_server.http_url}/", fake_audio=question_wav, profile=tmp_path / "profile", executable=chromium
    )
    async with browser as page:
        idle = await poll_state(page, lambda s: s.get("state") == "idle", 60)
        assert idle.get("state") == "idle", f"the page did not load: {idle} {page.console}"
        await page.evaluate("document.getElementById('mic').click()")
        state = await poll_state(page, _turn_done, LIMIT_S)
        rtp = await page.evaluate("window.parley.inboundRtp()")
        tools_note = await page.evaluate("document.getElementById('tools-note').textContent")
        await page.evaluate(f"{CALLING} && document.getElementById('mic').click()")
        ended = await poll_state(page, lambda s: s["state"] in ("ended", "error"), 30)
        console = page.console
    seen = f"state: {json.dumps(state)[:3000]}\nconsole: {console}\nserver log:\n{dev_server.log()[-3000:]}"

    assert state["state"] == "connected", seen
    assert str(state["callId"]).startswith("rtc_"), seen
    missing = [t for t in CALL_EVENTS if t not in state["events"]]
    assert not missing, f"events never seen: {missing}\n{seen}"
    assert state["events"][0] == "session.created", seen
    assert "response.output_audio.delta" not in state["events"], "WebRTC audio goes on the track"

    heard = " ".join(state["userTranscripts"]).lower()
    recognised = [word for word in QUESTION_WORDS if word in heard]
    assert len(recognised) >= 2, f"the server did not hear the question: {heard!r}\n{seen}"
    said = " ".join(state["assistantTranscripts"]).lower()
    assert "sunny and warm" in said, seen
    assert scripted.requests, "the scripted LLM was never asked"
    assert tools_note == "This session has no tools." and state["toolCalls"] == [], tools_note

    # The reply reached the browser as sound, as its own analyser and RTP statistics saw it.
    assert state["inboundAudioPeak"] > 0.05, seen
    assert rtp["packetsReceived"] > 0 and (rtp["totalAudioEnergy"] or 0) > 0, rtp
    assert state["latencySources"][0] == "analyser", seen
    assert state["latenciesMs"][0] > 0, seen
    log.info("browser latency, end of speech to first audio: %s ms", state["latenciesMs"])
    assert ended["state"] == "ended", ended


# ------------------------------------------------------------------------------------ HTTP only


async def test_the_page_and_its_files(dev_server: Server) -> None:
    async with aiohttp.ClientSession(dev_server.http_url) as http:
        for path, content_type, marker in (
            ("/", "text/html", 'id="mic"'),
            ("/playground/app.js", "text/javascript", "window.parley"),
            ("/playground/meter.js", "text/javascript", "AnalyserNode"),
            ("/playground/style.css", "text/css", "#mic"),
        ):
            async with http.get(path) as reply:
                assert reply.status == 200 and reply.content_type == content_type, path
                assert marker in await reply.text(), path
        for raw in (
            "/playground/..%2Fconfig.py",
            "/playground/%2e%2e%2f%2e%2e%2fpyproject.toml",
            "/playground/..%5cconfig.py",
            "/playground/__init__.py",
            "/playground/index.html%00.js",
            "/playground/../server/app.py",
        ):
            async with http.get(URL(f"{dev_server.http_url}{raw}", encoded=True)) as reply:
                body = await reply.text()
                assert reply.status == 404, raw
                assert "from __future__" not in body and "[project]" not in body, raw


async def test_the_dev_route_mints_a_secret(dev_server: Server) -> None:
    async with aiohttp.ClientSession(dev_server.http_url) as http:
        async with http.post(
            "/playground/client_secret", json={"instructions": "Be brief.", "voice": "cedar"}
        ) as r:
            assert r.status == 200, await r.text()
            minted = ClientSecretCreateResponse.model_validate(await r.json())
        async with http.post("/playground/client_secret", json={"voice": 5}) as bad:
            assert bad.status == 400 and (await bad.json())["error"]["param"] == "voice"
    assert minted.value.startswith("ek_")
    session = minted.session.model_dump()
    assert session["instructions"] == "Be brief."
    assert session["audio"]["output"]["voice"] == "cedar"
    assert session["audio"]["input"]["transcription"]["model"]


async def test_with_an_api_key_there_is_no_playground(keyed_server: Server) -> None:
    async with aiohttp.ClientSession(keyed_server.http_url) as http:
        for method, path in (
            ("GET", "/"),
            ("GET", "/playground/app.js"),
            ("POST", "/playground/client_secret"),
        ):
            async with http.request(method, path, json={} if method == "POST" else None) as reply:
                assert reply.status == 404, path
                error = (await reply.json())["error"]
                assert error["code"] == "playground_disabled" and "PARLEY_PLAYGROUND=on" in error["message"]


@pytest.fixture
async def app_client(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """In-process servers with fake engines, for the setting's every mode."""
    clients: list[TestClient[Any, Any]] = []

    async def start(**settings: Any) -> TestClient[Any, Any]:
        app = create_app(Settings(data_dir=tmp_path / f"data{len(clients)}", **settings), fake_engines())
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


@pytest.mark.parametrize(
    ("playground", "api_keys", "served"),
    [("auto", [], True), ("auto", ["sk-x"], False), ("on", ["sk-x"], True), ("off", [], False)],
)
async def test_the_setting_decides(
    app_client: Callable[..., Any], playground: str, api_keys: list[str], served: bool
) -> None:
    client = await app_client(playground=playground, api_keys=api_keys)
    page = await client.get("/")
    minted = await client.post("/playground/client_secret")
    assert (page.status, minted.status) == ((200, 200) if served else (404, 404))


async def test_auto_turns_off_once_the_database_has_a_key(app_client: Callable[..., Any]) -> None:
    client = await app_client(playground="auto", api_keys=[])
    assert (await client.get("/")).status == 200
    store = client.server.app[STORE]
    await store.run(store.keys.create, "ops")
    assert (await client.get("/")).status == 404
    assert (await client.post("/playground/client_secret")).status == 404
