"""A WebRTC call is ended (and freed) when its peer goes quiet, never connects, or closes its data
channel, without anybody hanging up: the server keeps no zombie calls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from tests.conformance.conftest import LLMThread, Server, start_server, stop_server
from tests.rtc_client import RtcClient

TIMEOUT_S = 2


@pytest.fixture(scope="module")
def quick_server(llm_thread: LLMThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {
        "PARLEY_LLM_BASE_URL": llm_thread.llm.base_url,
        "PARLEY_LLM_MODEL": "scripted-model",
        "PARLEY_WEBRTC_HOST_ADDRESSES": "127.0.0.1",
        "PARLEY_WEBRTC_MEDIA_TIMEOUT_S": str(TIMEOUT_S),
    }
    server = start_server(tmp_path_factory.mktemp("liveness"), env, name="liveness")
    yield server
    stop_server(server)


@pytest.fixture
async def rtc() -> AsyncIterator[RtcClient]:
    client = RtcClient()
    yield client
    await client.close()


async def _open(server: Server, rtc: RtcClient) -> str:
    offered = await rtc.connect(f"{server.http_url}/v1/realtime/calls", "sk-test")
    assert offered.status == 201, offered.body
    assert offered.location is not None
    return offered.location.rsplit("/", 1)[-1]


async def _wait_gone(server: Server, call_id: str, within_s: float = 30) -> None:
    """Until the call is no longer live (a sideband socket cannot attach: 404); fails after
    ``within_s``. Attaching and leaving does not change the call."""
    deadline = time.monotonic() + within_s
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.ws_connect(f"{server.ws_base}/realtime?call_id={call_id}"):
                    pass
            except aiohttp.WSServerHandshakeError as refused:
                if refused.status == 404:
                    return
                raise
            await asyncio.sleep(0.5)
    pytest.fail(f"call {call_id} is still live after {within_s} s:\n{server.log()[-3000:]}")


def _ended_for(server: Server, call_id: str) -> str:
    line = next(line for line in server.log().splitlines() if f"call {call_id} ended" in line)
    return line.rsplit("(", 1)[-1].rstrip(")")


async def test_a_call_whose_media_stops_is_ended(quick_server: Server, rtc: RtcClient) -> None:
    call_id = await _open(quick_server, rtc)
    assert (await rtc.next_event())["type"] == "session.created"
    rtc.pc.getSenders()[0].replaceTrack(None)  # the peer goes silent without a word
    await asyncio.wait_for(rtc.channel_closed.wait(), 30)
    await _wait_gone(quick_server, call_id)
    assert _ended_for(quick_server, call_id) == "media_timeout"


async def test_a_call_that_never_connects_is_ended(quick_server: Server, rtc: RtcClient) -> None:
    async with aiohttp.ClientSession() as http:
        reply = await http.post(
            f"{quick_server.http_url}/v1/realtime/calls",
            data=await rtc.offer(),
            headers={"Content-Type": "application/sdp"},
        )
        assert reply.status == 201
        call_id = reply.headers["Location"].rsplit("/", 1)[-1]
    # The answer is never applied: no ICE, no DTLS.
    await _wait_gone(quick_server, call_id)
    assert _ended_for(quick_server, call_id) == "connect_timeout"


async def test_closing_the_data_channel_ends_the_call(quick_server: Server, rtc: RtcClient) -> None:
    call_id = await _open(quick_server, rtc)
    assert (await rtc.next_event())["type"] == "session.created"
    rtc.channel.close()
    await _wait_gone(quick_server, call_id)
    assert _ended_for(quick_server, call_id) in {"data_channel_closed", "connection_closed"}


async def test_the_session_of_an_ended_call_is_recorded_as_ended(
    quick_server: Server, rtc: RtcClient
) -> None:
    call_id = await _open(quick_server, rtc)
    created = await rtc.next_event()
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{quick_server.http_url}/v1/realtime/calls/{call_id}/hangup") as reply:
            assert reply.status == 200
        await asyncio.wait_for(rtc.channel_closed.wait(), 30)
        session_id = created["session"]["id"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            async with http.get(f"{quick_server.http_url}/v1/parley/sessions/{session_id}") as reply:
                record = await reply.json()
            if reply.status == 200 and record.get("ended_at"):
                break
            await asyncio.sleep(0.5)
    assert record["transport"] == "webrtc" and record["end_reason"] == "hangup", record
