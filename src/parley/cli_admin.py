"""``parley keys …`` and ``parley sessions …``: manage API keys and the recorded sessions.

Wire into the ``parley`` command with :func:`add_admin_commands` on its subparsers, and when the
chosen command is one of :data:`ADMIN_COMMANDS`, return :func:`run_admin`'s exit code. Every
command takes ``--database-url`` (else ``PARLEY_DATABASE_URL``, else SQLite in ``PARLEY_DATA_DIR``).
Exit codes: 0 done, 1 failed (unknown id, database unreachable…), 2 bad usage (argparse).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from alembic.util.exc import CommandError
from sqlalchemy.exc import SQLAlchemyError

from parley.store import (
    ApiKey,
    DuplicateKeyName,
    KeyLimits,
    KeyLookupError,
    Store,
    display_url,
    open_store,
    resolve_database_url,
)

ADMIN_COMMANDS = ("keys", "sessions")


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def _leaf(
    group: argparse._SubParsersAction[argparse.ArgumentParser], name: str, text: str
) -> argparse.ArgumentParser:
    parser = group.add_parser(name, help=text, description=text)
    parser.add_argument(
        "--database-url",
        default=None,
        help="SQLAlchemy URL of the database, e.g. postgresql+psycopg://user:pass@host/parley "
        "[env PARLEY_DATABASE_URL; default: SQLite at $PARLEY_DATA_DIR/parley.db]",
    )
    return parser


def add_admin_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``keys`` and ``sessions`` (with their subcommands) to a ``parley`` subparsers object."""
    keys = subparsers.add_parser("keys", help="manage API keys kept in the database")
    keys.set_defaults(admin_group="keys")
    key_actions = keys.add_subparsers(dest="admin_action", required=True)
    create = _leaf(key_actions, "create", "create a key and print it (once: only its hash is kept)")
    create.add_argument("--name", required=True, help="a name for the key (who or what uses it)")
    create.add_argument("--max-concurrent-sessions", type=_positive(int), metavar="K")
    create.add_argument("--session-minutes-per-day", type=_positive(float), metavar="M")
    create.add_argument(
        "--max-session-minutes", type=_positive(float), metavar="L", help="default: the server's limit"
    )
    _leaf(key_actions, "list", "list keys with their limits")
    revoke = _leaf(key_actions, "revoke", "revoke a key: it stops working at once")
    revoke.add_argument("key", metavar="ID_OR_NAME", help="the key's id, name or prefix")

    sessions = subparsers.add_parser("sessions", help="list, show and delete recorded sessions")
    sessions.set_defaults(admin_group="sessions")
    session_actions = sessions.add_subparsers(dest="admin_action", required=True)
    listing = _leaf(session_actions, "list", "list recorded sessions, newest first")
    listing.add_argument("--limit", type=_positive(int), default=20)
    listing.add_argument("--key", metavar="ID_OR_NAME", help="only this key's sessions")
    show = _leaf(session_actions, "show", "print one session as JSON: config, items, responses, errors")
    show.add_argument("session_id", metavar="ID")
    remove = _leaf(session_actions, "delete", "delete one session and everything recorded of it")
    remove.add_argument("session_id", metavar="ID")
    purge = _leaf(session_actions, "purge", "delete sessions older than some days")
    purge.add_argument("--older-than-days", type=_positive(float), required=True, metavar="D")


def _error(message: str) -> int:
    print(f"parley: {message}", file=sys.stderr)
    return 1


def run_admin(args: argparse.Namespace) -> int:
    """Run a ``keys``/``sessions`` command parsed by a parser built with :func:`add_admin_commands`."""
    url = resolve_database_url(args.database_url)
    try:
        store = open_store(url)
    except (SQLAlchemyError, CommandError, OSError) as exc:
        return _error(f"cannot open the database at {display_url(url)}: {exc}")
    try:
        with store:
            action = _KEY_ACTIONS if args.admin_group == "keys" else _SESSION_ACTIONS
            return action[args.admin_action](store, args)
    except (KeyLookupError, DuplicateKeyName) as exc:
        return _error(str(exc))
    except SQLAlchemyError as exc:
        return _error(f"database error: {exc}")


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _number(value: float) -> str:
    return f"{value:g}"


