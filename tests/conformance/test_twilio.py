"""Phone calls through Twilio Media Streams, against a real server process: the TwiML webhook, and
calls from a simulator speaking Twilio's documented protocol (tests/twilio_sim.py): the greeting
first, the caller heard and answered in µ-law paced at real time with a mark after each reply,
barge-in (``clear``, the item cut at what was played, seen on a sideband socket), DTMF, ``stop``,
hangup, bad messages, and Twilio's request signatures. Calls run in real time (seconds each)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from collections.abc import AsyncIterator, Iterator
from xml.etree import ElementTree

import aiohttp
import numpy as np
import openai
import pytest
import websockets
from openai import AsyncOpenAI

from parley.server.telephony import twilio_signature
from tests.conformance.conftest import LLMThread, Server, collect_until, next_event, start_server, stop_server
from tests.conformance.helpers import types_of, words
from tests.scripted_llm import ScriptedLLM
from tests.speech import flite_speech
from tests.twilio_sim import RATE, Media, TwilioSim

GREETING = "Thank you for calling Acme. This call is recorded."
INSTRUCTIONS = "You are the order line of Acme."
QUESTION = "please check my order status"
LONG_REPLY = (
    "Here is the forecast for the whole week. Monday will be sunny and warm with a light breeze. "
    "Tuesday brings clouds in the morning and rain in the afternoon. Wednesday stays wet and cool. "
    "Thursday clears up again, and Friday should be the warmest day of all."
)
TOKEN = "twilio-test-auth-token"
VOICE = "/v1/telephony/twilio/voice"
STREAM = "/v1/telephony/twilio"


def sign(auth_token: str, url: str, params: dict[str, str] | None = None) -> str:
    """Twilio's documented algorithm, written here independently of the server's: the URL, then each
    POST parameter's name and value sorted by name, HMAC-SHA1 with the auth token, base64."""
    data = url + "".join(f"{name}{(params or {})[name]}" for name in sorted(params or {}))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def _rms(media: list[Media]) -> float:
    pcm = np.concatenate([m.pcm for m in media]).astype(np.float64) if media else np.zeros(1)
    return float(np.sqrt(np.mean(pcm**2)))


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


@pytest.fixture(scope="module")
def phone(llm_thread: LLMThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server in dev mode with a phone agent and a greeting."""
    env = {
        "PARLEY_LLM_BASE_URL": llm_thread.llm.base_url,
        "PARLEY_LLM_MODEL": "scripted-model",
        "PARLEY_PHONE_GREETING": GREETING,
        "PARLEY_PHONE_SESSION": f'{{"instructions": "{INSTRUCTIONS}"}}',
    }
    server = start_server(tmp_path_factory.mktemp("twilio"), env, name="twilio")
    yield server
    stop_server(server)


@pytest.fixture
def sdk(phone: Server) -> AsyncOpenAI:
    return AsyncOpenAI(api_key="sk-test", base_url=f"{phone.http_url}/v1", websocket_base_url=phone.ws_base)


@pytest.fixture
async def sim(phone: Server) -> AsyncIterator[TwilioSim]:
    async with TwilioSim(f"ws://{phone.host}:{phone.port}{STREAM}", call_sid=_sid("CA")) as peer:
        yield peer


async def _greeted(sim: TwilioSim) -> str:
    """Start the call and wait until its greeting has played; the greeting's mark."""
    await sim.start()
    mark = await sim.until("mark")
    await sim.until_echoed(mark.message["mark"]["name"])
    return str(mark.message["mark"]["name"])


async def test_the_voice_webhook_answers_twiml_that_connects_the_stream(phone: Server) -> None:
    form = {"CallSid": _sid("CA"), "AccountSid": _sid("AC"), "From": "+15550001111", "To": "+15550002222"}
    async with aiohttp.ClientSession() as http:
        reply = await http.post(f"{phone.http_url}{VOICE}", data=form)
        assert reply.status == 200 and reply.content_type == "text/xml"
        root = ElementTree.fromstring(await reply.text())
        proxied = await http.post(
            f"{phone.http_url}{VOICE}",
            data=form,
            headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "voice.example.com"},
        )
        behind_proxy = ElementTree.fromstring(await proxied.text())
    assert root.tag == "Response" and [child.tag for child in root] == ["Connect"]
    stream = root.find("./Connect/Stream")
    assert stream is not None and stream.get("url") == f"ws://{phone.host}:{phone.port}{STREAM}"
    parameters = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    assert parameters == form
    proxied_stream = behind_proxy.find("./Connect/Stream")
    assert proxied_stream is not None and proxied_stream.get("url") == f"wss://voice.example.com{STREAM}"


