"""Alembic environment: runs on the connection :func:`parley.store.db.migrate` passes in.

For ad-hoc use (``alembic -x url=... upgrade head`` with a config whose ``script_location`` points
here) it can also connect on its own, or emit SQL in offline mode.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from parley.store.models import Base

config = context.config
VERSION_TABLE = config.get_main_option("version_table") or "parley_alembic_version"


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: pass -x url=... or set sqlalchemy.url")
    return url


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=Base.metadata, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()
else:
    given = config.attributes.get("connection")
    if given is not None:
        _configure(given)
    else:
        engine = create_engine(_url())
        with engine.begin() as connection:
            _configure(connection)
        engine.dispose()
