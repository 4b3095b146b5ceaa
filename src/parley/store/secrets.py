"""Ephemeral client secrets (``ek_…``): short-lived tokens a backend mints for a browser or phone.

A secret carries the session config it was minted with and the key that minted it (``None`` for
the operator's configured keys). Only its SHA-256 is stored. It may open several sessions until
it expires, unless it was made ``single_use``; a session it opened outlives it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select, update

from parley import ids
from parley.store.db import Database
from parley.store.models import ClientSecretRow, utcnow

SECRET_PREFIX = "ek_"
DEFAULT_TTL_S = 600.0


@dataclass(frozen=True)
class ClientSecret:
    id: str
    key_id: str | None
    session_config: dict[str, Any]
    created_at: datetime
    expires_at: datetime
    single_use: bool
    uses: int

    @property
    def expires_at_unix(self) -> int:
        return int(self.expires_at.timestamp())


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _record(row: ClientSecretRow) -> ClientSecret:
    return ClientSecret(
        id=row.id,
        key_id=row.key_id,
        session_config=row.session_config,
        created_at=row.created_at,
        expires_at=row.expires_at,
        single_use=row.single_use,
        uses=row.uses,
    )


class SecretStore:
    """Blocking calls; from async code run them with ``await store.run(...)``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def create(
        self,
        session_config: dict[str, Any],
        *,
        key_id: str | None = None,
        ttl_s: float = DEFAULT_TTL_S,
        single_use: bool = False,
        now: datetime | None = None,
    ) -> tuple[ClientSecret, str]:
        """A new secret valid for ``ttl_s`` seconds: its record and its value (shown once)."""
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be positive, got {ttl_s}")
        now = now or utcnow()
        value = SECRET_PREFIX + secrets.token_urlsafe(30)
        row = ClientSecretRow(
            id=ids.new_id("cs_", 16),
            value_hash=_digest(value),
            key_id=key_id,
            session_config=session_config,
            created_at=now,
            expires_at=now + timedelta(seconds=ttl_s),
            single_use=single_use,
            uses=0,
            last_used_at=None,
        )
        with self._db.session() as s, s.begin():
            s.add(row)
        return _record(row), value

    def verify(self, value: str, *, now: datetime | None = None) -> ClientSecret | None:
        """The secret if it exists, has not expired and (single-use) was not used; read only."""
        now = now or utcnow()
        digest = _digest(value)
        with self._db.session() as s:
            row = s.scalar(select(ClientSecretRow).where(ClientSecretRow.value_hash == digest))
            if row is None or not hmac.compare_digest(row.value_hash, digest):
                return None
            if row.expires_at <= now or (row.single_use and row.uses > 0):
                return None
            return _record(row)

    def consume(self, value: str, *, now: datetime | None = None) -> ClientSecret | None:
        """Like :meth:`verify`, and counts a use (atomically: a single-use secret opens one session
        even when two nodes race for it). Call it when a session is opened with the secret."""
        now = now or utcnow()
        digest = _digest(value)
        claim = (
            update(ClientSecretRow)
            .where(
                ClientSecretRow.value_hash == digest,
                ClientSecretRow.expires_at > now,
                or_(ClientSecretRow.single_use.is_(False), ClientSecretRow.uses == 0),
            )
            .values(uses=ClientSecretRow.uses + 1, last_used_at=now)
            .execution_options(synchronize_session=False)
        )
        with self._db.session() as s, s.begin():
            if s.execute(claim).rowcount != 1:  # type: ignore[attr-defined]
                return None
            row = s.scalar(select(ClientSecretRow).where(ClientSecretRow.value_hash == digest))
            return None if row is None else _record(row)

    def purge_expired(self, *, now: datetime | None = None) -> int:
        """Delete expired secrets; returns how many."""
        now = now or utcnow()
        with self._db.session() as s, s.begin():
            result = s.execute(delete(ClientSecretRow).where(ClientSecretRow.expires_at <= now))
            return int(result.rowcount)  # type: ignore[attr-defined]
