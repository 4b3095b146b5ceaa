"""Connecting to the database: URL resolution, the engine, migrations, and a thread pool for calls.

The store uses SQLAlchemy's synchronous engine. Async code (the server) runs store calls in the
store's own small thread pool with :meth:`Database.run`, so database work never blocks the event
loop and never competes with engine work for the default executor.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

P = ParamSpec("P")
T = TypeVar("T")

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "parley_alembic_version"
_MIGRATION_LOCK = 0x7061726C6579  # "parley": a PostgreSQL advisory lock so nodes migrate one at a time


def default_data_dir() -> Path:
    """``PARLEY_DATA_DIR``, else ``~/.local/share/parley``."""
    configured = os.environ.get("PARLEY_DATA_DIR")
    return Path(configured).expanduser() if configured else Path("~/.local/share/parley").expanduser()


def resolve_database_url(url: str | None = None, data_dir: str | Path | None = None) -> str:
    """The database to use: ``url``, else ``PARLEY_DATABASE_URL``, else SQLite in the data directory."""
    url = url or os.environ.get("PARLEY_DATABASE_URL") or None
    if url:
        return url
    directory = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    return f"sqlite:///{directory / 'parley.db'}"


def display_url(url: str | URL) -> str:
    """The URL with its password hidden, for messages and logs."""
    return make_url(url).render_as_string(hide_password=True)


def _sqlite_pragmas(wal: bool) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        if wal:  # readers do not wait for the writer; NORMAL sync is safe in WAL mode
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return on_connect


def create_db_engine(url: str) -> Engine:
    """An engine for ``url``; for a SQLite file, its directory is created and WAL mode switched on."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True)
    database = parsed.database or ""
    memory = database in ("", ":memory:")
    if memory:
        engine = create_engine(parsed, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"check_same_thread": False, "timeout": 30})
    event.listen(engine, "connect", _sqlite_pragmas(wal=not memory))
    return engine


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("version_table", VERSION_TABLE)
    return config


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (idempotent). On PostgreSQL, concurrent nodes take turns."""
    config = alembic_config()
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


class Database:
    """An engine, its session factory, and the thread pool that runs store calls for async code."""

    def __init__(self, engine: Engine, *, workers: int | None = None) -> None:
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)
        if workers is None:
            workers = 1 if engine.dialect.name == "sqlite" else 8
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="parley-store")

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def session(self) -> Session:
        return self.sessions()

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a blocking store call in the store's thread pool: ``await db.run(keys.verify, key)``."""
        loop = asyncio.get_running_loop()
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return await loop.run_in_executor(self._executor, call)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.engine.dispose()
