"""Initial schema: API keys, client secrets, and the session audit trail.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _id(name: str = "id", length: int = 64, primary_key: bool = False) -> sa.Column[str]:
    return sa.Column(name, sa.String(length), nullable=False, primary_key=primary_key)


def _time(name: str, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(), nullable=nullable)


def _int(name: str, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.Integer(), nullable=nullable)


def _float(name: str, nullable: bool = False) -> sa.Column[float]:
    return sa.Column(name, sa.Float(), nullable=nullable)


def _str(name: str, length: int) -> sa.Column[str]:
    return sa.Column(name, sa.String(length), nullable=True)


def _text(name: str) -> sa.Column[str]:
    return sa.Column(name, sa.Text(), nullable=True)


def _session_fk() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["session_id"], ["sessions.id"])


def upgrade() -> None:
    op.create_table(
        "api_keys",
        _id(length=40, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("prefix", sa.String(40), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        _time("created_at"),
        _time("revoked_at", nullable=True),
        _int("max_concurrent_sessions", nullable=True),
        _float("session_minutes_per_day", nullable=True),
        _float("max_session_minutes", nullable=True),
    )
    op.create_index("ix_api_keys_prefix", "api_keys", ["prefix"])
    op.create_table(
        "client_secrets",
        _id(length=40, primary_key=True),
        sa.Column("value_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("key_id", sa.String(40), sa.ForeignKey("api_keys.id"), nullable=True),
        sa.Column("session_config", sa.JSON(), nullable=False),
        _time("created_at"),
        _time("expires_at"),
        sa.Column("single_use", sa.Boolean(), nullable=False),
        _int("uses"),
        _time("last_used_at", nullable=True),
    )
    op.create_index("ix_client_secrets_key_id", "client_secrets", ["key_id"])
    op.create_index("ix_client_secrets_expires_at", "client_secrets", ["expires_at"])
    op.create_table(
        "sessions",
        _id(primary_key=True),
        sa.Column("key_id", sa.String(40), sa.ForeignKey("api_keys.id"), nullable=True),
        sa.Column("transport", sa.String(32), nullable=False),
        _str("model", 200),
        _str("session_type", 32),
        _time("started_at"),
        _time("updated_at"),
        _time("ended_at", nullable=True),
        _str("end_reason", 64),
        sa.Column("config", sa.JSON(), nullable=True),
        _float("audio_in_seconds"),
        _float("audio_out_seconds"),
        _int("input_tokens"),
        _int("output_tokens"),
        _int("total_tokens"),
    )
    op.create_index("ix_sessions_started_at", "sessions", ["started_at"])
    op.create_index("ix_sessions_key_started", "sessions", ["key_id", "started_at"])
    op.create_table(
        "session_items",
        _id("session_id", primary_key=True),
        _id(primary_key=True),
        _int("seq"),
        _str("previous_item_id", 64),
        _str("response_id", 64),
        sa.Column("in_conversation", sa.Boolean(), nullable=False),
        sa.Column("type", sa.String(40), nullable=False),
        _str("role", 20),
        _str("status", 20),
        _text("text"),
        _text("transcript"),
        _str("name", 200),
        _str("call_id", 200),
        _text("arguments"),
        _text("output"),
        _str("server_label", 200),
        sa.Column("extra", sa.JSON(), nullable=True),
        _int("truncated_audio_end_ms", nullable=True),
        _time("created_at"),
        _time("deleted_at", nullable=True),
        _session_fk(),
    )
    op.create_table(
        "session_responses",
        _id("session_id", primary_key=True),
        _id(primary_key=True),
        _int("seq"),
        sa.Column("in_conversation", sa.Boolean(), nullable=False),
        _str("input_item_id", 64),
        sa.Column("status", sa.String(20), nullable=False),
        _str("status_reason", 100),
        _time("created_at"),
        _time("done_at", nullable=True),
        _float("latency_ms", nullable=True),
        _float("first_output_ms", nullable=True),
        *(
            _int(f"{name}_tokens")
            for name in ("input", "output", "total", "input_text", "input_audio", "cached")
        ),
        _int("output_text_tokens"),
        _int("output_audio_tokens"),
        _session_fk(),
    )
    op.create_table(
        "session_errors",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _id("session_id"),
        _time("at"),
        _str("type", 100),
        _str("code", 100),
        _text("message"),
        _str("param", 200),
        _str("event_id", 200),
        _str("item_id", 64),
        _session_fk(),
    )
    op.create_index("ix_session_errors_session_id", "session_errors", ["session_id"])
    op.create_table(
        "session_audio",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _id("session_id"),
        _str("item_id", 64),
        sa.Column("direction", sa.String(10), nullable=False),
        sa.Column("format", sa.String(40), nullable=False),
        _time("created_at"),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        _session_fk(),
    )
    op.create_index("ix_session_audio_session_id", "session_audio", ["session_id"])


def downgrade() -> None:
    for table in (
        "session_audio",
        "session_errors",
        "session_responses",
        "session_items",
        "sessions",
        "client_secrets",
        "api_keys",
    ):
        op.drop_table(table)
