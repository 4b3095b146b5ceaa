"""Identifiers in the shapes the Realtime API uses (``event_…``, ``item_…``, ``resp_…``…)."""

from __future__ import annotations

import secrets

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def new_id(prefix: str, length: int = 20) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))


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
