"""Identifiers in the shapes the Realtime API uses (``event_…``, ``item_…``, ``resp_…``…)."""

from __future__ import annotations

import os

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def new_id(prefix: str, length: int = 20) -> str:
    # os.urandom once per id (secrets.choice per character costs ~40 µs an id); the slight modulo
    # bias does not matter for identifiers.
    return prefix + "".join(_ALPHABET[b % 62] for b in os.urandom(length))


def event_id() -> str:
    return new_id("event_")


def item_id() -> str:
    return new_id("item_")


def response_id() -> str:
    return new_id("resp_")


def session_id() -> str:
    return new_id("sess_")


def conversation_id() -> str:
    return new_id("conv_")


def call_id() -> str:
    return new_id("call_")


def rtc_call_id() -> str:
    """A WebRTC call (``rtc_…``), named in ``Location: /v1/realtime/calls/<id>``."""
    return new_id("rtc_")
