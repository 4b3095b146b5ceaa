"""The agent phone calls talk to: ``PARLEY_PHONE_SESSION`` (a GA session object) with the call's
G.711 format in and out, and ``PARLEY_PHONE_GREETING`` said first. Checked once at start-up, so a
bad setting stops the server with its message instead of failing calls."""

from __future__ import annotations

from typing import Any, Literal

from parley.config import Settings, env_name
from parley.protocol.errors import ProtocolError
from parley.server.client_secrets import effective_session

PhoneFormat = Literal["audio/pcmu", "audio/pcma"]


def phone_session(
    settings: Settings, audio_format: PhoneFormat = "audio/pcmu", session: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The session a phone call starts with: ``session`` (one given when the call was accepted) or
    the configured agent, in the line's own G.711 format both ways (no transcoding on the phone leg)."""
    session = {"type": "realtime", **(session if session is not None else settings.phone_session or {})}
    audio = dict(session.get("audio") or {})
    audio["input"] = {**(audio.get("input") or {}), "format": {"type": audio_format}}
    audio["output"] = {**(audio.get("output") or {}), "format": {"type": audio_format}}
    session["audio"] = audio
    return session


def check_phone_settings(settings: Settings) -> None:
    """Raise ValueError naming the setting and the field when the phone agent is not valid."""
    try:
        effective_session(settings, phone_session(settings))
    except ProtocolError as exc:
        where = f" (at {exc.param})" if exc.param else ""
        name = env_name("phone_session")
        raise ValueError(f"{name} is not a valid session{where}: {exc.message}") from None
