"""The SIP pieces on their own: messages, SDP offer/answer, RTP reordering and telephone events, the
webhook signature."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac

import pytest

from parley.transports.sip import sdp
from parley.transports.sip.message import parse, response, tag_of, uri_of
from parley.transports.sip.rtp import RtpSession, build_rtp, parse_rtp
from parley.transports.sip.webhook import incoming_call_event, sign

INVITE = (
    b"INVITE sip:agent@10.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK1\r\n"
    b"v: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bK0\r\n"
    b'f: "Ann" <sip:ann@10.0.0.2>;tag=abc\r\n'
    b"To: <sip:agent@10.0.0.1>\r\n"
    b"i: call-1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:ann@10.0.0.2:5060>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 131\r\n\r\n"
    b"v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
)


def test_a_request_parses_with_compact_headers_and_a_response_mirrors_it() -> None:
    invite = parse(INVITE)
    assert invite.is_request and invite.method == "INVITE" and invite.call_id == "call-1"
    assert invite.branch == "z9hG4bK1" and len(invite.all("via")) == 2
    assert (
        tag_of(invite.header("from")) == "abc" and uri_of(invite.header("contact")) == "sip:ann@10.0.0.2:5060"
    )
    ok = parse(response(invite, 200, "OK", to_tag="xyz", body=b"hello").encode())
    assert ok.status == 200 and ok.cseq == (1, "INVITE") and ok.method == "INVITE"
    assert ok.all("via") == invite.all("via") and tag_of(ok.header("to")) == "xyz"
    assert ok.body == b"hello"


def test_the_offer_picks_the_callers_first_g711_and_the_answer_names_it() -> None:
    offer = sdp.parse_offer(parse(INVITE).body.decode())
    assert (offer.address, offer.port) == ("10.0.0.2", 4000)
    assert offer.codec() == (8, "audio/pcma") and offer.dtmf_payload_type == 101
    text = sdp.answer("10.0.0.1", 5000, 8, "audio/pcma", 101)
    assert "m=audio 5000 RTP/AVP 8 101" in text and "a=rtpmap:8 PCMA/8000" in text
    with pytest.raises(sdp.SdpError):
        sdp.parse_offer("v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 9\r\n").codec()
    with pytest.raises(sdp.SdpError):
        sdp.parse_offer("v=0\r\nc=IN IP4 1.2.3.4\r\nm=video 4000 RTP/AVP 96\r\n")


async def test_rtp_is_put_back_in_order_and_a_lost_packet_becomes_silence() -> None:
    audio: list[bytes] = []
    digits: list[str] = []

    async def on_audio(payload: bytes) -> None:
        audio.append(payload)

    async def on_digit(digit: str) -> None:
        digits.append(digit)

    rtp = RtpSession(0, 101, 0xFF, on_audio, on_digit)
    task = asyncio.ensure_future(rtp.deliver())

    def packet(seq: int, payload: bytes, pt: int = 0, ts: int = 0) -> None:
        rtp.datagram_received(build_rtp(pt, seq, ts or seq * 160, 7, payload, False), ("1.2.3.4", 4000))

    packet(10, b"a")
    packet(12, b"c")  # 11 is late
    packet(11, b"b")
    packet(14, b"e")  # 13 never comes
    for seq in (15, 16, 17):
        packet(seq, bytes([seq]))
    for _ in range(3):  # one key press: three packets with one timestamp (the end bit repeated)
        packet(40, bytes([11, 0x80, 0, 160]), pt=101, ts=9999)
    await asyncio.sleep(0.01)
    task.cancel()
    assert audio[:5] == [b"a", b"b", b"c", b"\xff" * 160, b"e"]
    assert digits == ["#"]
    parsed = parse_rtp(build_rtp(8, 65535, 1, 2, b"xy", True))
    assert parsed is not None and parsed.marker and parsed.sequence == 65535 and parsed.payload == b"xy"


def test_the_webhook_is_signed_the_standard_webhooks_way() -> None:
    key = b"0123456789abcdef0123456789abcdef"
    secret = "whsec_" + base64.b64encode(key).decode()
    signature = sign(secret, "evt_1", 1700000000, b'{"a":1}')
    expected = base64.b64encode(hmac.new(key, b'evt_1.1700000000.{"a":1}', hashlib.sha256).digest())
    assert signature == "v1," + expected.decode()
    event = incoming_call_event("rtc_1", [("From", "<sip:ann@x>")])
    assert event["type"] == "realtime.call.incoming"
    assert event["data"] == {"call_id": "rtc_1", "sip_headers": [{"name": "From", "value": "<sip:ann@x>"}]}
