"""``SessionRecorder``: the audit trail of one session, written in the background, in batches.

Attach it as a session observer and await :meth:`SessionRecorder.close` when the session ends::

    recorder = store.recorder(session_id=session.id, key_id=key.id if key else None, transport="websocket")
    session.observers.append(recorder)
    try:
        ...  # run the session
    finally:
        await session.close()
        await recorder.close(reason="client_disconnected")

Observing an event only updates rows in memory (no I/O, no redaction). A writer task wakes every
``flush_interval_s`` (or at once on close) and writes what changed in one transaction, in the
store's thread pool; redaction runs there, before anything is stored. A failed write is kept and
retried with the next batch; ``close()`` writes everything still held.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from parley.store.db import Database
from parley.store.models import AudioRow, ErrorRow, ItemRow, ResponseRow, SessionRow
from parley.store.redact import Redactor
from parley.store.session_log import Batch, SessionLog

log = logging.getLogger("parley.store.recorder")

_ITEM_TEXTS = ("text", "transcript", "arguments", "output")
CLOSE_ATTEMPTS = 3


def redact_batch(batch: Batch, redactor: Redactor) -> Batch:
    """A copy of ``batch`` with every stored text redacted (items, error messages, instructions)."""
    session = dict(batch.session or {})
    config = session.get("config")
    if isinstance(config, dict) and isinstance(config.get("instructions"), str):
        session["config"] = {**config, "instructions": redactor.redact(config["instructions"])}
    items = []
    for item in batch.items:
        item = {**item, **{k: redactor.optional(item[k]) for k in _ITEM_TEXTS}}
        extra = item.get("extra")
        if isinstance(extra, dict) and isinstance(extra.get("reason"), str):
            item["extra"] = {**extra, "reason": redactor.redact(extra["reason"])}
        items.append(item)
    errors = [{**e, "message": redactor.optional(e["message"])} for e in batch.errors]
    return Batch(session or None, items, batch.responses, errors, batch.audio)


def write_batch(sessions: sessionmaker[Session], batch: Batch, redactor: Redactor | None) -> None:
    """Write one batch in one transaction (blocking; runs in the store's thread pool)."""
    if batch.session is None:
        return
    if redactor is not None:
        batch = redact_batch(batch, redactor)
    session = batch.session
    assert session is not None
    with sessions.begin() as s:
        s.merge(SessionRow(**session))
        s.flush()
        for item in batch.items:
            s.merge(ItemRow(**item))
        for response in batch.responses:
            s.merge(ResponseRow(**response))
        s.add_all([ErrorRow(**error) for error in batch.errors])
        s.add_all([AudioRow(**audio) for audio in batch.audio])


class SessionRecorder:
    """An observer (``recorder(direction, event)``) that keeps one session's audit trail."""

    def __init__(
        self,
        db: Database,
        session_log: SessionLog,
        *,
        redactor: Redactor | None = None,
        flush_interval_s: float = 1.0,
        heartbeat_s: float = 30.0,
        on_closed: Callable[[SessionRecorder], None] | None = None,
    ) -> None:
        self.log = session_log
        self._db = db
        self._redactor = redactor
        self._interval = flush_interval_s
        self._heartbeat = heartbeat_s
        self._on_closed = on_closed
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = False
        self._last_write = time.monotonic()
        self.failed_writes = 0

    @property
    def session_id(self) -> str | None:
        return self.log.session_id

    @property
    def closed(self) -> bool:
        return self._closed

    def __call__(self, direction: str, event: dict[str, Any]) -> None:
        if self._closed:  # events after the last write (close the session first, then this)
            return
        self.log.observe(direction, event)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="parley-recorder")

    async def flush(self) -> None:
        """Write everything observed so far, now (the writer keeps running)."""
        await self._write(attempts=1)

    async def close(self, reason: str | None = None) -> None:
        """Stamp the end and write everything still held; idempotent. Await it when a session ends."""
        if self._closing:
            if self._task is not None:
                await asyncio.shield(self._task)
            return
        self._closing = True
        self.log.end(reason)
        self._wake.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="parley-recorder")
        try:
            await asyncio.shield(self._task)  # a cancelled caller does not cut the last write short
        finally:
            if self._on_closed is not None and self._task.done():
                self._on_closed(self)

    async def _run(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            if time.monotonic() - self._last_write >= self._heartbeat:
                self.log.touch()
            await self._write(attempts=1)
        await self._write(attempts=CLOSE_ATTEMPTS)
        self._closed = True

    async def _write(self, attempts: int) -> None:
        async with self._lock:
            for attempt in range(attempts):
                batch = self.log.take()
                if batch.empty:
                    return
                try:
                    await self._db.run(write_batch, self._db.sessions, batch, self._redactor)
                except Exception:
                    self.failed_writes += 1
                    self.log.restore(batch)
                    log.exception("session %s: writing the audit trail failed", self.session_id)
                    if attempt + 1 < attempts:
                        await asyncio.sleep(0.1 * 2**attempt)
                else:
                    self._last_write = time.monotonic()
                    return
            if self._closing:
                log.error("session %s: gave up writing part of its audit trail", self.session_id)
