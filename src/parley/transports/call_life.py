"""The life of a call that carries a realtime session (WebRTC, a Twilio media stream): listed among
the live sessions while it runs, its session started with the configuration it was given, and ended
once, for the first reason given."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from parley.realtime.session import RealtimeSession
from parley.transports.services import LiveSession, Services


class CallEnding:
    """A call's end: ``end_reason`` is the first reason given, and ``wait_ended`` returns once it came."""

    def __init__(self) -> None:
        self.end_reason = ""
        self._ended = asyncio.Event()

    def _end(self, reason: str) -> None:
        """End the call for ``reason``, unless it has ended already."""
        if not self._ended.is_set():
            self.end_reason = reason
            self._ended.set()

    async def wait_ended(self) -> None:
        await self._ended.wait()

    @property
    def ended(self) -> bool:
        return self._ended.is_set()


@contextlib.contextmanager
def listed_live(
    services: Services, session: RealtimeSession, end: Callable[[str], Awaitable[None]]
) -> Iterator[None]:
    """The session listed among the live ones for the block, so a shutting-down server ends the call."""
    live = services.live
    if live is None:
        yield
        return
    live.add(LiveSession(session, lambda: end("server_shutting_down")))
    try:
        yield
    finally:
        live.remove(session.id)


async def start_session(
    session: RealtimeSession, services: Services, session_update: dict[str, Any] | None
) -> None:
    """Start the session with the configuration its client secret carries, then apply the call's own
    ``session`` (a ``session.update``), if any."""
    await session.start(services.initial_session)
    if session_update is not None:
        await session.handle_text(json.dumps({"type": "session.update", "session": session_update}))