async def test_a_call_is_greeted_then_hears_the_caller_and_answers_in_real_time(
    phone: Server, scripted: ScriptedLLM, sim: TwilioSim
) -> None:
    scripted.script("Your order ships today.")
    greeting_mark = await _greeted(sim)
    greeting = sim.media[:]
    assert greeting_mark.startswith("resp_")
    assert len(greeting) > 50 and _rms(greeting) > 300  # over a second of speech, heard first
    assert not scripted.requests  # the greeting is said word for word, not asked of the model

    marks_before = len([r for r in sim.received if r.event == "mark"])
    since = len(sim.received)
    sim.say(flite_speech(QUESTION, RATE))  # then the line carries silence
    reply_mark = await sim.until("mark", since=since)
    await sim.until_echoed(reply_mark.message["mark"]["name"])
    assert sim.sent_until is not None
    reply = [m for m in sim.media if m.at > greeting[-1].at]

    # The scripted model got the phone agent's instructions, the greeting, then the caller's words.
    messages = scripted.requests[-1]["messages"]
    assert INSTRUCTIONS in messages[0]["content"]
    assert any(m["role"] == "assistant" and "acme" in words(str(m["content"])) for m in messages)
    assert "order" in words(messages[-1]["content"]) and messages[-1]["role"] == "user"

    # Nothing is sent while nobody speaks: no frames between the greeting and the reply.
    assert reply and all(m.at > sim.sent_until for m in reply)
    assert all(len(m.payload) == 160 for m in sim.media)  # 20 ms of µ-law per frame
    assert len(reply) > 25 and _rms(reply) > 300
    # Paced at real time, not drained at once (a loose rate check, not a latency assertion).
    elapsed = reply[-1].at - reply[0].at + 0.02
    assert len(reply) * 0.02 <= 1.5 * elapsed + 0.1, (len(reply), elapsed)
    # A mark follows the reply's audio, and only it: one more mark than before.
    mark_index = sim.received.index(reply_mark)
    assert all(r.event != "media" for r in sim.received[mark_index:])
    assert len([r for r in sim.received if r.event == "mark"]) == marks_before + 1


async def test_barge_in_clears_twilio_and_cuts_the_reply_at_what_was_played(
    phone: Server, sdk: AsyncOpenAI, scripted: ScriptedLLM, sim: TwilioSim
) -> None:
    scripted.script(LONG_REPLY, "Okay, I will stop.")
    await _greeted(sim)
    async with sdk.realtime.connect(call_id=f"twilio_{sim.call_sid}") as sideband:
        first_frame = len(sim.media)  # the greeting has played: what follows is the reply
        await sideband.response.create()
        started = await collect_until(sideband, "output_audio_buffer.started")
        response_id = started[-1]["response_id"]
        item_id = next(e for e in started if e["type"] == "response.output_item.added")["item"]["id"]
        await sim.until_media(first_frame + 100)  # two seconds of the reply have been sent
        sim.say(flite_speech("please stop talking about the weather", RATE))

        clear = await sim.until("clear")
        events = await collect_until(sideband, "conversation.item.truncated")
        kinds = types_of(events)
        assert "input_audio_buffer.speech_started" in kinds
        assert kinds.index("output_audio_buffer.cleared") < kinds.index("conversation.item.truncated")
        cleared = next(e for e in events if e["type"] == "output_audio_buffer.cleared")
        assert cleared["response_id"] == response_id
        truncated = events[-1]
        assert truncated["item_id"] == item_id and truncated["content_index"] == 0

        # While the caller's words were judged the reply paused: silent frames up to the clear ...
        before_clear = [m for m in sim.media[first_frame:] if m.at <= clear.at]
        assert not np.any(np.concatenate([m.pcm for m in before_clear[-5:]])), "paused before the clear"
        # ... and the item is cut where the caller stopped hearing it: at the pause.
        heard_ms = 20 * max(i + 1 for i, m in enumerate(before_clear) if np.any(m.pcm))
        assert abs(truncated["audio_end_ms"] - heard_ms) <= 100, (truncated["audio_end_ms"], heard_ms)
        assert "output_audio_buffer.stopped" not in kinds
        # Nothing more of the reply after the clear, while the caller is still talking.
        await asyncio.wait_for(sim.said.wait(), 30)
        assert sim.sent_until is not None and sim.sent_until > clear.at
        assert not sim.media_between(clear.at + 0.001, sim.sent_until)