def _limits(key: ApiKey) -> str:
    limits = key.limits
    parts = [
        f"concurrent={limits.max_concurrent_sessions}" if limits.max_concurrent_sessions else "",
        f"min/day={_number(limits.session_minutes_per_day)}" if limits.session_minutes_per_day else "",
        f"max_min={_number(limits.max_session_minutes)}" if limits.max_session_minutes else "",
    ]
    return " ".join(p for p in parts if p) or "-"


def _table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _keys_create(store: Store, args: argparse.Namespace) -> int:
    limits = KeyLimits(
        max_concurrent_sessions=args.max_concurrent_sessions,
        session_minutes_per_day=args.session_minutes_per_day,
        max_session_minutes=args.max_session_minutes,
    )
    key, plaintext = store.keys.create(args.name, limits)
    print(f"Created API key {key.id} '{key.name}' ({key.prefix}…), limits: {_limits(key)}.")
    print("Copy the key now; it is not shown again:")
    print(plaintext)
    return 0


def _keys_list(store: Store, args: argparse.Namespace) -> int:
    keys = store.keys.list()
    if not keys:
        print("No API keys. Create one with: parley keys create --name NAME")
        return 0
    rows = [[k.id, k.name, k.prefix, _when(k.created_at), _when(k.revoked_at), _limits(k)] for k in keys]
    _table(["ID", "NAME", "PREFIX", "CREATED (UTC)", "REVOKED", "LIMITS"], rows)
    return 0


def _keys_revoke(store: Store, args: argparse.Namespace) -> int:
    key = store.keys.revoke(args.key)
    print(f"Revoked API key {key.id} '{key.name}' ({key.prefix}…) at {_when(key.revoked_at)} UTC.")
    return 0


def _sessions_list(store: Store, args: argparse.Namespace) -> int:
    key_id = store.keys.find(args.key).id if args.key else None
    sessions = store.sessions.list(key_id=key_id, limit=args.limit)
    if not sessions:
        print("No recorded sessions.")
        return 0
    rows = []
    for s in sessions:
        length = (s.ended_at - s.started_at) if s.ended_at else None
        duration = str(timedelta(seconds=round(length.total_seconds()))) if length else "open"
        audio = f"{s.audio_in_seconds:.1f}/{s.audio_out_seconds:.1f}"
        rows.append(
            [s.id, s.key_id or "-", s.transport, _when(s.started_at), duration, audio, str(s.total_tokens)]
        )
    _table(["ID", "KEY", "TRANSPORT", "STARTED (UTC)", "DURATION", "AUDIO IN/OUT S", "TOKENS"], rows)
    return 0


def _sessions_show(store: Store, args: argparse.Namespace) -> int:
    detail = store.sessions.get(args.session_id)
    if detail is None:
        return _error(f"no session '{args.session_id}'")
    print(json.dumps(detail.to_dict(), indent=2, ensure_ascii=False))
    return 0


def _sessions_delete(store: Store, args: argparse.Namespace) -> int:
    if not store.sessions.delete(args.session_id):
        return _error(f"no session '{args.session_id}'")
    print(f"Deleted session {args.session_id}.")
    return 0


def _sessions_purge(store: Store, args: argparse.Namespace) -> int:
    count = store.sessions.purge_older_than(args.older_than_days)
    print(f"Deleted {count} session(s) older than {_number(args.older_than_days)} day(s).")
    return 0


Action = Callable[[Store, argparse.Namespace], int]
_KEY_ACTIONS: dict[str, Action] = {"create": _keys_create, "list": _keys_list, "revoke": _keys_revoke}
_SESSION_ACTIONS: dict[str, Action] = {
    "list": _sessions_list,
    "show": _sessions_show,
    "delete": _sessions_delete,
    "purge": _sessions_purge,
}
