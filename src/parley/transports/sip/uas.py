"""The SIP user agent server: one UDP socket on ``PARLEY_SIP_PORT`` that takes calls.

INVITE (with an SDP offer of PCMU or PCMA, and telephone-event) gets 100 Trying at once, then the
call rings (180) until it is accepted, rejected or cancelled; in-dialog requests and responses go to
their call by Call-ID. Callers must come from ``PARLEY_SIP_ALLOWED_NETWORKS`` (any address in dev
mode), since SIP over UDP has no API key.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from typing import cast

from parley.config import Settings
from parley.engines.registry import Engines
from parley.server.metrics import Metrics
from parley.store import Store
from parley.transports.services import Calls, LiveSessions
from parley.transports.sip import sdp
from parley.transports.sip.call import SipCall
from parley.transports.sip.message import SipError, SipMessage, parse, response

log = logging.getLogger("parley.sip")

ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, REFER, NOTIFY, INFO"


class SipServer(asyncio.DatagramProtocol):
    def __init__(
        self,
        *,
        settings: Settings,
        engines: Engines,
        calls: Calls,
        open_to_all: bool,
        metrics: Metrics | None = None,
        live: LiveSessions | None = None,
        store: Store | None = None,
    ) -> None:
        self.settings = settings
        self.engines = engines
        self.calls = calls
        self.metrics, self.live, self.store = metrics, live, store
        self.bind_host = settings.host
        self.port = settings.sip_port or 0
        self.networks = [ipaddress.ip_network(n, strict=False) for n in settings.sip_allowed_networks]
        self.open_to_all = open_to_all and not self.networks
        self.transport: asyncio.DatagramTransport | None = None
        self.dialogs: dict[str, SipCall] = {}

    async def listen(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=(self.bind_host, self.port))
        log.info("SIP: listening on udp %s:%d", self.bind_host, self.port)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.port = int(transport.get_extra_info("sockname")[1])

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def send(self, message: SipMessage, address: tuple[str, int]) -> None:
        if self.transport is not None:
            self.transport.sendto(message.encode(), address)

    def forget(self, call: SipCall) -> None:
        self.dialogs.pop(call.invite.call_id, None)

    def local_address_for(self, remote: str) -> str:
        """The local address the caller reaches us at (for SDP and Contact)."""
        if self.bind_host not in ("0.0.0.0", "::", ""):
            return self.bind_host
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((remote, 9))
            return str(probe.getsockname()[0])

    # -- datagrams --------------------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not data.strip():
            return  # keep-alive
        try:
            message = parse(data)
        except SipError as exc:
            log.debug("SIP: ignored a datagram from %s: %s", addr, exc)
            return
        call = self.dialogs.get(message.call_id)
        if not message.is_request:
            if call is not None:
                call.on_response(message)
            return
        if call is not None:
            call.on_request(message)
        elif message.method == "INVITE":
            self._invite(message, addr)
        elif message.method == "OPTIONS":
            self.send(response(message, 200, "OK", extra=[("Allow", ALLOW)]), addr)
        elif message.method != "ACK":
            self.send(response(message, 481, "Call/Transaction Does Not Exist"), addr)

    def _allowed(self, host: str) -> bool:
        if self.open_to_all:
            return True
        address = ipaddress.ip_address(host)
        return any(address in network for network in self.networks)

    def _invite(self, invite: SipMessage, addr: tuple[str, int]) -> None:
        if not self._allowed(addr[0]):
            log.warning("SIP: refused a call from %s (not in PARLEY_SIP_ALLOWED_NETWORKS)", addr[0])
            self.send(response(invite, 403, "Forbidden"), addr)
            return
        try:
            offer = sdp.parse_offer(invite.body.decode(errors="replace"))
            offer.codec()
        except sdp.SdpError as exc:
            log.info("SIP: refused an offer from %s: %s", addr[0], exc)
            self.send(
                response(invite, 488, "Not Acceptable Here", extra=[("Warning", f'399 parley "{exc}"')]), addr
            )
            return
        self.send(response(invite, 100, "Trying"), addr)
        call = SipCall(self, invite, addr, offer)
        self.dialogs[invite.call_id] = call
        self.calls.start(call, None)
