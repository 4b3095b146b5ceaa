"""What SIP tests need around Parley: sipp (Debian ``sip-tester``) as the caller, an RTP listener
that is the caller's ear (the SDP sipp sends names its port), and the application's webhook
receiver, which checks the Standard Webhooks signature and decides each call."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import shutil
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from aiohttp import web

from parley.audio import g711

SCENARIOS = Path(__file__).resolve().parent / "sip"
SIPP_PCAPS = Path("/usr/share/sip-tester")


def sipp_binary() -> str:
    sipp = shutil.which("sipp")
    if sipp is None:
        raise RuntimeError("sipp is not installed (Debian package sip-tester): run `make setup-test`.")
    return sipp


def write_g711_wav(path: Path, pcm8k: npt.NDArray[np.int16], law: str = "ulaw") -> None:
    """A G.711 WAV (format tag 7 µ-law or 6 A-law) that sipp's ``rtp_stream`` plays."""
    data = g711.ulaw_encode(pcm8k) if law == "ulaw" else g711.alaw_encode(pcm8k)
    tag = 7 if law == "ulaw" else 6
    fmt = struct.pack("<HHIIHHH", tag, 1, 8000, 8000, 1, 8, 0)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"fact" + struct.pack("<II", 4, len(data)) + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


async def run_sipp(
    scenario: str, sip_port: int, workdir: Path, keys: dict[str, str], *, timeout_s: float = 90
) -> tuple[int, str]:
    """Place one call with sipp; its exit status and what it printed (with its error log)."""
    (workdir / "pcap").unlink(missing_ok=True)
    (workdir / "pcap").symlink_to(SIPP_PCAPS)
    if scenario == "uac_pcap":  # sipp's own scenario
        args = ["-sn", scenario]
    else:  # the test's values written in (sipp does not expand keys inside actions and pauses)
        text = (SCENARIOS / scenario).read_text()
        for name, value in keys.items():
            text = text.replace(f"[{name}]", value)
        (workdir / scenario).write_text(text)
        args = ["-sf", scenario]
    process = await asyncio.create_subprocess_exec(
        sipp_binary(),
        *args,
        f"127.0.0.1:{sip_port}",
        *("-i", "127.0.0.1", "-mi", "127.0.0.1", "-p", "0", "-m", "1", "-nostdin", "-trace_err"),
        *("-timeout", f"{int(timeout_s)}s", "-timeout_error"),
        cwd=workdir,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout_s + 30)
    except TimeoutError:
        process.kill()
        out, _ = await process.communicate()
    return process.returncode or 0, out.decode(errors="replace")[-3000:] + _error_logs(workdir)


def _error_logs(workdir: Path) -> str:
    errors = "".join(p.read_text(errors="replace") for p in workdir.glob("*_errors.log"))
    return errors[-3000:]


class RtpEar(asyncio.DatagramProtocol):
    """Records the RTP packets sent to it: (arrival time, payload type, payload)."""

    def __init__(self) -> None:
        self.packets: list[tuple[float, int, bytes]] = []
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) >= 12:
            self.packets.append((time.monotonic(), data[1] & 0x7F, data[12:]))

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def audio(self, law: str = "ulaw") -> npt.NDArray[np.int16]:
        payload = b"".join(p for _, pt, p in self.packets if pt in (0, 8))
        return g711.ulaw_decode(payload) if law == "ulaw" else g711.alaw_decode(payload)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def rtp_ear() -> RtpEar:
    loop = asyncio.get_running_loop()
    _, ear = await loop.create_datagram_endpoint(RtpEar, local_addr=("127.0.0.1", 0))
    return ear


def signature_ok(secret: str, headers: Any, body: bytes) -> bool:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(part == f"v1,{expected}" for part in headers.get("webhook-signature", "").split())


@dataclass
class Webhook:
    """The application's webhook endpoint: records each delivery and runs ``decide(call_id)``."""

    secret: str
    port: int
    decide: Callable[[str], Awaitable[None]] | None = None
    deliveries: list[tuple[bool, dict[str, Any]]] = field(default_factory=list)
    """(signature valid, event) per delivery."""
    decided: list[asyncio.Task[None]] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    async def __aenter__(self) -> Webhook:
        app = web.Application()
        app.router.add_post("/hook", self._receive)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self.decided:
            if not task.done():
                task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        event = json.loads(body)
        self.deliveries.append((signature_ok(self.secret, request.headers, body), event))
        if self.decide is not None:
            self.decided.append(asyncio.ensure_future(self.decide(event["data"]["call_id"])))
        return web.Response(status=200)

    async def decisions(self) -> None:
        """Wait for every decision so far; their failures fail the test."""
        await asyncio.gather(*self.decided)
