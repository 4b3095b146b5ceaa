"""Persistence for operating Parley as a service: API keys and their limits, client secrets, the
audit trail of sessions (with redaction and optional audio), and reading and deleting it.

SQLite by default (``<data dir>/parley.db``), PostgreSQL with ``postgresql+psycopg://…``; the
schema is migrated with Alembic on :func:`open_store`.
"""

from parley.store.db import Database, default_data_dir, display_url, resolve_database_url
from parley.store.keys import AmbiguousKey, ApiKey, DuplicateKeyName, KeyLimits, KeyLookupError, KeyNotFound
from parley.store.recorder import SessionRecorder
from parley.store.redact import Redactor
from parley.store.secrets import ClientSecret
from parley.store.sessions import SessionDetail, SessionSummary
from parley.store.store import Store, open_store, retention_loop

__all__ = [
    "AmbiguousKey",
    "ApiKey",
    "ClientSecret",
    "Database",
    "DuplicateKeyName",
    "KeyLimits",
    "KeyLookupError",
    "KeyNotFound",
    "Redactor",
    "SessionDetail",
    "SessionRecorder",
    "SessionSummary",
    "Store",
    "default_data_dir",
    "display_url",
    "open_store",
    "resolve_database_url",
    "retention_loop",
]
