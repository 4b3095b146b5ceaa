"""API keys kept in the database: create, list, revoke, verify, and per-key usage.

A key is ``sk-parley-`` and 40 URL-safe random characters (240 bits). Only its SHA-256 is stored:
with that much entropy an unsalted fast hash is safe, and it lets ``verify`` find the key by an
indexed lookup. The visible ``prefix`` (``sk-parley-`` and 6 more characters) identifies a key in
listings and can be used to revoke it.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from parley import ids
from parley.store.db import Database
from parley.store.models import ApiKeyRow, SessionRow, utcnow

KEY_PREFIX = "sk-parley-"
_VISIBLE = len(KEY_PREFIX) + 6


class KeyLookupError(LookupError):
    """Base of the key lookup errors; ``str()`` is a message for the user."""


class KeyNotFound(KeyLookupError):
    pass


class AmbiguousKey(KeyLookupError):
    pass


class DuplicateKeyName(ValueError):
    pass


@dataclass(frozen=True)
class KeyLimits:
    """Per-key limits; ``None`` means no limit (``max_session_minutes``: the server's default)."""

    max_concurrent_sessions: int | None = None
    session_minutes_per_day: float | None = None
    max_session_minutes: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_concurrent_sessions", "session_minutes_per_day", "max_session_minutes"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    limits: KeyLimits

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(30)


def _record(row: ApiKeyRow) -> ApiKey:
    return ApiKey(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        limits=KeyLimits(row.max_concurrent_sessions, row.session_minutes_per_day, row.max_session_minutes),
    )


def _start_of_day(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


class KeyStore:
    """Blocking calls; from async code run them with ``await store.run(store.keys.verify, key)``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, name: str, limits: KeyLimits | None = None) -> tuple[ApiKey, str]:
        """A new key: its record and the plaintext, which is not stored and cannot be shown again."""
        name = name.strip()
        if not name:
            raise ValueError("a key needs a name")
        limits = limits or KeyLimits()
        plaintext = new_key()
        with self._db.session() as s, s.begin():
            taken = s.scalar(
                select(ApiKeyRow.id).where(ApiKeyRow.name == name, ApiKeyRow.revoked_at.is_(None))
            )
            if taken is not None:
                raise DuplicateKeyName(f"an active key named '{name}' already exists ({taken})")
            row = ApiKeyRow(
                id=ids.new_id("key_", 16),
                name=name,
                prefix=plaintext[:_VISIBLE],
                key_hash=hash_key(plaintext),
                created_at=utcnow(),
                revoked_at=None,
                max_concurrent_sessions=limits.max_concurrent_sessions,
                session_minutes_per_day=limits.session_minutes_per_day,
                max_session_minutes=limits.max_session_minutes,
            )
            s.add(row)
        return _record(row), plaintext

    def list(self, *, include_revoked: bool = True) -> list[ApiKey]:
        query = select(ApiKeyRow).order_by(ApiKeyRow.created_at, ApiKeyRow.id)
        if not include_revoked:
            query = query.where(ApiKeyRow.revoked_at.is_(None))
        with self._db.session() as s:
            return [_record(row) for row in s.scalars(query)]

    def any_active(self) -> bool:
        """Whether any key is not revoked (one indexed row read, for every dev-mode request)."""
        query = select(ApiKeyRow.id).where(ApiKeyRow.revoked_at.is_(None)).limit(1)
        with self._db.session() as s:
            return s.scalar(query) is not None

    def get(self, key_id: str) -> ApiKey | None:
        with self._db.session() as s:
            row = s.get(ApiKeyRow, key_id)
            return None if row is None else _record(row)

    def find(self, ref: str) -> ApiKey:
        """The key whose id, name (active keys first) or visible prefix is ``ref``."""
        with self._db.session() as s:
            return _record(self._find(s, ref))

    def _find(self, s: Session, ref: str) -> ApiKeyRow:
        row = s.get(ApiKeyRow, ref)
        if row is not None:
            return row
        rows = list(s.scalars(select(ApiKeyRow).where(or_(ApiKeyRow.name == ref, ApiKeyRow.prefix == ref))))
        if len(rows) > 1:  # an active key wins over revoked ones of the same name
            rows = [r for r in rows if r.revoked_at is None] or rows
        if not rows:
            raise KeyNotFound(f"no API key with id, name or prefix '{ref}'")
        if len(rows) > 1:
            found = ", ".join(f"{r.id} ({r.name})" for r in rows)
            raise AmbiguousKey(f"'{ref}' matches several keys: {found}; use the id")
        return rows[0]

    def revoke(self, ref: str) -> ApiKey:
        """Revoke by id, name or prefix; revoking a revoked key keeps its first revocation time."""
        with self._db.session() as s, s.begin():
            row = self._find(s, ref)
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            return _record(row)

    def verify(self, plaintext: str) -> ApiKey | None:
        """The active key whose plaintext this is, else ``None`` (unknown or revoked)."""
        if not plaintext.startswith(KEY_PREFIX):
            return None
        digest = hash_key(plaintext)
        with self._db.session() as s:
            row = s.scalar(select(ApiKeyRow).where(ApiKeyRow.key_hash == digest))
            if row is None or not hmac.compare_digest(row.key_hash, digest) or row.revoked_at is not None:
                return None
            return _record(row)

    def minutes_used_today(self, key_id: str, *, now: datetime | None = None) -> float:
        """Minutes of sessions of this key in the current UTC day (``now``'s day), parts of sessions
        that began yesterday included. An open session counts up to its last write (the recorder
        writes at least every ``heartbeat_s``)."""
        now = now or utcnow()
        day = _start_of_day(now)
        query = select(SessionRow.started_at, SessionRow.ended_at, SessionRow.updated_at).where(
            SessionRow.key_id == key_id,
            SessionRow.started_at < now,
            or_(SessionRow.ended_at.is_(None), SessionRow.ended_at > day),
        )
        total = timedelta()
        with self._db.session() as s:
            for started, ended, updated in s.execute(query):
                end = min(ended or updated, now)
                start = max(started, day)
                if end > start:
                    total += end - start
        return total.total_seconds() / 60

    def open_sessions(self, key_id: str, *, stale_after_s: float = 120.0, now: datetime | None = None) -> int:
        """Sessions of this key that have not ended and were written to in the last ``stale_after_s``
        (on any node): for ``max_concurrent_sessions`` across a cluster. A crashed node's sessions
        stop counting once stale."""
        return len(self.open_session_ids(key_id, stale_after_s=stale_after_s, now=now))

    def open_session_ids(
        self, key_id: str, *, stale_after_s: float = 120.0, now: datetime | None = None
    ) -> builtins.list[str]:
        """The ids of :meth:`open_sessions`."""
        now = now or utcnow()
        query = select(SessionRow.id).where(
            SessionRow.key_id == key_id,
            SessionRow.ended_at.is_(None),
            SessionRow.updated_at >= now - timedelta(seconds=stale_after_s),
        )
        with self._db.session() as s:
            return list(s.scalars(query))
