"""Strict validation of server events against the ``openai`` package's GA and beta models (DESIGN.md §1)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union, get_args

from openai.types.beta.realtime import RealtimeServerEvent as BetaServerEvent
from openai.types.beta.realtime.transcription_session import ClientSecret, TranscriptionSession
from openai.types.realtime import RealtimeServerEvent
from pydantic import BaseModel, Field, TypeAdapter

_MEMBERS = get_args(get_args(RealtimeServerEvent)[0])
GA_SERVER_EVENT: TypeAdapter[Any] = TypeAdapter(Annotated[Union[_MEMBERS], Field(discriminator="type")])  # noqa: UP007

# Events the GA union has no model for but the GA API sends (none so far).
_NOT_IN_UNION: set[str] = set()


def validate_ga(event: dict[str, Any]) -> Any:
    """Validate one GA server event strictly; raises pydantic.ValidationError when off the wire."""
    assert isinstance(event.get("event_id"), str) and event["event_id"], event
    if event["type"] in _NOT_IN_UNION:
        return event
    return GA_SERVER_EVENT.validate_python(event)


# -- beta (OpenAI-Beta: realtime=v1) --------------------------------------------------------------

_BETA_MEMBERS = get_args(get_args(BetaServerEvent)[0])
BETA_SERVER_EVENT: TypeAdapter[Any] = TypeAdapter(
    Annotated[Union[_BETA_MEMBERS], Field(discriminator="type")]  # noqa: UP007
)


class _WebSocketTranscriptionSession(TranscriptionSession):
    """The beta transcription session as sent over the socket. The SDK model (made for the REST
    reply) requires ``client_secret``, which the API reference says "is not present when a session
    is updated via the WebSocket API"; everything else is checked as the SDK declares it."""

    client_secret: Optional[ClientSecret] = None  # type: ignore[assignment]  # noqa: UP045


class _TranscriptionSessionEvent(BaseModel):
    """``transcription_session.created|updated``; the SDK union has no model for ``created``."""

    event_id: str
    type: Literal["transcription_session.created", "transcription_session.updated"]
    session: _WebSocketTranscriptionSession


def validate_beta(event: dict[str, Any]) -> Any:
    """Validate one beta server event strictly; raises pydantic.ValidationError when off the wire."""
    assert isinstance(event.get("event_id"), str) and event["event_id"], event
    if event["type"].startswith("transcription_session."):
        return _TranscriptionSessionEvent.model_validate(event)
    return BETA_SERVER_EVENT.validate_python(event)
