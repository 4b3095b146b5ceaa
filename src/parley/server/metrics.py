"""Prometheus metrics, gathered by watching the events of every session.

A :class:`Metrics` owns its own ``CollectorRegistry`` (tests make fresh ones). Each session gets a
:class:`SessionMetrics` from :meth:`Metrics.observer`, appended to ``RealtimeSession.observers``: it
counts the events that pass, and times the stages of a turn from them with ``time.perf_counter()``.
Work per event is a few dictionary look-ups; nothing is serialized. ``GET /metrics`` serves the
registry in the Prometheus text format (:func:`metrics_handler`).
"""

from __future__ import annotations

import functools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from parley.protocol.client_events import CLIENT_EVENT_TYPES

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
"""Seconds; a voice turn feels instant under 0.3 s and broken past a few seconds."""
DURATION_BUCKETS = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0)
STAGES = ("endpointing", "stt_final", "llm_first_token", "tts_first_audio", "speech_end_to_first_audio")
"""The ``stage`` label of ``parley_stage_latency_seconds`` (see :class:`SessionMetrics`)."""
NOT_ENGINE_CODES = frozenset({"server_error", "invalid_tool_arguments", "tool_choice_not_followed"})
"""Codes of failed responses that no engine caused (an internal error, a model breaking tool rules);
every other code of a failed response is an ``EngineError``'s (``engine_error`` by default)."""
_CLIENT_TYPES = frozenset(CLIENT_EVENT_TYPES)
_FIRST_TOKEN_EVENTS = frozenset(
    {
        "response.output_item.added",
        "response.output_text.delta",
        "response.output_audio_transcript.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.mcp_call_arguments.delta",
    }
)
_ARRIVALS_KEPT = 4096
"""Appends whose arrival time is remembered (the endpointing estimate looks a few seconds back)."""
_PENDING_KEPT = 64
"""Committed items waiting for their transcript, at most."""


class Metrics:
    """Every metric of one server; hand :meth:`observer` to each session."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry if registry is not None else CollectorRegistry()

        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(name, doc, labels, registry=r)

        def histogram(name: str, doc: str, label: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, doc, [label], buckets=buckets, registry=r)

        self.sessions_active = Gauge("parley_sessions_active", "Sessions open.", ["transport"], registry=r)
        self.sessions = counter("parley_sessions", "Sessions started.", "transport", "session_type")
        self.client_events = counter("parley_client_events", "Client events received.", "type")
        self.server_events = counter("parley_server_events", "Server events sent.", "type")
        self.errors = counter("parley_errors", "error events sent.", "code")
        self.responses = counter("parley_responses", "Responses done.", "status")
        self.engine_failures = counter(
            "parley_engine_failures",
            "Failed transcriptions (stt) and responses failed by an engine (llm, or llm_or_tts once an "
            "audio reply began: the events do not tell the two apart).",
            "engine",
        )
        self.engine_failovers = counter(
            "parley_engine_failovers",
            "Requests a failover list's next engine served because the named one failed.",
            "stage",
            "engine",
            "to",
        )
        self.tool_calls = counter("parley_tool_calls", "Tool calls (function, mcp).", "kind", "outcome")
        self.stage_latency = histogram(
            "parley_stage_latency_seconds", "Latency of each stage of a turn.", "stage", LATENCY_BUCKETS
        )
        self.response_duration = histogram(
            "parley_response_duration_seconds",
            "response.created to response.done.",
            "status",
            DURATION_BUCKETS,
        )
        # Children by label value, looked up once per value (``labels()`` validates and locks).
        self.client_by_type = functools.cache(self.client_events.labels)
        self.server_by_type = functools.cache(self.server_events.labels)
        self.stage = {stage: self.stage_latency.labels(stage) for stage in STAGES}

    def observer(self, transport: str) -> SessionMetrics:
        """A new session's observer (it counts as active until :meth:`SessionMetrics.close`)."""
        return SessionMetrics(self, transport)

    def failover(self, stage: str, failed: str, taking_over: str) -> None:
        """A failover chain's listener (``Engines.on_failover``)."""
        self.engine_failovers.labels(stage, failed, taking_over).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


@dataclass(slots=True)
class _Response:
    created: float
    stages: dict[str, float]
    """The turn's stage timings (shared with the turn when the response is in the conversation)."""
    in_conversation: bool
    speech_stopped: float | None = None
    first_token: float | None = None
    first_audio: float | None = None
    audio_part: bool = False


