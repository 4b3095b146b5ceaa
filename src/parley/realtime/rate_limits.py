"""Per-session request and token budgets over a sliding minute, as ``rate_limits.updated`` reports."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

WINDOW_S = 60.0


class RateLimits:
    def __init__(self, requests_per_minute: int, tokens_per_minute: int) -> None:
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self._requests: deque[float] = deque()
        self._tokens: deque[tuple[float, int]] = deque()

    def _expire(self, now: float) -> None:
        while self._requests and now - self._requests[0] >= WINDOW_S:
            self._requests.popleft()
        while self._tokens and now - self._tokens[0][0] >= WINDOW_S:
            self._tokens.popleft()

    def exhausted(self) -> str | None:
        """Which budget is used up, if any."""
        now = time.monotonic()
        self._expire(now)
        if len(self._requests) >= self.requests_per_minute:
            return "requests"
        if sum(t for _, t in self._tokens) >= self.tokens_per_minute:
            return "tokens"
        return None

    def start_response(self, reserved_tokens: int) -> list[dict[str, Any]]:
        """Count one response reserving ``reserved_tokens``; return the wire ``rate_limits``."""
        now = time.monotonic()
        self._expire(now)
        self._requests.append(now)
        self._tokens.append((now, reserved_tokens))
        return self.snapshot(now)

    def record_tokens(self, reserved: int, used: int) -> None:
        """Replace a response's reservation with what it really used."""
        for index in range(len(self._tokens) - 1, -1, -1):
            stamp, tokens = self._tokens[index]
            if tokens == reserved:
                self._tokens[index] = (stamp, used)
                return

    def snapshot(self, now: float | None = None) -> list[dict[str, Any]]:
        now = time.monotonic() if now is None else now
        self._expire(now)
        used_tokens = sum(t for _, t in self._tokens)
        reset_requests = WINDOW_S - (now - self._requests[0]) if self._requests else 0.0
        reset_tokens = WINDOW_S - (now - self._tokens[0][0]) if self._tokens else 0.0
        return [
            {
                "name": "requests",
                "limit": self.requests_per_minute,
                "remaining": max(0, self.requests_per_minute - len(self._requests)),
                "reset_seconds": round(reset_requests, 3),
            },
            {
                "name": "tokens",
                "limit": self.tokens_per_minute,
                "remaining": max(0, self.tokens_per_minute - used_tokens),
                "reset_seconds": round(reset_tokens, 3),
            },
        ]
