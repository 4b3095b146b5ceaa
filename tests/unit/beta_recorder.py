"""A GA session engine on fake engines behind the beta dialect, recording what a beta client gets;
shared by the beta translation tests."""

from __future__ import annotations

import json
from typing import Any

from parley.protocol.beta import BetaDialect
from parley.realtime.session import SessionType
from tests.fakes import Recorder
from tests.wire import validate_beta, validate_ga

GA_ONLY_NAMES = (
    "response.output_text",
    "response.output_audio",
    "conversation.item.added",
    "conversation.item.done",
    "input_audio_buffer.timeout_triggered",
)
"""GA event names (prefixes) no beta event may carry."""


class BetaRecorder(Recorder):
    """A GA session on fake engines behind a BetaDialect; records what a beta client would get."""

    def __init__(self, session_type: SessionType = "realtime", **engines: Any) -> None:
        super().__init__(session_type, model="gpt-4o-realtime-preview", **engines)
        self.dialect = BetaDialect(self.session)

    async def _emit(self, event: dict[str, Any]) -> None:
        validate_ga(event)  # the engine speaks GA; the translation is the only beta source
        for beta in self.dialect.server_event(event):
            validate_beta(beta)
            assert not beta["type"].startswith(GA_ONLY_NAMES), beta["type"]
            self.events.append(beta)
        self._new.set()

    async def send(self, event: dict[str, Any]) -> None:
        await self.dialect.handle_text(json.dumps(event))

    async def error(self) -> dict[str, Any]:
        error = await self.wait_for("error")
        self.events.clear()
        return dict(error["error"])
