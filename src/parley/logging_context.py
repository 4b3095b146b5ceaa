"""Structured logs that name the session (and the call) they come from.

The ids live in context variables: set them once where a session's work starts (``with
bind_session(session.id):`` around the transport's loop) and every record logged in that context,
including in the tasks it starts (asyncio copies the context into them), carries ``session_id``
and ``call_id``. :func:`configure_logging` installs a handler with :class:`SessionContextFilter` and
the text or JSON formatter.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

session_id_var: ContextVar[str | None] = ContextVar("parley_session_id", default=None)
call_id_var: ContextVar[str | None] = ContextVar("parley_call_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(context)s: %(message)s"


@contextmanager
def bind_session(session_id: str | None, call_id: str | None = None) -> Iterator[None]:
    """Records logged inside carry ``session_id`` (and ``call_id`` when given); restored on exit."""
    session_token = session_id_var.set(session_id)
    call_token = call_id_var.set(call_id) if call_id is not None else None
    try:
        yield
    finally:
        if call_token is not None:
            call_id_var.reset(call_token)
        session_id_var.reset(session_token)


def bind_call(call_id: str | None) -> None:
    """Name the call (WebRTC/SIP) for the rest of the current context, e.g. once it is known."""
    call_id_var.set(call_id)


class SessionContextFilter(logging.Filter):
    """Adds ``session_id`` and ``call_id`` (None when unset) to every record; drops none.

    Put it on the handler: filters of a logger do not see records propagated from its children."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "session_id", None) is None:
            record.session_id = session_id_var.get()
        if getattr(record, "call_id", None) is None:
            record.call_id = call_id_var.get()
        return True


def _ids(record: logging.LogRecord) -> tuple[str | None, str | None]:
    """The record's ids: set by the filter, or else read from the context (formatter used alone)."""
    session_id = getattr(record, "session_id", None) or session_id_var.get()
    call_id = getattr(record, "call_id", None) or call_id_var.get()
    return session_id, call_id


class TextFormatter(logging.Formatter):
    """``time LEVEL logger [sess_… call_id]: message``; the brackets only when an id is set."""

    def __init__(self, fmt: str = TEXT_FORMAT) -> None:
        super().__init__(fmt)

    def format(self, record: logging.LogRecord) -> str:
        ids = " ".join(i for i in _ids(record) if i)
        record.context = f" [{ids}]" if ids else ""
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (ISO 8601, UTC), level, logger, message, and session_id,
    call_id and exception when there are any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        session_id, call_id = _ids(record)
        if session_id:
            entry["session_id"] = session_id
        if call_id:
            entry["call_id"] = call_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, fmt: str) -> logging.Handler:
    """Log to stderr at ``level`` in ``fmt`` (``text`` or ``json``), with session ids; replaces the
    root logger's handlers. Returns the handler (tests can point its stream elsewhere)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(SessionContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    for noisy in ("aioice", "aiortc"):  # every ICE check and DTLS step at INFO
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler
