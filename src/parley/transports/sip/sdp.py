"""SDP offer/answer (RFC 3264) for one G.711 audio stream with RFC 4733 telephone events."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

Codec = Literal["audio/pcmu", "audio/pcma"]
STATIC = {0: "audio/pcmu", 8: "audio/pcma"}


class SdpError(ValueError):
    """An offer Parley cannot answer (no G.711 audio)."""


@dataclass
class Offer:
    address: str
    port: int
    payload_types: list[int]
    rtpmap: dict[int, str] = field(default_factory=dict)

    @property
    def dtmf_payload_type(self) -> int | None:
        for pt in self.payload_types:
            if self.rtpmap.get(pt, "").lower().startswith("telephone-event/8000"):
                return pt
        return None

    def codec(self) -> tuple[int, Codec]:
        """The first G.711 payload type offered (the caller's preference) and its format."""
        for pt in self.payload_types:
            name = self.rtpmap.get(pt, "").lower()
            if pt in STATIC or name.startswith(("pcmu/8000", "pcma/8000")):
                fmt: Codec = "audio/pcmu" if (pt == 0 or name.startswith("pcmu")) else "audio/pcma"
                return pt, fmt
        raise SdpError("the offer has no PCMU or PCMA audio")


def parse_offer(text: str) -> Offer:
    address = ""
    audio: Offer | None = None
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if line.startswith("c=") and (audio is None or not audio.address):
            parts = line[2:].split()
            if len(parts) == 3:
                address = parts[2].split("/")[0]
                if audio is not None:
                    audio.address = address
        elif line.startswith("m=audio ") and audio is None:
            parts = line[2:].split()
            if len(parts) < 4 or not parts[1].isdigit():
                raise SdpError(f"bad media line {line!r}")
            audio = Offer(address, int(parts[1]), [int(p) for p in parts[3:] if p.isdigit()])
        elif line.startswith("m=") and audio is not None:
            break
        elif line.startswith("a=rtpmap:") and audio is not None:
            pt, _, name = line[9:].partition(" ")
            if pt.isdigit():
                audio.rtpmap[int(pt)] = name.strip()
    if audio is None:
        raise SdpError("the offer has no audio")
    if not audio.address:
        raise SdpError("the offer has no connection address")
    return audio


def answer(address: str, port: int, payload_type: int, codec: Codec, dtmf_payload_type: int | None) -> str:
    session_id = int(time.time())
    payloads = [str(payload_type)] + ([str(dtmf_payload_type)] if dtmf_payload_type is not None else [])
    lines = [
        "v=0",
        f"o=parley {session_id} {session_id} IN IP4 {address}",
        "s=Parley",
        f"c=IN IP4 {address}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {' '.join(payloads)}",
        f"a=rtpmap:{payload_type} {'PCMU' if codec == 'audio/pcmu' else 'PCMA'}/8000",
    ]
    if dtmf_payload_type is not None:
        lines += [f"a=rtpmap:{dtmf_payload_type} telephone-event/8000", f"a=fmtp:{dtmf_payload_type} 0-16"]
    lines += ["a=ptime:20", "a=sendrecv"]
    return "\r\n".join(lines) + "\r\n"
