"""Reading and deleting recorded sessions: list, show, delete one, purge the old ones."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from parley.store.db import Database
from parley.store.models import SESSION_CHILDREN, AudioRow, ErrorRow, ItemRow, ResponseRow, SessionRow, utcnow


def _unix(value: datetime | None) -> float | None:
    return None if value is None else round(value.timestamp(), 3)


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: _unix(v) if isinstance(v, datetime) else v for k, v in row.items()}


@dataclass(frozen=True)
class SessionSummary:
    id: str
    key_id: str | None
    transport: str
    model: str | None
    session_type: str | None
    started_at: datetime
    ended_at: datetime | None
    end_reason: str | None
    audio_in_seconds: float
    audio_out_seconds: float
    input_tokens: int
    output_tokens: int
    total_tokens: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, times as Unix seconds, ``object: "parley.session"``."""
        return {"object": "parley.session", **_jsonable(asdict(self))}


@dataclass(frozen=True)
class SessionDetail(SessionSummary):
    """A session with its last config, items (in order of arrival), responses (usage and latency:
    the turns), errors and the recorded audio's sizes (bytes are fetched with ``audio()``)."""

    config: dict[str, Any] | None = None
    items: list[dict[str, Any]] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    audio: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        for name in ("items", "responses", "errors", "audio"):
            data[name] = [_jsonable(row) for row in data[name]]
        return data


_SUMMARY = [f for f in SessionSummary.__dataclass_fields__]


def _summary(row: SessionRow) -> SessionSummary:
    return SessionSummary(**{name: getattr(row, name) for name in _SUMMARY})


def _columns(row: Any, skip: tuple[str, ...] = ("session_id",)) -> dict[str, Any]:
    return {c.key: getattr(row, c.key) for c in row.__table__.columns if c.key not in skip}


class SessionArchive:
    """Blocking calls; from async code run them with ``await store.run(...)``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def list(
        self, *, key_id: str | None = None, limit: int = 20, since: datetime | None = None
    ) -> list[SessionSummary]:
        """Newest first; only ``key_id``'s sessions when given, only those started at ``since`` or later."""
        query = select(SessionRow).order_by(SessionRow.started_at.desc(), SessionRow.id).limit(limit)
        if key_id is not None:
            query = query.where(SessionRow.key_id == key_id)
        if since is not None:
            query = query.where(SessionRow.started_at >= since)
        with self._db.session() as s:
            return [_summary(row) for row in s.scalars(query)]

    def get(self, session_id: str, *, key_id: str | None = None) -> SessionDetail | None:
        """The session with everything recorded of it; ``None`` if unknown (or not ``key_id``'s)."""
        with self._db.session() as s:
            row = s.get(SessionRow, session_id)
            if row is None or (key_id is not None and row.key_id != key_id):
                return None
            items = s.scalars(select(ItemRow).where(ItemRow.session_id == session_id).order_by(ItemRow.seq))
            responses = s.scalars(
                select(ResponseRow).where(ResponseRow.session_id == session_id).order_by(ResponseRow.seq)
            )
            errors = s.scalars(
                select(ErrorRow).where(ErrorRow.session_id == session_id).order_by(ErrorRow.id)
            )
            audio = s.execute(
                select(
                    AudioRow.id,
                    AudioRow.item_id,
                    AudioRow.direction,
                    AudioRow.format,
                    func.length(AudioRow.data).label("bytes"),
                )
                .where(AudioRow.session_id == session_id)
                .order_by(AudioRow.id)
            )
            return SessionDetail(
                **asdict(_summary(row)),
                config=row.config,
                items=[_columns(i) for i in items],
                responses=[_columns(r) for r in responses],
                errors=[_columns(e, ("session_id", "id")) for e in errors],
                audio=[dict(a._mapping) for a in audio],
            )

    def audio(self, session_id: str, item_id: str, direction: str = "input") -> bytes | None:
        """The recorded audio of one item, in the format the detail lists; ``None`` if none."""
        query = (
            select(AudioRow.data)
            .where(
                AudioRow.session_id == session_id,
                AudioRow.item_id == item_id,
                AudioRow.direction == direction,
            )
            .order_by(AudioRow.id)
        )
        with self._db.session() as s:
            chunks = list(s.scalars(query))
        return b"".join(chunks) if chunks else None

    def delete(self, session_id: str, *, key_id: str | None = None) -> bool:
        """Delete a session and all its rows; ``False`` if unknown (or not ``key_id``'s)."""
        with self._db.session() as s, s.begin():
            row = s.get(SessionRow, session_id)
            if row is None or (key_id is not None and row.key_id != key_id):
                return False
            self._delete(s, [session_id])
            return True

    def purge_older_than(self, days: float, *, now: datetime | None = None) -> int:
        """Delete sessions that ended (or, never ended, were last written) more than ``days`` ago.
        Returns how many. ``days <= 0`` deletes nothing (retention 0 means keep forever)."""
        if days <= 0:
            return 0
        cutoff = (now or utcnow()) - timedelta(days=days)
        last = func.coalesce(SessionRow.ended_at, SessionRow.updated_at)
        with self._db.session() as s, s.begin():
            ids = list(s.scalars(select(SessionRow.id).where(last < cutoff)))
            for start in range(0, len(ids), 500):
                self._delete(s, ids[start : start + 500])
            return len(ids)

    @staticmethod
    def _delete(s: Session, ids: Sequence[str]) -> None:
        for table in SESSION_CHILDREN:
            column = table.__table__.c.session_id
            s.execute(delete(table).where(column.in_(ids)))
        s.execute(delete(SessionRow).where(SessionRow.id.in_(ids)))
