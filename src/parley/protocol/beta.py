"""The beta dialect (``OpenAI-Beta: realtime=v1``), translated at the edge of one GA session.

A :class:`BetaDialect` sits between a beta client and a :class:`~parley.realtime.session.RealtimeSession`:
beta client frames are validated and rewritten as GA events before the engine sees them, and every
GA server event the engine emits becomes zero or more beta events (see ``beta_events`` and
``beta_session`` for the mappings). The engine itself knows nothing of the beta shape; the one beta
setting GA lacks, the sampling ``temperature``, is kept on ``session.config.temperature`` and on the
response parameters.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from parley import ids
from parley.protocol import server_events as ev
from parley.protocol.beta_events import (
    BETA_SERVER_EVENT_TYPES,
    GaClientEvent,
    beta_error,
    beta_response,
    reshape,
    to_ga_client_event,
)
from parley.protocol.beta_session import DEFAULT_TEMPERATURE, beta_session, beta_transcription_session
from parley.protocol.client_events import ParsedResponseCreate, decode_json, event_id_of, parse_client_event
from parley.protocol.errors import ProtocolError

if TYPE_CHECKING:
    from parley.realtime.session import RealtimeSession

log = logging.getLogger("parley.beta")

BETA_HEADER = "realtime=v1"
BETA_SUBPROTOCOL = "openai-beta.realtime-v1"


@dataclass(frozen=True)
class BetaResponseCreate(ParsedResponseCreate):
    """A ``response.create`` from a beta client, with the sampling temperature GA has no field for."""

    temperature: float | None = None


def beta_requested(header: str, subprotocols: list[str]) -> bool:
    """Whether a connection asks for the beta dialect (``OpenAI-Beta`` header or browser subprotocol)."""
    return BETA_HEADER in header or BETA_SUBPROTOCOL in subprotocols


def beta_subprotocol(offered: list[str]) -> tuple[str, ...]:
    """The one subprotocol to select for a beta client: ``realtime`` if offered, else the beta one."""
    for name in ("realtime", BETA_SUBPROTOCOL):
        if name in offered:
            return (name,)
    return ()


class BetaDialect:
    """One beta connection's translator, in front of one GA session."""

    def __init__(self, session: RealtimeSession) -> None:
        self.session = session
        self._response_temperatures: dict[str, float] = {}

    # -- client → engine --------------------------------------------------------------------------

    def client_event(self, data: dict[str, Any]) -> GaClientEvent:
        """A decoded beta client event as a GA one. Raises ProtocolError (beta JSON paths)."""
        return to_ga_client_event(data)

    async def handle_text(self, text: str | bytes) -> None:
        """One client frame: decode, translate, dispatch to the engine. Errors become ``error`` events."""
        data: dict[str, Any] | None = None
        try:
            data = decode_json(text)
            self.session.observe("client", data)  # as sent, in the beta dialect
            await self.dispatch(self.client_event(data))
        except ProtocolError as exc:
            await self.session.emit(ev.error(exc.with_event_id(event_id_of(data))))
        except Exception as exc:
            log.exception("session %s: unexpected error handling a beta client event", self.session.id)
            error = ProtocolError(
                "server_error", f"The server failed to handle the event: {exc}", type="server_error"
            )
            await self.session.emit(ev.error(error.with_event_id(event_id_of(data))))

    async def dispatch(self, translated: GaClientEvent) -> None:
        """Hand a translated event to the engine; its errors come back naming beta fields."""
        try:
            await self._dispatch(translated)
        except ProtocolError as exc:
            raise beta_error(exc) from None

    async def _dispatch(self, translated: GaClientEvent) -> None:
        event = parse_client_event(translated.event)
        if isinstance(event, ParsedResponseCreate):
            await self.session.dispatch(BetaResponseCreate(event.event, event.input, translated.temperature))
            return
        if not translated.sets_temperature:
            await self.session.dispatch(event)
            return
        # Set before the engine applies the update, so its session.updated shows the new value;
        # an update the engine refuses leaves the temperature as it was.
        config = self.session.config
        previous, config.temperature = config.temperature, translated.temperature
        try:
            await self.session.dispatch(event)
        except BaseException:
            config.temperature = previous
            raise

    # -- engine → client --------------------------------------------------------------------------

    def server_event(self, event: ev.Event) -> list[ev.Event]:
        """A GA server event as the beta events a beta client gets for it (possibly none)."""
        type_ = event["type"]
        if type_ in ("session.created", "session.updated"):
            return self._session_event(event)
        if type_ in ("response.created", "response.done"):
            response = event["response"]
            temperature = self._response_temperature(response["id"], done=type_ == "response.done")
            return [{**event, "response": beta_response(response, temperature=temperature)}]
        if type_.startswith("parley."):
            return [event]  # Parley's own events, sent only to clients that asked for them
        result = reshape(event)
        if result["type"] not in BETA_SERVER_EVENT_TYPES:
            log.debug("session %s: %s has no beta counterpart; not sent", self.session.id, type_)
            return []
        return [result]

    def _session_event(self, event: ev.Event) -> list[ev.Event]:
        session = event["session"]
        if session.get("type") == "transcription":
            beta = beta_transcription_session(session)
            return [{**event, "type": f"transcription_{event['type']}", "session": beta}]
        beta = beta_session(session, temperature=self.session.config.temperature)
        result = [{**event, "session": beta}]
        if event["type"] == "session.created":
            conversation = {"id": self.session.conversation.id, "object": "realtime.conversation"}
            result.append(
                {"type": "conversation.created", "event_id": ids.event_id(), "conversation": conversation}
            )
        return result

    def _response_temperature(self, response_id: str, *, done: bool) -> float:
        known = self._response_temperatures.pop(response_id, None) if done else None
        if known is not None:
            return known
        response = self.session.responses.get(response_id)
        temperature = response.params.temperature if response is not None else None
        if temperature is None:
            temperature = self.session.config.temperature
        value = DEFAULT_TEMPERATURE if temperature is None else temperature
        if not done:
            self._response_temperatures[response_id] = value
        return value
