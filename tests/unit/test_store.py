"""The store on SQLite and on a real PostgreSQL: migrations, keys, client secrets, the session
archive (list, show, delete, purge), the ``parley keys|sessions`` commands and the REST routes."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, select

from parley.cli_admin import add_admin_commands, run_admin
from parley.server.admin_routes import PARLEY_KEY, add_admin_routes
from parley.store import AmbiguousKey, DuplicateKeyName, KeyLimits, KeyNotFound, Store, open_store
from parley.store.db import VERSION_TABLE, alembic_config, current_revision, resolve_database_url
from parley.store.models import SESSION_CHILDREN, Base, ErrorRow, ItemRow, SessionRow

pytest_plugins = ("tests.postgres",)

NOON = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    store = open_store(database_url)
    yield store
    store.close()


def add_session(
    store: Store,
    session_id: str,
    *,
    key_id: str | None = None,
    started: datetime = NOON,
    minutes: float | None = 10,
    updated_minutes: float = 0,
) -> None:
    """A recorded session row with one item and one error, written directly."""
    ended = started + timedelta(minutes=minutes) if minutes is not None else None
    with store.db.session() as s, s.begin():
        s.add(
            SessionRow(
                id=session_id,
                key_id=key_id,
                transport="websocket",
                model="gpt-realtime",
                session_type="realtime",
                started_at=started,
                updated_at=ended or started + timedelta(minutes=updated_minutes),
                ended_at=ended,
                audio_in_seconds=1.5,
                audio_out_seconds=2.0,
                input_tokens=10,
                output_tokens=5,
                total_tokens=15,
            )
        )
        s.flush()
        s.add(
            ItemRow(
                session_id=session_id,
                id="item_1",
                seq=0,
                in_conversation=True,
                type="message",
                created_at=started,
            )
        )
        s.add(ErrorRow(session_id=session_id, at=started, code="invalid_value", message="bad"))


def row_count(store: Store) -> int:
    with store.db.session() as s:
        tables = (SessionRow, *SESSION_CHILDREN)
        return sum(int(s.scalar(select(func.count()).select_from(t)) or 0) for t in tables)


# -- migrations -------------------------------------------------------------------------------------


def test_migrations_create_the_models_schema_and_reopen_is_a_no_op(database_url: str) -> None:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    first = open_store(database_url)
    first.keys.create("survivor")
    first.close()
    again = open_store(database_url)  # idempotent: nothing to do, data kept
    assert current_revision(again.db.engine) == head == "0001"
    assert [k.name for k in again.keys.list()] == ["survivor"]
    with again.db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = [d for d in compare_metadata(context, Base.metadata) if VERSION_TABLE not in str(d)]
    assert diff == []
    again.close()


def test_default_url_is_sqlite_in_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PARLEY_DATABASE_URL", raising=False)
    monkeypatch.setenv("PARLEY_DATA_DIR", str(tmp_path / "data"))
    assert resolve_database_url() == f"sqlite:///{tmp_path / 'data' / 'parley.db'}"
    store = open_store()
    store.close()
    assert (tmp_path / "data" / "parley.db").exists()
    monkeypatch.setenv("PARLEY_DATABASE_URL", "sqlite:///elsewhere.db")
    assert resolve_database_url() == "sqlite:///elsewhere.db"
    assert resolve_database_url("sqlite:///given.db") == "sqlite:///given.db"


# -- keys -------------------------------------------------------------------------------------------


def test_keys_create_verify_list_revoke(store: Store) -> None:
    limits = KeyLimits(max_concurrent_sessions=2, session_minutes_per_day=30.5, max_session_minutes=10)
    assert not store.keys.any_active()
    key, plaintext = store.keys.create("alice", limits)
    assert store.keys.any_active()
    assert plaintext.startswith("sk-parley-") and len(plaintext) == 50
    assert key.id.startswith("key_") and plaintext.startswith(key.prefix) and len(key.prefix) == 16
    assert key.limits == limits and key.revoked_at is None
    assert store.keys.verify(plaintext) == key
    assert store.keys.verify(plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B")) is None
    assert store.keys.verify("sk-other") is None
    bob, bob_plain = store.keys.create("bob")
    assert bob.limits == KeyLimits()
    assert [k.name for k in store.keys.list()] == ["alice", "bob"]
    with pytest.raises(DuplicateKeyName):
        store.keys.create("alice")

    revoked = store.keys.revoke("alice")
    assert revoked.revoked_at is not None and store.keys.verify(plaintext) is None
    assert store.keys.verify(bob_plain) == bob
    assert store.keys.revoke(bob.prefix).id == bob.id  # by prefix
    assert store.keys.revoke(bob.id).revoked_at == store.keys.get(bob.id).revoked_at  # type: ignore[union-attr]
    assert store.keys.list(include_revoked=False) == []
    assert not store.keys.any_active()
    with pytest.raises(KeyNotFound):
        store.keys.revoke("nobody")


def test_a_name_is_reused_after_revocation_and_ambiguity_is_reported(store: Store) -> None:
    old, _ = store.keys.create("svc")
    store.keys.revoke(old.id)
    new, _ = store.keys.create("svc")
    assert store.keys.find("svc").id == new.id  # the active one wins
    store.keys.revoke("svc")
    with pytest.raises(AmbiguousKey, match=old.id):
        store.keys.find("svc")


def test_minutes_used_today_and_open_sessions(store: Store) -> None:
    key, _ = store.keys.create("metered")
    other, _ = store.keys.create("other")
    midnight = NOON.replace(hour=0)
    add_session(store, "s_yesterday", key_id=key.id, started=midnight - timedelta(minutes=5), minutes=15)
    add_session(store, "s_morning", key_id=key.id, started=NOON - timedelta(hours=2), minutes=12)
    add_session(
        store, "s_open", key_id=key.id, started=NOON - timedelta(minutes=30), minutes=None, updated_minutes=6
    )
    add_session(store, "s_old", key_id=key.id, started=midnight - timedelta(days=1), minutes=50)
    add_session(store, "s_other", key_id=other.id, started=NOON - timedelta(hours=1), minutes=40)
    assert store.keys.minutes_used_today(key.id, now=NOON) == pytest.approx(10 + 12 + 6)
    assert store.keys.minutes_used_today(other.id, now=NOON) == pytest.approx(40)
    assert store.keys.open_sessions(key.id, now=NOON - timedelta(minutes=23)) == 1
    assert store.keys.open_sessions(key.id, now=NOON) == 0  # not written for 24 minutes: stale


def test_key_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_concurrent_sessions"):
        KeyLimits(max_concurrent_sessions=0)


# -- client secrets ---------------------------------------------------------------------------------


def test_client_secrets_expire_and_single_use_ones_are_used_once(store: Store) -> None:
    key, _ = store.keys.create("minter")
    config = {"type": "realtime", "instructions": "Be brief."}
    secret, value = store.secrets.create(config, key_id=key.id, ttl_s=60, now=NOON)
    assert value.startswith("ek_") and secret.expires_at == NOON + timedelta(seconds=60)
    assert store.secrets.verify(value, now=NOON + timedelta(seconds=59)) == secret
    assert store.secrets.verify(value, now=NOON + timedelta(seconds=60)) is None
    assert store.secrets.verify("ek_unknown", now=NOON) is None
    used = store.secrets.consume(value, now=NOON + timedelta(seconds=1))
    assert used is not None and used.uses == 1 and used.session_config == config and used.key_id == key.id
    assert store.secrets.consume(value, now=NOON + timedelta(seconds=2)).uses == 2  # type: ignore[union-attr]
    assert store.secrets.consume(value, now=NOON + timedelta(seconds=61)) is None

    _, once = store.secrets.create(config, single_use=True, now=NOON)
    assert store.secrets.consume(once, now=NOON) is not None
    assert store.secrets.consume(once, now=NOON) is None
    assert store.secrets.verify(once, now=NOON) is None
    assert store.secrets.purge_expired(now=NOON + timedelta(hours=1)) == 2


# -- archive ----------------------------------------------------------------------------------------


def test_list_get_delete_and_key_scoping(store: Store) -> None:
    key, _ = store.keys.create("owner")
    add_session(store, "s_1", key_id=key.id, started=NOON - timedelta(hours=1))
    add_session(store, "s_2", started=NOON)
    assert [s.id for s in store.sessions.list()] == ["s_2", "s_1"]
    assert [s.id for s in store.sessions.list(key_id=key.id)] == ["s_1"]
    assert [s.id for s in store.sessions.list(since=NOON - timedelta(minutes=1))] == ["s_2"]
    assert [s.id for s in store.sessions.list(limit=1)] == ["s_2"]
    detail = store.sessions.get("s_1")
    assert (
        detail is not None
        and detail.items[0]["id"] == "item_1"
        and detail.errors[0]["code"] == "invalid_value"
    )
    assert store.sessions.get("s_2", key_id=key.id) is None
    assert store.sessions.delete("s_2", key_id=key.id) is False
    before = row_count(store)
    assert store.sessions.delete("s_1") is True
    assert row_count(store) == before - 3 and store.sessions.get("s_1") is None
    assert store.sessions.delete("s_1") is False


def test_purge_older_than(store: Store) -> None:
    add_session(store, "s_old", started=NOON - timedelta(days=40))
    add_session(store, "s_crashed", started=NOON - timedelta(days=40), minutes=None, updated_minutes=5)
    add_session(store, "s_recent", started=NOON - timedelta(days=2))
    assert store.sessions.purge_older_than(0, now=NOON) == 0  # 0 = keep forever
    assert store.sessions.purge_older_than(30, now=NOON) == 2
    assert [s.id for s in store.sessions.list()] == ["s_recent"]
    assert row_count(store) == 3


# -- the parley keys / sessions commands --------------------------------------------------------------


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="parley")
    add_admin_commands(parser.add_subparsers(dest="command", required=True))
    return run_admin(parser.parse_args(argv))


def test_cli_keys(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    db = ("--database-url", database_url)
    assert (
        cli(
            "keys",
            "create",
            "--name",
            "kiosk",
            "--max-concurrent-sessions",
            "3",
            "--max-session-minutes",
            "5",
            *db,
        )
        == 0
    )
    plaintext = capsys.readouterr().out.strip().splitlines()[-1]
    with open_store(database_url) as store:
        key = store.keys.verify(plaintext)
        assert key is not None and key.limits == KeyLimits(3, None, 5)
    assert cli("keys", "list", *db) == 0
    listing = capsys.readouterr().out
    assert "kiosk" in listing and key.prefix in listing and "concurrent=3 max_min=5" in listing
    assert plaintext not in listing
    assert cli("keys", "revoke", "kiosk", *db) == 0
    assert "Revoked" in capsys.readouterr().out
    assert cli("keys", "revoke", "nope", *db) == 1
    assert "no API key with id, name or prefix 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli("keys", "create", "--name", "x", "--session-minutes-per-day", "0", *db)
    assert exc.value.code == 2


def test_cli_sessions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    db = ("--database-url", url)
    with open_store(url) as store:
        add_session(store, "s_a", started=datetime.now(UTC) - timedelta(days=9))
        add_session(store, "s_b", started=datetime.now(UTC) - timedelta(hours=1))
    assert cli("sessions", "list", *db) == 0
    out = capsys.readouterr().out
    assert "s_a" in out and "s_b" in out and "0:10:00" in out
    assert cli("sessions", "show", "s_b", *db) == 0
    assert '"id": "s_b"' in capsys.readouterr().out
    assert cli("sessions", "show", "s_zzz", *db) == 1
    assert "no session 's_zzz'" in capsys.readouterr().err
    assert cli("sessions", "purge", "--older-than-days", "7", *db) == 0
    assert "Deleted 1 session(s)" in capsys.readouterr().out
    assert cli("sessions", "delete", "s_b", *db) == 0
    assert cli("sessions", "delete", "s_b", *db) == 1
    capsys.readouterr()
    assert cli("sessions", "list", "--database-url", "postgresql+psycopg://nobody@127.0.0.1:1/x") == 1
    assert "cannot open the database" in capsys.readouterr().err


# -- REST -------------------------------------------------------------------------------------------


async def test_rest_routes_scope_sessions_to_the_calling_key(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'p.db'}")
    mine, _ = store.keys.create("mine")
    add_session(store, "s_mine", key_id=mine.id, started=NOON - timedelta(minutes=1))
    add_session(store, "s_other", started=NOON)

    @web.middleware
    async def as_key(request: web.Request, handler: web.RequestHandler) -> web.StreamResponse:
        if request.headers.get("X-Test-Key") == "mine":
            request[PARLEY_KEY] = mine
        return await handler(request)

    app = web.Application(middlewares=[as_key])
    add_admin_routes(app, store)
    async with TestClient(TestServer(app)) as client:
        listing = await (await client.get("/v1/parley/sessions")).json()
        assert [s["id"] for s in listing["data"]] == ["s_other", "s_mine"] and listing["has_more"] is False
        page = await (await client.get("/v1/parley/sessions?limit=1")).json()
        assert page["has_more"] is True and len(page["data"]) == 1
        headers = {"X-Test-Key": "mine"}
        listing = await (await client.get("/v1/parley/sessions", headers=headers)).json()
        assert [s["id"] for s in listing["data"]] == ["s_mine"]
        hidden = await client.get("/v1/parley/sessions/s_other", headers=headers)
        assert hidden.status == 404
        assert (await hidden.json())["error"]["code"] == "session_not_found"
        assert (await client.delete("/v1/parley/sessions/s_other", headers=headers)).status == 404
        shown = await (await client.get("/v1/parley/sessions/s_mine", headers=headers)).json()
        assert shown["object"] == "parley.session" and shown["items"][0]["id"] == "item_1"
        bad = await client.get("/v1/parley/sessions?limit=0")
        assert bad.status == 400 and (await bad.json())["error"]["param"] == "limit"
        deleted = await client.delete("/v1/parley/sessions/s_mine", headers=headers)
        assert (await deleted.json()) == {"id": "s_mine", "object": "parley.session.deleted", "deleted": True}
        assert (await client.delete("/v1/parley/sessions/s_other")).status == 200
    await store.aclose()
