"""The ``parley`` command: ``parley serve`` runs the server, ``parley talk`` talks to one."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import signal
import sys
from typing import Any

from pydantic import ValidationError

from parley import __version__
from parley.cli_admin import ADMIN_COMMANDS, add_admin_commands, run_admin
from parley.config import Settings, env_name
from parley.logging_context import configure_logging

log = logging.getLogger("parley")


def _add_setting_options(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per setting, so ``parley serve --help`` lists every setting."""
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        shown = ",".join(default) if isinstance(default, list) else default
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            default=None,
            metavar=name.upper(),
            help=f"{field.description} [env {env_name(name)}; default: {shown!s}]",
        )


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {
        name: getattr(args, name) for name in Settings.model_fields if getattr(args, name, None) is not None
    }
    if "api_keys" in overrides:
        overrides["api_keys"] = [k for k in overrides["api_keys"].split(",") if k]
    return Settings(**overrides)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def serve_async(settings: Settings, *, worker: int | None = None) -> None:
    """Serve until SIGTERM/SIGINT; as one of several workers (``worker``) the port is shared."""
    from aiohttp import web

    from parley.server.admin_routes import STORE
    from parley.server.app import create_app
    from parley.server.auth import has_database_keys
    from parley.transports.websocket import end_sessions

    app = create_app(settings)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()  # opens the database
    database_keys = await has_database_keys(app.get(STORE))
    if settings.dev_mode and not database_keys:
        log.warning(
            "dev mode: no API keys exist (PARLEY_API_KEYS or `parley keys create`): any key is accepted"
        )
        if not _is_loopback(settings.host):
            log.warning("dev mode on %s: anyone who can reach this address can use the server", settings.host)
    else:
        log.info("API keys required (%d from PARLEY_API_KEYS, plus the database's)", len(settings.api_keys))
    site = web.TCPSite(runner, settings.host, settings.port, reuse_port=worker is not None)
    await site.start()
    port = runner.addresses[0][1] if runner.addresses else settings.port
    log.info(
        "Parley %s%s listening on http://%s:%s (WebSocket ws://%s:%s/v1/realtime)",
        __version__,
        f" worker {worker} (pid {os.getpid()})" if worker is not None else "",
        settings.host,
        port,
        settings.host,
        port,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await site.stop()  # no new connections; open sessions go on for the grace period
    await end_sessions(app)
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="parley", description="A self-hosted OpenAI Realtime API server.")
    parser.add_argument("--version", action="version", version=f"parley {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="run the server",
        description="Run the Parley server. "
        "Every option can also be set with its PARLEY_* environment variable, "
        "or in a TOML file named by PARLEY_CONFIG.",
    )
    _add_setting_options(serve)
    add_admin_commands(commands)
    talk = commands.add_parser("talk", help="talk to a Realtime server from the terminal")
    from parley.client.talk import add_arguments as add_talk_arguments

    add_talk_arguments(talk)
    args = parser.parse_args(argv)
    if args.command == "serve":
        try:
            settings = _settings(args)
        except ValidationError as exc:
            print(f"parley: invalid setting: {exc}", file=sys.stderr)
            return 2
        configure_logging(settings.log_level, settings.log_format)
        try:
            if settings.workers > 1:
                from parley.server.workers import run_workers

                return run_workers(settings)
            asyncio.run(serve_async(settings))
        except (ValueError, OSError) as exc:
            log.error("cannot start: %s", exc)
            return 1
        return 0
    if args.command in ADMIN_COMMANDS:
        return run_admin(args)
    from parley.client.talk import run as run_talk

    return run_talk(args)


if __name__ == "__main__":
    sys.exit(main())
