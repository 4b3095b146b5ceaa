"""The tables of Parley's store, as SQLAlchemy 2.x ORM models.

The schema itself is owned by the Alembic migrations in ``migrations/versions``; a test checks that
these models and the migrated schema agree, so change both together (add a new revision).

Times are stored as naive UTC (``timestamp without time zone`` / SQLite text) and come back as
timezone-aware UTC ``datetime`` values.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """A ``DateTime`` that stores UTC without a zone and always returns aware UTC datetimes."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass timezone-aware UTC datetimes")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(40), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    max_concurrent_sessions: Mapped[int | None] = mapped_column(Integer)
    session_minutes_per_day: Mapped[float | None] = mapped_column(Float)
    max_session_minutes: Mapped[float | None] = mapped_column(Float)


class ClientSecretRow(Base):
    __tablename__ = "client_secrets"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    value_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id"), index=True)
    session_config: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    single_use: Mapped[bool] = mapped_column(Boolean)
    uses: Mapped[int] = mapped_column(Integer)
    last_used_at: Mapped[datetime | None]


class SessionRow(Base):
    """One realtime session: who, how, when, its last config and its totals."""

    __tablename__ = "sessions"
    __table_args__ = (Index("ix_sessions_key_started", "key_id", "started_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id"))
    transport: Mapped[str] = mapped_column(String(32))
    model: Mapped[str | None] = mapped_column(String(200))
    session_type: Mapped[str | None] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(index=True)
    updated_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(String(64))
    config: Mapped[dict[str, Any] | None]
    audio_in_seconds: Mapped[float] = mapped_column(Float)
    audio_out_seconds: Mapped[float] = mapped_column(Float)
    input_tokens: Mapped[int] = mapped_column(Integer)
    output_tokens: Mapped[int] = mapped_column(Integer)
    total_tokens: Mapped[int] = mapped_column(Integer)


class ItemRow(Base):
    """A conversation item (or an out-of-band response's output item), texts possibly redacted."""

    __tablename__ = "session_items"

    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    previous_item_id: Mapped[str | None] = mapped_column(String(64))
    response_id: Mapped[str | None] = mapped_column(String(64))
    in_conversation: Mapped[bool] = mapped_column(Boolean)
    type: Mapped[str] = mapped_column(String(40))
    role: Mapped[str | None] = mapped_column(String(20))
    status: Mapped[str | None] = mapped_column(String(20))
    text: Mapped[str | None] = mapped_column(Text)
    transcript: Mapped[str | None] = mapped_column(Text)
    name: Mapped[str | None] = mapped_column(String(200))
    call_id: Mapped[str | None] = mapped_column(String(200))
    arguments: Mapped[str | None] = mapped_column(Text)
    output: Mapped[str | None] = mapped_column(Text)
    server_label: Mapped[str | None] = mapped_column(String(200))
    extra: Mapped[dict[str, Any] | None]
    truncated_audio_end_ms: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None]


class ResponseRow(Base):
    """One response: outcome, token usage and how fast its first output came."""

    __tablename__ = "session_responses"

    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    in_conversation: Mapped[bool] = mapped_column(Boolean)
    input_item_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20))
    status_reason: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime]
    done_at: Mapped[datetime | None]
    latency_ms: Mapped[float | None] = mapped_column(Float)
    first_output_ms: Mapped[float | None] = mapped_column(Float)
    input_tokens: Mapped[int] = mapped_column(Integer)
    output_tokens: Mapped[int] = mapped_column(Integer)
    total_tokens: Mapped[int] = mapped_column(Integer)
    input_text_tokens: Mapped[int] = mapped_column(Integer)
    input_audio_tokens: Mapped[int] = mapped_column(Integer)
    cached_tokens: Mapped[int] = mapped_column(Integer)
    output_text_tokens: Mapped[int] = mapped_column(Integer)
    output_audio_tokens: Mapped[int] = mapped_column(Integer)


class ErrorRow(Base):
    __tablename__ = "session_errors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"), index=True)
    at: Mapped[datetime]
    type: Mapped[str | None] = mapped_column(String(100))
    code: Mapped[str | None] = mapped_column(String(100))
    message: Mapped[str | None] = mapped_column(Text)
    param: Mapped[str | None] = mapped_column(String(200))
    event_id: Mapped[str | None] = mapped_column(String(200))
    item_id: Mapped[str | None] = mapped_column(String(64))


class AudioRow(Base):
    """Raw audio of one item (only with audio recording on): what the user sent or the agent said."""

    __tablename__ = "session_audio"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"), index=True)
    item_id: Mapped[str | None] = mapped_column(String(64))
    direction: Mapped[str] = mapped_column(String(10))
    format: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime]
    data: Mapped[bytes] = mapped_column(LargeBinary)


SESSION_CHILDREN: tuple[type[Base], ...] = (ItemRow, ResponseRow, ErrorRow, AudioRow)
"""Tables whose rows belong to one session (``session_id``): deleted with it."""