async def test_keypad_digits_reach_the_sideband_as_dtmf_events(
    phone: Server, sdk: AsyncOpenAI, sim: TwilioSim
) -> None:
    await sim.start()
    await sim.until("media")  # the call is running (its greeting plays)
    async with sdk.realtime.connect(call_id=f"twilio_{sim.call_sid}") as sideband:
        await sim.dtmf("7")
        await sim.dtmf("#")
        first = (await collect_until(sideband, "input_audio_buffer.dtmf_event_received"))[-1]
        second = (await collect_until(sideband, "input_audio_buffer.dtmf_event_received"))[-1]
    assert (first["event"], second["event"]) == ("7", "#")
    assert isinstance(first["received_at"], int)


async def test_stop_ends_the_call_and_its_sideband(phone: Server, sdk: AsyncOpenAI, sim: TwilioSim) -> None:
    await sim.start()
    await sim.until("media")
    call_id = f"twilio_{sim.call_sid}"
    async with sdk.realtime.connect(call_id=call_id) as sideband:
        await sim.stop()
        await asyncio.wait_for(sim.closed.wait(), 30)  # the server closed the stream
        with pytest.raises(websockets.exceptions.ConnectionClosed):  # closed with the call
            while True:
                await next_event(sideband)
    with pytest.raises(openai.NotFoundError):
        await sdk.realtime.calls.hangup(call_id)

    # Metrics and the audit trail recorded it as a Twilio session, ended by 'stop'.
    async with aiohttp.ClientSession() as http:
        for _ in range(100):
            listed = await (await http.get(f"{phone.http_url}/v1/parley/sessions?limit=100")).json()
            stopped = [s for s in listed["data"] if s["transport"] == "twilio" and s["end_reason"] == "stop"]
            if stopped:
                break
            await asyncio.sleep(0.1)
        metrics = await (await http.get(f"{phone.http_url}/metrics")).text()
    assert stopped and stopped[0]["audio_in_seconds"] > 0 and stopped[0]["audio_out_seconds"] > 0
    assert 'parley_sessions_total{session_type="realtime",transport="twilio"}' in metrics


async def test_hangup_closes_the_stream(phone: Server, sdk: AsyncOpenAI, sim: TwilioSim) -> None:
    await sim.start()
    await sim.until("media")
    await sdk.realtime.calls.hangup(f"twilio_{sim.call_sid}")
    await asyncio.wait_for(sim.closed.wait(), 30)  # Twilio hangs up when its <Connect><Stream> ends


async def test_a_stream_that_goes_quiet_is_ended(phone: Server, sim: TwilioSim) -> None:
    """Twilio sends media every 20 ms, silence included: a silent socket is a dead one (20 s)."""
    await sim.start(microphone=False)
    await sim.until("media")
    await asyncio.wait_for(sim.closed.wait(), 90)
    assert f"call twilio_{sim.call_sid} ended (media_timeout)" in phone.log()


async def test_bad_messages_are_logged_and_the_call_goes_on(phone: Server, sim: TwilioSim) -> None:
    await sim.send_raw("this is not json")
    await sim.media_frame(b"\xff" * 160)  # media before start
    await sim.send({"event": "bogus"})
    await sim.start(microphone=False)
    await sim.send({"event": "media", "streamSid": sim.stream_sid, "media": {"payload": "!!not base64"}})
    await sim.send({"event": "dtmf", "streamSid": sim.stream_sid, "dtmf": {}})
    await sim.send({"event": "teleport", "streamSid": sim.stream_sid})
    await sim.send_raw("[1, 2, 3]")
    await sim.until("mark")  # the greeting played out: the call went on
    log = phone.log()
    assert "not JSON was ignored" in log
    assert "'media' before 'start' was ignored" in log
    assert "'bogus' before 'start' was ignored" in log
    call = f"call twilio_{sim.call_sid}"
    assert f"{call}: a malformed 'media' message was ignored" in log
    assert f"{call}: a malformed 'dtmf' message was ignored" in log
    assert f"{call}: unknown event 'teleport' ignored" in log
    assert "without an 'event' was ignored" in log


# -- signatures -------------------------------------------------------------------------------------


def test_the_signature_is_twilios_documented_algorithm() -> None:
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+14158675309",
        "Digits": "1234",
        "From": "+14158675309",
        "To": "+18005551212",
    }
    expected = sign("12345", url, params)
    assert expected == "RSOYDt4T1cUTdK1PDd93/VVr8B8="  # the example in Twilio's security docs
    assert twilio_signature("12345", url, params.items()) == expected
    assert twilio_signature("12345", url, {**params, "Digits": "9999"}.items()) != expected
    assert twilio_signature("12345", "wss://example.com/v1/telephony/twilio") == sign(
        "12345", "wss://example.com/v1/telephony/twilio"
    )


PUBLIC = "https://public.example.com/parley"
"""``PARLEY_PUBLIC_URL`` of the signed server: a proxy in front of it that strips ``/parley``."""


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """API keys and the Twilio auth token set: only requests Twilio signed get through."""
    env = {
        "PARLEY_TWILIO_AUTH_TOKEN": TOKEN,
        "PARLEY_API_KEYS": "sk-operator",
        "PARLEY_PUBLIC_URL": PUBLIC,
        "PARLEY_LLM": "echo",
    }
    server = start_server(tmp_path_factory.mktemp("twilio-signed"), env, name="twilio-signed")
    yield server
    stop_server(server)


async def test_with_an_auth_token_only_signed_requests_get_through(signed: Server) -> None:
    url = f"{signed.http_url}{VOICE}"
    public = f"{PUBLIC}{VOICE}"  # what Twilio is given, so what it signs
    form = {"CallSid": _sid("CA"), "From": "+15550001111", "To": "+15550002222"}
    async with aiohttp.ClientSession() as http:

        async def post(data: dict[str, str], signature: str | None) -> aiohttp.ClientResponse:
            headers = {"X-Twilio-Signature": signature} if signature is not None else {}
            return await http.post(url, data=data, headers=headers)

        unsigned = await post(form, None)
        assert unsigned.status == 403
        assert (await unsigned.json())["error"]["code"] == "invalid_signature"
        assert (await post(form, sign("wrong-token", public, form))).status == 403
        assert (await post({**form, "To": "+15559999999"}, sign(TOKEN, public, form))).status == 403
        assert (await post(form, sign(TOKEN, url, form))).status == 403  # not the URL Twilio was given
        good = await post(form, sign(TOKEN, public, form))
        assert good.status == 200
        stream_element = ElementTree.fromstring(await good.text()).find("./Connect/Stream")
        assert stream_element is not None
        assert stream_element.get("url") == f"wss://public.example.com/parley{STREAM}"
        with_port = sign(TOKEN, f"https://public.example.com:443/parley{VOICE}", form)
        assert (await post(form, with_port)).status == 200  # a proxy may add the default port

        stream = f"ws://{signed.host}:{signed.port}{STREAM}"
        signed_stream = f"wss://public.example.com/parley{STREAM}"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(stream)
        assert refused.value.status == 403
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await http.ws_connect(stream, headers={"X-Twilio-Signature": sign("wrong-token", signed_stream)})

    headers = {"X-Twilio-Signature": sign(TOKEN, signed_stream)}
    async with TwilioSim(stream, call_sid=_sid("CA"), headers=headers) as sim:
        await sim.start()
        operator = AsyncOpenAI(
            api_key="sk-operator", base_url=f"{signed.http_url}/v1", websocket_base_url=signed.ws_base
        )
        call_id = f"twilio_{sim.call_sid}"
        for _ in range(100):  # the call is registered once the server has read 'start'
            try:
                async with operator.realtime.connect(call_id=call_id) as sideband:
                    await sim.dtmf("3")
                    event = (await collect_until(sideband, "input_audio_buffer.dtmf_event_received"))[-1]
                    assert event["event"] == "3"
                    break
            except websockets.exceptions.InvalidStatus as not_yet:
                assert not_yet.response.status_code == 404
                await asyncio.sleep(0.1)
        else:
            pytest.fail("the signed stream's call never became attachable")
        await operator.realtime.calls.hangup(call_id)
        await asyncio.wait_for(sim.closed.wait(), 30)


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """API keys and no Twilio auth token."""
    env = {"PARLEY_API_KEYS": "sk-operator", "PARLEY_LLM": "echo"}
    server = start_server(tmp_path_factory.mktemp("twilio-keyed"), env, name="twilio-keyed")
    yield server
    stop_server(server)


async def test_with_api_keys_and_no_auth_token_twilio_is_refused(keyed: Server) -> None:
    async with aiohttp.ClientSession() as http:
        reply = await http.post(f"{keyed.http_url}{VOICE}", data={"CallSid": _sid("CA")})
        assert reply.status == 403
        error = (await reply.json())["error"]
        assert "PARLEY_TWILIO_AUTH_TOKEN" in error["message"] and error["code"] == "twilio_auth_token_missing"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"ws://{keyed.host}:{keyed.port}{STREAM}")
        assert refused.value.status == 403
