"""Connection limits: sessions open at once per client address and per API key, and WebSocket
handshakes per address per minute. One process keeps its own counts (with several workers each
enforces its share)."""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Refusal:
    code: str
    message: str


class ConnectionLimits:
    def __init__(
        self,
        *,
        sessions_per_ip: int,
        handshakes_per_minute_per_ip: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sessions_per_ip = sessions_per_ip
        self.handshakes_per_minute_per_ip = handshakes_per_minute_per_ip
        self._clock = clock
        self._open_by_ip: dict[str, int] = defaultdict(int)
        self._open_by_key: dict[str, int] = defaultdict(int)
        self._handshakes: dict[str, deque[float]] = defaultdict(deque)

    def open(self, ip: str, key_id: str | None, key_max_sessions: int | None) -> Refusal | None:
        """Count a new session, or say why it is refused (then nothing is counted)."""
        now = self._clock()
        recent = self._handshakes[ip]
        while recent and now - recent[0] >= 60:
            recent.popleft()
        if len(recent) >= self.handshakes_per_minute_per_ip:
            return Refusal(
                "rate_limit_exceeded",
                f"Too many connections from {ip} in the last minute "
                f"(limit {self.handshakes_per_minute_per_ip}); wait and retry.",
            )
        recent.append(now)
        if self._open_by_ip[ip] >= self.sessions_per_ip:
            return Refusal(
                "too_many_sessions",
                f"{ip} already has {self._open_by_ip[ip]} sessions open (limit {self.sessions_per_ip}).",
            )
        if (
            key_id is not None
            and key_max_sessions is not None
            and self._open_by_key[key_id] >= key_max_sessions
        ):
            return Refusal(
                "too_many_sessions",
                f"This API key already has {self._open_by_key[key_id]} sessions open "
                f"(its limit is {key_max_sessions}).",
            )
        self._open_by_ip[ip] += 1
        if key_id is not None:
            self._open_by_key[key_id] += 1
        return None

    def close(self, ip: str, key_id: str | None) -> None:
        self._open_by_ip[ip] -= 1
        if self._open_by_ip[ip] <= 0:
            del self._open_by_ip[ip]
        if key_id is not None:
            self._open_by_key[key_id] -= 1
            if self._open_by_key[key_id] <= 0:
                del self._open_by_key[key_id]

    def open_sessions(self, key_id: str) -> int:
        return self._open_by_key.get(key_id, 0)
