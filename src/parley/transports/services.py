"""What every transport's sessions share: the services that watch and bound them (metrics, the audit
trail, key limits), and the registry of open sessions a shutting-down server ends."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from parley import ids
from parley.config import Settings
from parley.realtime.session import RealtimeSession
from parley.server.metrics import Metrics, SessionMetrics
from parley.store import ApiKey, Redactor, SessionRecorder, Store

log = logging.getLogger("parley.calls")

ENDED_KEPT = 4096


@dataclass
class LiveSession:
    """An open session and how to close its connection, so a shutting-down server can end it."""

    session: RealtimeSession
    close: Callable[[], Awaitable[None]]


class LiveSessions:
    """The sessions open in this process (every transport)."""

    def __init__(self) -> None:
        self.open: dict[str, LiveSession] = {}
        self.ended: deque[str] = deque(maxlen=ENDED_KEPT)
        """Sessions of this process that ended lately: the database may not say so yet."""
        self._empty = asyncio.Event()
        self._empty.set()

    def known(self, session_id: str) -> bool:
        """Whether this process runs or lately ran the session."""
        return session_id in self.open or session_id in self.ended

    def add(self, entry: LiveSession) -> None:
        self.open[entry.session.id] = entry
        self._empty.clear()

    def remove(self, session_id: str) -> None:
        if self.open.pop(session_id, None) is not None:
            self.ended.append(session_id)
        if not self.open:
            self._empty.set()

    async def wait_empty(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._empty.wait(), timeout_s)


@dataclass
class Services:
    """What one connection's session is watched and bounded by."""

    metrics: Metrics | None = None
    live: LiveSessions | None = None
    store: Store | None = None
    """Where the session is recorded (the audit trail)."""
    key: ApiKey | None = None
    max_minutes: float | None = None
    initial_session: dict[str, Any] | None = None
    """The session configuration a client secret carries; the session starts with it."""
    abort: Callable[[], None] | None = None
    """Drops the connection (a client that stopped reading)."""
    turn_latency: bool = False
    """The client asked for ``parley.turn.latency`` after each turn (:func:`wants_turn_latency`)."""
    release: Callable[[], None] | None = None
    """Frees the session's place under the connection limits, as soon as the client is gone and
    before the session is torn down: a client that closes and reconnects at once is let in."""


LATENCY_QUERY = "parley_latency"
LATENCY_HEADER = "X-Parley-Latency"


def wants_turn_latency(request: web.Request) -> bool:
    """The client opted in to per-turn latency events: ``?parley_latency=true`` on the URL, or the
    ``X-Parley-Latency: true`` header. Nobody else ever gets them."""
    value = request.query.get(LATENCY_QUERY) or request.headers.get(LATENCY_HEADER) or ""
    return value.strip().lower() in ("1", "true", "yes", "on")


class SessionWatch:
    """The metrics observer and the audit-trail recorder of one session, attached and detached."""

    def __init__(
        self, session: RealtimeSession, services: Services, settings: Settings, *, transport: str, model: str
    ) -> None:
        self.metrics: SessionMetrics | None = None
        self.recorder: SessionRecorder | None = None
        if services.metrics is not None:
            self.metrics = services.metrics.observer(transport)
            session.observers.append(self.metrics)
            if services.turn_latency:
                session.observers.append(_TurnLatencyReporter(session, self.metrics))
        if services.store is not None:
            self.recorder = services.store.recorder(
                session_id=session.id,
                key_id=services.key.id if services.key is not None else None,
                transport=transport,
                model=model,
                redactor=Redactor(settings.redact_patterns) if settings.redact else None,
                record_audio=settings.record_audio,
            )
            session.observers.append(self.recorder)

    async def close(self, reason: str) -> None:
        """After ``session.close()``, so its last events are recorded too."""
        if self.metrics is not None:
            self.metrics.close()
        if self.recorder is not None:
            await self.recorder.close(reason)


class _TurnLatencyReporter:
    """Sends an opted-in client the stage timings of each finished turn, right after its
    ``response.done``: ``{"type": "parley.turn.latency", "response_id", "status", "latency_ms":
    {"endpointing", "stt_final", "llm_first_token", "tts_first_audio", "speech_end_to_first_audio",
    "response"}}`` with the stages that were measured (the definitions of ``/metrics``)."""

    def __init__(self, session: RealtimeSession, metrics: SessionMetrics) -> None:
        self.session = session
        self.metrics = metrics

    def __call__(self, direction: str, event: dict[str, Any]) -> None:
        if direction != "server" or event.get("type") != "response.done":
            return
        turn = self.metrics.turn_breakdown()
        if turn is None or turn["response_id"] != (event.get("response") or {}).get("id"):
            return  # not a turn of the conversation (an out-of-band response)
        latency = {stage: round(seconds * 1000, 1) for stage, seconds in turn["stages"].items()}
        self.session.spawn(
            self.session.emit(
                {
                    "type": "parley.turn.latency",
                    "event_id": ids.event_id(),
                    "response_id": turn["response_id"],
                    "status": turn["status"],
                    "latency_ms": latency,
                }
            )
        )


class LiveCall(Protocol):
    """A call in progress on any transport (WebRTC, SIP, a carrier's media stream): what call
    control (hangup, accept...) and sideband sockets need of it."""

    id: str
    key_id: str | None
    """The API key that opened it (None: an operator key or dev mode); only that key controls it."""
    session: RealtimeSession
    sinks: list[Callable[[str], None]]
    """Sideband sockets: each gets every server event of the call, GA dialect, as JSON text."""

    async def run(self, session_update: dict[str, Any] | None = None) -> None: ...

    async def end(self, reason: str) -> None: ...

    async def wait_ended(self) -> None: ...

    @property
    def ended(self) -> bool:
        """Its end was asked for (it may still be freeing itself): call control no longer finds it."""
        ...


class Calls:
    """The calls live in this process (every transport), by call id."""

    def __init__(self) -> None:
        self.live: dict[str, LiveCall] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def start(
        self,
        call: LiveCall,
        session_update: dict[str, Any] | None,
        *,
        release: Callable[[], None] | None = None,
    ) -> None:
        """Run ``call`` in the background; ``release`` (idempotent) is called as soon as its end is
        asked for, before it has freed itself, so a caller who hangs up and calls again is let in."""
        self.live[call.id] = call
        loop = asyncio.get_running_loop()
        task = loop.create_task(call.run(session_update), name=f"call {call.id}")
        self.tasks.add(task)
        ending: asyncio.Task[None] | None = None
        if release is not None:
            ending = loop.create_task(_then(call.wait_ended(), release), name=f"call {call.id} ending")

        def done(_: asyncio.Task[None]) -> None:
            if not task.cancelled() and task.exception() is not None:
                log.error("call %s failed", call.id, exc_info=task.exception())
            self.tasks.discard(task)
            self.live.pop(call.id, None)
            if ending is not None:
                ending.cancel()
            if release is not None:
                release()

        task.add_done_callback(done)

    def get(self, call_id: str, key_id: str | None) -> LiveCall | None:
        """The call, if it is live (not ending) and ``key_id`` may control it (the key that opened it)."""
        call = self.live.get(call_id)
        if call is None or call.ended:
            return None
        if call.key_id is not None and key_id is not None and call.key_id != key_id:
            return None
        return call

    async def close(self) -> None:
        for call in list(self.live.values()):
            await call.end("server_shutting_down")
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)


async def _then(event: Awaitable[None], action: Callable[[], None]) -> None:
    await event
    action()


CALLS = web.AppKey("calls", Calls)
