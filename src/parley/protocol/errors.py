"""Protocol errors: what goes into the ``error`` server event (PROTOCOL.md §3.8)."""

from __future__ import annotations

from typing import Literal

ErrorType = Literal["invalid_request_error", "server_error", "rate_limit_error", "authentication_error"]


class ProtocolError(Exception):
    """A client event was refused. The session goes on; the client gets an ``error`` event."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        param: str | None = None,
        type: ErrorType = "invalid_request_error",
        event_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param
        self.type: ErrorType = type
        self.event_id = event_id

    def with_event_id(self, event_id: str | None) -> ProtocolError:
        if self.event_id is None:
            self.event_id = event_id
        return self


def unknown_parameter(param: str) -> ProtocolError:
    return ProtocolError("unknown_parameter", f"Unknown parameter: '{param}'.", param=param)


def missing_parameter(param: str) -> ProtocolError:
    return ProtocolError("missing_required_parameter", f"Missing required parameter: '{param}'.", param=param)


def invalid_value(param: str, message: str) -> ProtocolError:
    return ProtocolError("invalid_value", f"Invalid value for '{param}': {message}", param=param)
