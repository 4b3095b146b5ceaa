"""Strict validation of server events against the ``openai`` package's GA models (DESIGN.md §1)."""

from __future__ import annotations

from typing import Annotated, Any, Union, get_args

from openai.types.realtime import RealtimeServerEvent
from pydantic import Field, TypeAdapter

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
