"""One incoming SIP call: it rings (webhook) until accepted or rejected, then carries a realtime
session over G.711 RTP until either side hangs up, it is referred elsewhere, or its media stops."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from typing import TYPE_CHECKING, Any, Literal

from parley import ids
from parley.audio.pcm import AudioFormat
from parley.logging_context import bind_session
from parley.protocol import server_events as ev
from parley.realtime.session import RealtimeSession
from parley.server.phone_agent import phone_session
from parley.transports.call_life import CallEnding, listed_live
from parley.transports.services import Services, SessionWatch
from parley.transports.sip import sdp
from parley.transports.sip.message import SipMessage, response, tag_of, uri_of
from parley.transports.sip.rtp import FRAME_SAMPLES, RtpSession
from parley.transports.sip.webhook import post_incoming_call

if TYPE_CHECKING:
    from parley.transports.sip.uas import SipServer

log = logging.getLogger("parley.sip")

RING_TIMEOUT_S = 60.0
"""An unanswered call (no accept or reject) is declined after this long."""
T1, T2 = 0.5, 4.0
"""RFC 3261 retransmission timers over UDP."""
MODEL = "gpt-realtime"

Decision = tuple[Literal["accept", "reject", "hangup"], Any]


class SipCall(CallEnding):
    def __init__(
        self, server: SipServer, invite: SipMessage, source: tuple[str, int], offer: sdp.Offer
    ) -> None:
        super().__init__()
        self.server = server
        self.settings = server.settings
        self.id = ids.rtc_call_id()
        self.key_id: str | None = None
        self.invite = invite
        self.source = source
        self.offer = offer
        self.payload_type, self.codec = offer.codec()
        self.format = AudioFormat(self.codec)
        self.local_tag = ids.new_id("", 10)
        self.state: Literal["ringing", "answered", "ended"] = "ringing"
        self.services = Services(metrics=server.metrics, live=server.live, store=server.store)
        self.session = RealtimeSession(
            settings=self.settings,
            engines=server.engines,
            emit=self._emit,
            model=MODEL,
            playback_rate=8000,
            on_expired=self._expired,
        )
        self.sinks: list[Any] = []
        self.rtp: RtpSession | None = None
        self._decision: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self._acked = asyncio.Event()
        self._last_response: SipMessage | None = None
        self._cseq = 0
        self._waiting: dict[int, asyncio.Future[SipMessage]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._bye: asyncio.Task[SipMessage | None] | None = None
        self._watch = SessionWatch(self.session, self.services, self.settings, transport="sip", model=MODEL)

    # -- LiveCall ---------------------------------------------------------------------------------

    async def run(self, session_update: dict[str, Any] | None = None) -> None:
        log.info("call %s from %s (%s), pid %d", self.id, self.invite.header("from"), self.codec, os.getpid())
        with listed_live(self.services, self.session, self.end), bind_session(self.session.id):
            try:
                kind, value = await self._ring()
                if kind == "accept":
                    await self._answer(value)
                    await self._ended.wait()
                elif kind == "reject":
                    self._reply(int(value), "Declined" if int(value) == 603 else "Rejected")
                    await self.end("rejected")
            except Exception:
                log.exception("call %s failed", self.id)
                if self.state == "ringing":
                    self._reply(500, "Server Internal Error")
                await self.end("server_error")
            finally:
                await self._close()

    async def end(self, reason: str) -> None:
        """Hang up (BYE once answered, 487 while ringing); idempotent."""
        if self._ended.is_set():
            return
        if self.state == "ringing" and not self._decision.done():
            self._decision.set_result(("hangup", reason))
        if self.state == "answered" and reason != "caller_hung_up":
            self._bye = asyncio.get_running_loop().create_task(self._request("BYE"))
        self.state = "ended"
        self._end(reason)

    # -- call control (the HTTP routes) -----------------------------------------------------------

    def accept(self, session: dict[str, Any] | None) -> None:
        if self._decision.done():
            raise RuntimeError("This call was already answered, rejected or ended.")
        self._decision.set_result(("accept", session))

    def reject(self, status: int) -> None:
        if self._decision.done():
            raise RuntimeError("This call was already answered, rejected or ended.")
        self._decision.set_result(("reject", status))

    async def refer(self, target: str) -> int:
        """Ask the caller to call ``target`` instead (SIP REFER); the SIP status it answered."""
        if self.state != "answered":
            raise RuntimeError("Only an answered call can be referred.")
        referred_by = f"<{uri_of(self.invite.header('to'))}>"
        reply = await self._request("REFER", [("Refer-To", f"<{target}>"), ("Referred-By", referred_by)])
        return reply.status if reply is not None else 408

    # -- ringing and answering --------------------------------------------------------------------

    async def _ring(self) -> Decision:
        self._reply(180, "Ringing")
        url = self.settings.sip_webhook_url
        if not url:
            return ("accept", None)
        headers = [(k, v) for k, v in self.invite.headers if k.lower() not in ("via", "content-length")]
        posted = await post_incoming_call(url, self.settings.sip_webhook_secret, self.id, headers)
        if not posted and not self._decision.done():
            return ("reject", 480)
        try:
            async with asyncio.timeout(RING_TIMEOUT_S):
                return await self._decision
        except TimeoutError:
            return ("reject", 480)

    async def _answer(self, session: dict[str, Any] | None) -> None:
        loop = asyncio.get_running_loop()
        _, rtp = await loop.create_datagram_endpoint(
            lambda: RtpSession(
                self.payload_type,
                self.offer.dtmf_payload_type,
                0xFF if self.codec == "audio/pcmu" else 0xD5,
                self.session.append_audio,
                self.session.dtmf,
            ),
            local_addr=(self.server.bind_host, 0),
        )
        self.rtp = rtp
        rtp.remote = (self.offer.address, self.offer.port)
        address = self.server.local_address_for(self.source[0])
        body = sdp.answer(address, rtp.port, self.payload_type, self.codec, self.offer.dtmf_payload_type)
        extra = [
            ("Contact", f"<sip:parley@{address}:{self.server.port}>"),
            ("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS, REFER, NOTIFY, INFO"),
            ("Content-Type", "application/sdp"),
        ]
        self.state = "answered"
        self._reply(200, "OK", extra, body.encode())
        self._spawn(self._retransmit_ok())
        await self.session.start(phone_session(self.settings, self.codec, session))
        if self.settings.phone_greeting:
            await self.session.say(self.settings.phone_greeting)
        self._spawn(rtp.deliver())
        self._spawn(rtp.send(self._next_frame))
        self._spawn(self._watch_media())

    def _next_frame(self) -> bytes:
        assert self.session.playback is not None
        return self.format.encode(self.session.playback.read(FRAME_SAMPLES))

    async def _retransmit_ok(self) -> None:
        interval = T1
        for _ in range(7):  # about 32 s, then the call is ended for want of an ACK
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._acked.wait()
                    return
            if self._last_response is not None:
                self.server.send(self._last_response, self.source)
            interval = min(interval * 2, T2)
        await self.end("no_ack")

    async def _watch_media(self) -> None:
        timeout = self.settings.sip_media_timeout_s
        started = time.monotonic()
        while not self._ended.is_set():
            await asyncio.sleep(1.0)
            last = (self.rtp.last_packet_at if self.rtp else None) or started
            if time.monotonic() - last > timeout:
                await self.end("media_timeout")

    # -- SIP messages in --------------------------------------------------------------------------

    def on_request(self, message: SipMessage) -> None:
        method = message.method
        if method == "INVITE" and tag_of(message.header("to")) is None:
            if self._last_response is not None:  # a retransmission of the INVITE
                self.server.send(self._last_response, self.source)
        elif method == "ACK":
            self._acked.set()
        elif method == "BYE":
            self.server.send(response(message, 200, "OK", to_tag=self.local_tag), self.source)
            self._spawn(self.end("caller_hung_up"))
        elif method == "CANCEL" and self.state == "ringing":
            self.server.send(response(message, 200, "OK", to_tag=self.local_tag), self.source)
            self._reply(487, "Request Terminated")
            self._spawn(self.end("caller_cancelled"))
        elif method == "NOTIFY":
            self.server.send(response(message, 200, "OK", to_tag=self.local_tag), self.source)
            if b"SIP/2.0 200" in message.body:  # the transfer went through: leave the call
                self._spawn(self.end("transferred"))
        elif method == "INFO" and b"Signal=" in message.body:
            self.server.send(response(message, 200, "OK", to_tag=self.local_tag), self.source)
            digit = message.body.split(b"Signal=", 1)[1].split()[0].decode(errors="replace")[:1]
            self._spawn(self.session.dtmf(digit))
        else:  # in-dialog OPTIONS, re-INVITE (hold...), UPDATE: acknowledge, keep the media as is
            extra, body = [], b""
            if method == "INVITE" and self._last_response is not None:
                extra, body = [("Content-Type", "application/sdp")], self._last_response.body
            self.server.send(
                response(message, 200, "OK", to_tag=self.local_tag, extra=extra, body=body), self.source
            )

    def on_response(self, message: SipMessage) -> None:
        waiting = self._waiting.get(message.cseq[0])
        if waiting is not None and not waiting.done() and message.status >= 200:
            waiting.set_result(message)

    # -- SIP messages out -------------------------------------------------------------------------

    def _reply(
        self, status: int, reason: str, extra: list[tuple[str, str]] | None = None, body: bytes = b""
    ) -> None:
        message = response(self.invite, status, reason, to_tag=self.local_tag, extra=extra, body=body)
        if status >= 200:
            self._last_response = message
        self.server.send(message, self.source)

    async def _request(self, method: str, extra: list[tuple[str, str]] | None = None) -> SipMessage | None:
        """Send an in-dialog request; its final response, or None after 32 s of retransmissions."""
        self._cseq += 1
        cseq = self._cseq
        local = self.invite.header("to") or ""
        target = uri_of(self.invite.header("contact")) or uri_of(self.invite.header("from"))
        address = self.server.local_address_for(self.source[0])
        headers = [
            ("Via", f"SIP/2.0/UDP {address}:{self.server.port};branch=z9hG4bK{ids.new_id('', 12)};rport"),
            ("Max-Forwards", "70"),
            ("From", local if tag_of(local) else f"{local};tag={self.local_tag}"),
            ("To", self.invite.header("from") or ""),
            ("Call-ID", self.invite.call_id),
            ("CSeq", f"{cseq} {method}"),
            ("Contact", f"<sip:parley@{address}:{self.server.port}>"),
            *(extra or []),
        ]
        request = SipMessage(f"{method} {target} SIP/2.0", headers)
        answered: asyncio.Future[SipMessage] = asyncio.get_running_loop().create_future()
        self._waiting[cseq] = answered
        interval = T1
        try:
            for _ in range(7):
                self.server.send(request, self.source)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(interval):
                        return await asyncio.shield(answered)
                interval = min(interval * 2, T2)
            return None
        finally:
            self._waiting.pop(cseq, None)

    # -- events and the end -----------------------------------------------------------------------

    async def _emit(self, event: ev.Event) -> None:
        if event["type"] == "error":
            log.warning("call %s: %s", self.id, event["error"]["message"])
        if self.sinks:
            text = json.dumps(event, separators=(",", ":"))
            for sink in list(self.sinks):
                sink(text)

    async def _expired(self) -> None:
        await self.end("session_expired")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _close(self) -> None:
        log.info("call %s ended (%s)", self.id, self.end_reason)
        await self.session.close()
        if self._bye is not None:  # let the caller answer the BYE (it is retransmitted meanwhile)
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                async with asyncio.timeout(3):
                    await self._bye
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.rtp is not None:
            self.rtp.close()
        self.server.forget(self)
        await self._watch.close(self.end_reason)
