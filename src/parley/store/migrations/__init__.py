"""Alembic migrations of Parley's store (run by :func:`parley.store.db.migrate`)."""
