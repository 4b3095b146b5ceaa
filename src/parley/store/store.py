"""The store: one object for keys, client secrets, session recording and the session archive."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

from parley.store.db import Database, create_db_engine, display_url, migrate, resolve_database_url
from parley.store.keys import KeyStore
from parley.store.recorder import SessionRecorder
from parley.store.redact import Redactor
from parley.store.secrets import SecretStore
from parley.store.session_log import SessionLog
from parley.store.sessions import SessionArchive

log = logging.getLogger("parley.store")

P = ParamSpec("P")
T = TypeVar("T")


class Store:
    """``keys``, ``secrets`` and ``sessions`` have blocking methods (for the CLI, or through
    :meth:`run` from async code); :meth:`recorder` makes the observer that records one session."""

    def __init__(self, db: Database, *, url: str) -> None:
        self.db = db
        self.url = url
        self.keys = KeyStore(db)
        self.secrets = SecretStore(db)
        self.sessions = SessionArchive(db)
        self._recorders: set[SessionRecorder] = set()

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a blocking store call off the event loop: ``await store.run(store.keys.verify, key)``."""
        return await self.db.run(fn, *args, **kwargs)

    def recorder(
        self,
        *,
        session_id: str | None = None,
        key_id: str | None = None,
        transport: str = "websocket",
        model: str | None = None,
        redactor: Redactor | None = None,
        record_audio: bool = False,
        flush_interval_s: float = 1.0,
        heartbeat_s: float = 30.0,
    ) -> SessionRecorder:
        """A recorder for one session; append it to ``session.observers`` (before ``start()``, or
        pass ``session_id``), and await its ``close()`` after the session's.

        ``redactor``: ``Redactor(patterns)`` when ``PARLEY_REDACT`` is on, else ``None``.
        ``record_audio``: ``PARLEY_RECORD_AUDIO``. ``key_id``: the database key that opened the
        session (``None`` for the operator's keys or dev mode)."""
        session_log = SessionLog(
            session_id=session_id, key_id=key_id, transport=transport, model=model, record_audio=record_audio
        )
        recorder = SessionRecorder(
            self.db,
            session_log,
            redactor=redactor,
            flush_interval_s=flush_interval_s,
            heartbeat_s=heartbeat_s,
            on_closed=self._recorders.discard,
        )
        self._recorders.add(recorder)
        return recorder

    async def aclose(self, reason: str = "server_shutdown") -> None:
        """Close the recorders still open (writing all they hold), then the database. For the
        server's shutdown, after its sessions were closed."""
        recorders = list(self._recorders)
        if recorders:
            log.info("writing the audit trail of %d open session(s)", len(recorders))
        for recorder in recorders:
            with contextlib.suppress(Exception):
                await recorder.close(reason)
        await asyncio.to_thread(self.db.close)

    def close(self) -> None:
        """Close the database (blocking; for the CLI). Open recorders are not flushed: use aclose()."""
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_store(
    url: str | None = None, *, data_dir: str | Path | None = None, migrate_schema: bool = True
) -> Store:
    """Connect to the database (``url``, else ``PARLEY_DATABASE_URL``, else SQLite at
    ``<data_dir>/parley.db``) and bring its schema up to date. Blocking: from async code use
    ``await asyncio.to_thread(open_store, url)``."""
    resolved = resolve_database_url(url, data_dir)
    engine = create_db_engine(resolved)
    try:
        if migrate_schema:
            migrate(engine)
    except Exception:
        engine.dispose()
        raise
    log.debug("store open at %s", display_url(resolved))
    return Store(Database(engine), url=resolved)


async def retention_loop(store: Store, days: float, *, every_s: float = 3600.0) -> None:
    """Purge sessions older than ``days`` now and every ``every_s`` (``PARLEY_RETENTION_DAYS``;
    0 keeps everything, and this returns at once). Run it as a task; cancel it on shutdown."""
    if days <= 0:
        return
    while True:
        try:
            purged = await store.run(store.sessions.purge_older_than, days)
            secrets = await store.run(store.secrets.purge_expired)
            if purged or secrets:
                log.info("retention: deleted %d session(s) and %d expired client secret(s)", purged, secrets)
        except Exception:
            log.exception("retention: purging old sessions failed")
        await asyncio.sleep(every_s)
