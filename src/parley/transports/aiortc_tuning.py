"""Fixes to aiortc measured on these machines (../shared/TRANSPORTS.md), applied once per process.

- Audio level: aiortc computes the RFC 6465 level of every outgoing frame in a pure-Python loop,
  which took ~80 % of a server's time (35 % of a core per call); numpy does it for ~10 %.
- Jitter buffer: the audio receiver holds 4 packets before it plays any (``prefetch=4``), adding
  60-80 ms per direction to every turn; one packet is enough on the networks voice calls use.
- Host candidates: aioice never offers loopback and has no setting for which addresses to offer;
  ``PARLEY_WEBRTC_HOST_ADDRESSES`` names them (loopback for tests, the LAN address on a server).
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Sequence
from typing import Any

import aioice.ice
import aiortc.jitterbuffer
import aiortc.rtcrtpreceiver
import aiortc.rtp
import numpy as np
from av import AudioFrame

_MIN_LEVEL = -127
_applied = False


def audio_level_dbov(frame: AudioFrame) -> int:
    """The frame's level in dBov, clamped to [-127, 0] (RFC 6465 Appendix A), computed with numpy."""
    samples = frame.to_ndarray().astype(np.float64)
    if samples.size == 0:
        return _MIN_LEVEL
    rms = math.sqrt(float(np.mean(samples * samples))) / 32767
    if rms <= 0:
        return _MIN_LEVEL
    return round(max(_MIN_LEVEL, min(0.0, 20 * math.log10(rms))))


class _AudioJitterBuffer(aiortc.jitterbuffer.JitterBuffer):
    def __init__(self, capacity: int, prefetch: int = 0, is_video: bool = False) -> None:
        super().__init__(capacity, prefetch=min(prefetch, 1) if not is_video else prefetch, is_video=is_video)


def apply(host_addresses: Sequence[str] = ()) -> None:
    """Install the fixes (idempotent); ``host_addresses`` replaces aioice's choice when not empty."""
    global _applied
    if not _applied:
        aiortc.rtp.compute_audio_level_dbov = audio_level_dbov
        aiortc.rtcrtpreceiver.JitterBuffer = _AudioJitterBuffer  # type: ignore[attr-defined]
        _applied = True
    if host_addresses:
        chosen = [str(ipaddress.ip_address(a)) for a in host_addresses]

        def addresses(use_ipv4: bool, use_ipv6: bool, *_: Any) -> list[str]:
            return [a for a in chosen if (use_ipv4 and ":" not in a) or (use_ipv6 and ":" in a)]

        aioice.ice.get_host_addresses = addresses