@dataclass(slots=True)
class _Input:
    """The wall-clock arrival of input audio, on the audio clock of ``audio_*_ms``."""

    bytes_per_ms: float = 48.0
    received_ms: float = 0.0
    arrivals: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=_ARRIVALS_KEPT))
    """(audio end ms, wall time) of each append."""

    def append(self, audio: str, now: float) -> None:
        padding = 2 if audio.endswith("==") else 1 if audio.endswith("=") else 0
        self.received_ms += (len(audio) * 3 // 4 - padding) / self.bytes_per_ms
        self.arrivals.append((self.received_ms, now))

    def arrival_of(self, audio_ms: float) -> float | None:
        """When the append holding ``audio_ms`` arrived, if it is still remembered."""
        while self.arrivals and self.arrivals[0][0] < audio_ms - 1:
            self.arrivals.popleft()
        return self.arrivals[0][1] if self.arrivals else None

    def set_format(self, session: dict[str, Any]) -> None:
        fmt = session.get("audio", {}).get("input", {}).get("format") or {}
        if fmt.get("type") == "audio/pcm":
            self.bytes_per_ms = int(fmt.get("rate") or 24000) * 2 / 1000
        elif fmt.get("type") in ("audio/pcmu", "audio/pcma"):
            self.bytes_per_ms = 8.0


class SessionMetrics:
    """One session's observer: ``observer(direction, event)`` for every event, then :meth:`close`.

    Stages, in seconds: ``endpointing`` (the wall time at which the audio at ``audio_end_ms``
    arrived → ``speech_stopped`` sent), ``stt_final`` (``committed`` → its transcription
    ``completed``), ``llm_first_token`` (``response.created`` → the response's first output: its
    first output item or delta; a message's item is added on the model's first text, while a spoken
    transcript delta waits for speech), ``tts_first_audio`` (that first output → the first
    ``output_audio.delta``: sentence chunking and synthesis) and ``speech_end_to_first_audio``
    (``speech_stopped`` → the first audio of the response that follows).
    """

    def __init__(self, metrics: Metrics, transport: str) -> None:
        self._m = metrics
        self.transport = transport
        self._active = metrics.sessions_active.labels(transport)
        self._active.inc()
        self._closed = False
        self._input = _Input()
        self._turn: dict[str, float] = {}
        """Stage timings of the turn under way, until a response in the conversation takes them."""
        self._speech_stopped: float | None = None
        self._committed: dict[str, tuple[float, dict[str, float]]] = {}
        self._responses: dict[str, _Response] = {}
        self._last_turn: dict[str, Any] | None = None
        self._on: dict[str, Callable[[dict[str, Any], float], None]] = {
            "session.created": self._session_created,
            "session.updated": lambda event, _: self._input.set_format(event.get("session") or {}),
            "error": self._error,
            "input_audio_buffer.speech_started": lambda _, __: self._new_turn(),
            "input_audio_buffer.speech_stopped": self._speech_stopped_at,
            "input_audio_buffer.committed": self._committed_at,
            "conversation.item.input_audio_transcription.completed": self._transcribed,
            "conversation.item.input_audio_transcription.failed": self._transcription_failed,
            "response.created": self._response_created,
            "response.content_part.added": self._part_added,
            "response.output_audio.delta": self._audio_out,
            "response.output_item.done": self._item_done,
            "response.done": self._response_done,
        }

    def __call__(self, direction: str, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if direction == "client":
            self._m.client_by_type(
                kind if isinstance(kind, str) and kind in _CLIENT_TYPES else "unknown"
            ).inc()
            if kind == "input_audio_buffer.append" and isinstance(audio := event.get("audio"), str):
                self._input.append(audio, time.perf_counter())
            return
        if not isinstance(kind, str):
            return
        self._m.server_by_type(kind).inc()
        handler = self._on.get(kind)
        if handler is not None:
            handler(event, time.perf_counter())
        elif kind in _FIRST_TOKEN_EVENTS:
            self._first_token(event, time.perf_counter())

    def close(self) -> None:
        """The session ended; idempotent."""
        if not self._closed:
            self._closed = True
            self._active.dec()

    def turn_breakdown(self) -> dict[str, Any] | None:
        """The last finished turn (response in the conversation): ``{"response_id", "status",
        "stages": {stage: seconds, "response": seconds}}`` with the stages that were measured."""
        if self._last_turn is None:
            return None
        return {**self._last_turn, "stages": dict(self._last_turn["stages"])}

    # -- stages -----------------------------------------------------------------------------------

    def _observe(self, stages: dict[str, float], stage: str, seconds: float) -> None:
        self._m.stage[stage].observe(seconds)
        stages[stage] = seconds

    def _new_turn(self) -> None:
        self._turn = {}

    def _session_created(self, event: dict[str, Any], now: float) -> None:
        session = event.get("session") or {}
        self._m.sessions.labels(self.transport, str(session.get("type", "realtime"))).inc()
        self._input.set_format(session)

    def _error(self, event: dict[str, Any], now: float) -> None:
        self._m.errors.labels(str((event.get("error") or {}).get("code") or "unknown")).inc()

    def _speech_stopped_at(self, event: dict[str, Any], now: float) -> None:
        self._speech_stopped = now
        audio_end_ms = event.get("audio_end_ms")
        arrived = self._input.arrival_of(audio_end_ms) if isinstance(audio_end_ms, int | float) else None
        if arrived is not None:
            self._observe(self._turn, "endpointing", now - arrived)

    def _committed_at(self, event: dict[str, Any], now: float) -> None:
        if len(self._committed) >= _PENDING_KEPT:
            del self._committed[next(iter(self._committed))]
        self._committed[str(event.get("item_id"))] = (now, self._turn)

    def _transcribed(self, event: dict[str, Any], now: float) -> None:
        committed = self._committed.pop(str(event.get("item_id")), None)
        if committed is not None:
            self._observe(committed[1], "stt_final", now - committed[0])

    def _transcription_failed(self, event: dict[str, Any], now: float) -> None:
        self._committed.pop(str(event.get("item_id")), None)
        self._m.engine_failures.labels("stt").inc()

    def _response_created(self, event: dict[str, Any], now: float) -> None:
        response = event.get("response") or {}
        in_conversation = response.get("conversation_id") is not None
        state = _Response(
            created=now,
            stages=self._turn if in_conversation else {},
            in_conversation=in_conversation,
        )
        if in_conversation:
            state.speech_stopped, self._speech_stopped = self._speech_stopped, None
            self._turn = {}
        self._responses[str(response.get("id"))] = state

    def _first_token(self, event: dict[str, Any], now: float) -> None:
        state = self._responses.get(str(event.get("response_id")))
        if state is not None and state.first_token is None:
            state.first_token = now
            self._observe(state.stages, "llm_first_token", now - state.created)

    def _part_added(self, event: dict[str, Any], now: float) -> None:
        state = self._responses.get(str(event.get("response_id")))
        if state is not None and (event.get("part") or {}).get("type") == "audio":
            state.audio_part = True

    def _audio_out(self, event: dict[str, Any], now: float) -> None:
        state = self._responses.get(str(event.get("response_id")))
        if state is None or state.first_audio is not None:
            return
        state.first_audio = now
        if state.first_token is not None:
            self._observe(state.stages, "tts_first_audio", now - state.first_token)
        if state.speech_stopped is not None:
            self._observe(state.stages, "speech_end_to_first_audio", now - state.speech_stopped)

    def _item_done(self, event: dict[str, Any], now: float) -> None:
        item = event.get("item") or {}
        kind = item.get("type")
        if kind == "function_call":
            self._m.tool_calls.labels("function", str(item.get("status"))).inc()
        elif kind == "mcp_call":
            self._m.tool_calls.labels("mcp", "failed" if item.get("error") else "completed").inc()
        elif kind == "mcp_approval_request":
            self._m.tool_calls.labels("mcp", "approval_requested").inc()

    def _response_done(self, event: dict[str, Any], now: float) -> None:
        response = event.get("response") or {}
        status = str(response.get("status"))
        self._m.responses.labels(status).inc()
        state = self._responses.pop(str(response.get("id")), None)
        if status == "failed":
            code = ((response.get("status_details") or {}).get("error") or {}).get("code")
            if code not in NOT_ENGINE_CODES:
                speaking = state is not None and state.audio_part
                self._m.engine_failures.labels("llm_or_tts" if speaking else "llm").inc()
        if state is None:
            return
        self._m.response_duration.labels(status).observe(now - state.created)
        if state.in_conversation:
            stages = {**state.stages, "response": now - state.created}
            self._last_turn = {"response_id": response.get("id"), "status": status, "stages": stages}


METRICS = web.AppKey("metrics", Metrics)
"""Where the application keeps its :class:`Metrics`."""


async def metrics_handler(request: web.Request) -> web.Response:
    """``GET /metrics``: the Prometheus text exposition of ``request.app[METRICS]``."""
    body = request.app[METRICS].exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def setup_metrics(app: web.Application, metrics: Metrics | None = None) -> Metrics:
    """Keep ``metrics`` (a new one by default) in ``app[METRICS]`` and serve it at ``GET /metrics``."""
    app[METRICS] = metrics if metrics is not None else Metrics()
    app.router.add_get("/metrics", metrics_handler)
    return app[METRICS]
