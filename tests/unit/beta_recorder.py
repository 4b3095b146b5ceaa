"""A GA session engine on fake engines behind the beta dialect, recording what a beta client gets;
shared by the beta translation tests."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from parley.config import Settings
from parley.protocol.beta import BetaDialect
from parley.realtime.session import RealtimeSession, SessionType
from tests.fakes import fake_engines
from tests.wire import validate_beta, validate_ga

GA_ONLY_NAMES = (
    "response.output_text",
    "response.output_audio",
    "conversation.item.added",
    "conversation.item.done",
    "input_audio_buffer.timeout_triggered",
)
"""GA event names (prefixes) no beta event may carry."""


class BetaRecorder:
    """A GA session on fake engines behind a BetaDialect; records what a beta client would get."""

    def __init__(self, session_type: SessionType = "realtime", **engines: Any) -> None:
        self.events: list[dict[str, Any]] = []
        self.engines = fake_engines(**engines)
        self.session = RealtimeSession(
            settings=Settings(),
            engines=self.engines,
            emit=self._emit,
            model="gpt-4o-realtime-preview",
            session_type=session_type,
        )
        self.dialect = BetaDialect(self.session)
        self._new = asyncio.Event()

    async def _emit(self, event: dict[str, Any]) -> None:
        validate_ga(event)  # the engine speaks GA; the translation is the only beta source
        for beta in self.dialect.server_event(event):
            validate_beta(beta)
            assert not beta["type"].startswith(GA_ONLY_NAMES), beta["type"]
            self.events.append(beta)
        self._new.set()

    async def send(self, event: dict[str, Any]) -> None:
        await self.dialect.handle_text(json.dumps(event))

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == type_]

    async def wait_for(self, type_: str, count: int = 1, timeout: float = 10.0) -> dict[str, Any]:
        async def wait() -> dict[str, Any]:
            while len(self.of_type(type_)) < count:
                self._new.clear()
                await self._new.wait()
            return self.of_type(type_)[count - 1]

        return await asyncio.wait_for(wait(), timeout)

    async def error(self) -> dict[str, Any]:
        error = await self.wait_for("error")
        self.events.clear()
        return dict(error["error"])
