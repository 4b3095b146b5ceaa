"""What the engines that talk to OpenAI-compatible servers (language model, speech to text, text to
speech) share: the placeholder key, the speech engines' server settings, and one mapping of the
``openai`` client's failures to clear :class:`EngineError` messages that name the server and the
setting to check."""

from __future__ import annotations

from typing import Literal, TypedDict

import httpx2
import openai

from parley.config import Settings, env_name
from parley.engines.base import EngineError

NO_API_KEY = "parley-no-key"
"""Sent when no key is configured: local servers ignore it, and the client refuses an empty one."""


class SpeechServer(TypedDict):
    """The server an openai speech engine talks to: the engine's first arguments."""

    base_url: str
    model: str
    api_key: str | None
    timeout_s: float


def speech_server(settings: Settings, stage: Literal["stt", "tts"]) -> SpeechServer:
    """The ``PARLEY_{STAGE}_OPENAI_*`` settings of an openai speech engine (an EngineError when the
    server's URL is not set)."""
    prefix = f"{stage}_openai"
    base_url: str | None = getattr(settings, f"{prefix}_base_url")
    if not base_url:
        raise EngineError(
            f"The openai {stage.upper()} engine needs the URL of an OpenAI-compatible speech server: set "
            f"{env_name(f'{prefix}_base_url')} (for example http://127.0.0.1:8001/v1 for speaches)"
        )
    return SpeechServer(
        base_url=base_url,
        model=getattr(settings, f"{prefix}_model"),
        api_key=getattr(settings, f"{prefix}_api_key"),
        timeout_s=getattr(settings, f"{prefix}_timeout_s"),
    )


def capital(text: str) -> str:
    """``text`` with its first letter in upper case (a message that starts with ``where``)."""
    return text[:1].upper() + text[1:]


def error_message(exc: openai.APIError) -> str:
    """The server's own error message (OpenAI's ``{"error": {"message": ...}}``) or the client's."""
    body = exc.body
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    return error if isinstance(error, str) and error else exc.message


def client_error(
    exc: Exception, *, where: str, timeout_s: float, key_setting: str, not_found_hint: str | None
) -> EngineError:
    """A clear EngineError for a failure of the ``openai`` client (or of an HTTP body it streams).

    ``where`` names the server (``the speech-to-text server at http://...``); ``key_setting`` is
    named on 401/403, and ``not_found_hint`` (if any) is added to a 404."""
    if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
        return EngineError(f"No answer from {where} within {timeout_s:g} s")
    if isinstance(exc, httpx2.TransportError):  # while streaming a body
        return EngineError(f"Lost the connection to {where}: {exc or type(exc).__name__}")
    if isinstance(exc, openai.APIConnectionError):
        cause = f": {exc.__cause__}" if exc.__cause__ else ""
        return EngineError(f"Could not reach {where}{cause}")
    if isinstance(exc, openai.APIStatusError):
        message = f"{capital(where)} answered HTTP {exc.status_code}: {error_message(exc)}"
        if exc.status_code in (401, 403):
            message += f" (check {key_setting})"
        elif exc.status_code == 404 and not_found_hint:
            message += f" ({not_found_hint})"
        return EngineError(message)
    if isinstance(exc, openai.APIError):
        return EngineError(f"{capital(where)} reported an error: {error_message(exc)}")
    return EngineError(f"Could not read the reply of {where}: {exc or type(exc).__name__}")


def speech_error(exc: Exception, *, where: str, stage: str, model: str, timeout_s: float) -> EngineError:
    """:func:`client_error` for the ``openai`` speech engines (``stage`` ``stt`` or ``tts``)."""
    return client_error(
        exc,
        where=where,
        timeout_s=timeout_s,
        key_setting=env_name(f"{stage}_openai_api_key"),
        not_found_hint=f"are the URL and the model {model!r} right? see {env_name(f'{stage}_openai_model')}",
    )
