"""Beta (``OpenAI-Beta: realtime=v1``) session objects ↔ the GA session (PROTOCOL.md §2.3, §3.2).

The beta session is flat (``voice``, ``input_audio_format``, ``turn_detection``...), the GA one nests
audio settings under ``audio.input``/``audio.output``. ``session.update`` payloads go beta → GA (only
the fields the client sent, ``null`` kept), ``session.created``/``session.updated`` go GA → beta.
Values arrive here already validated against the beta SDK models.
"""

from __future__ import annotations

from typing import Any

from parley.audio.pcm import AudioFormat
from parley.protocol.errors import ProtocolError, invalid_value

DEFAULT_TEMPERATURE = 0.8
"""What a beta session reports when the client never set ``temperature``."""
TEMPERATURE_RANGE = (0.6, 1.2)

# Flat beta session field → (GA audio direction, GA field).
_AUDIO_FIELDS: dict[str, tuple[str, str]] = {
    "input_audio_format": ("input", "format"),
    "input_audio_transcription": ("input", "transcription"),
    "input_audio_noise_reduction": ("input", "noise_reduction"),
    "turn_detection": ("input", "turn_detection"),
    "output_audio_format": ("output", "format"),
    "voice": ("output", "voice"),
    "speed": ("output", "speed"),
}
_SAME_NAME = ("instructions", "tools", "tracing", "model")
_IGNORED = ("client_secret",)
"""Only meaningful in REST requests (``POST /v1/realtime/sessions``); accepted and ignored."""

# GA error ``param`` prefixes and what a beta client calls them, most specific first.
PARAM_NAMES: list[tuple[str, str]] = [
    *((f"session.audio.{d}.{ga}", f"session.{beta}") for beta, (d, ga) in _AUDIO_FIELDS.items()),
    ("session.output_modalities", "session.modalities"),
    ("session.max_output_tokens", "session.max_response_output_tokens"),
    ("response.audio.output.format", "response.output_audio_format"),
    ("response.audio.output.voice", "response.voice"),
    ("response.output_modalities", "response.modalities"),
    ("response.max_output_tokens", "response.max_response_output_tokens"),
]


# -- beta → GA ------------------------------------------------------------------------------------


def ga_modalities(value: list[str] | None, param: str) -> list[str] | None:
    """Beta ``["text", "audio"]`` (or ``["audio"]``) → GA ``["audio"]``; ``["text"]`` → ``["text"]``."""
    if value is None:
        return None
    kinds = set(value)
    if len(kinds) != len(value) or kinds not in ({"text"}, {"audio"}, {"text", "audio"}):
        raise invalid_value(param, "use either ['text'] or ['text', 'audio'].")
    return ["text"] if kinds == {"text"} else ["audio"]


def ga_format(name: str | None) -> dict[str, Any] | None:
    return None if name is None else AudioFormat.from_beta(name).to_wire()


def ga_tool_choice(choice: str | None) -> Any:
    """Beta ``tool_choice`` is a string: a mode, or the name of the function to call."""
    if choice is None or choice in ("auto", "none", "required"):
        return choice
    return {"type": "function", "name": choice}


def ga_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    if tools is None:
        return None
    return [{**tool, "type": tool.get("type") or "function"} for tool in tools]


def ga_turn_detection(turn: dict[str, Any] | None) -> dict[str, Any] | None:
    if turn is None:
        return None
    fields = {key: value for key, value in turn.items() if value is not None}
    fields.setdefault("type", "server_vad")
    return fields


def check_temperature(value: Any, param: str) -> float | None:
    """Beta ``temperature`` (0.6 to 1.2); ``None`` means the default."""
    if value is None:
        return None
    low, high = TEMPERATURE_RANGE
    if float(value) < low:
        raise ProtocolError(
            "decimal_below_min_value",
            f"Invalid '{param}': expected a value >= {low}, but got {value} instead.",
            param=param,
        )
    if float(value) > high:
        raise ProtocolError(
            "decimal_above_max_value",
            f"Invalid '{param}': expected a value <= {high}, but got {value} instead.",
            param=param,
        )
    return float(value)


def _ga_audio_value(beta_field: str, value: Any) -> Any:
    if beta_field.endswith("_audio_format"):
        return ga_format(value)
    if beta_field == "turn_detection":
        return ga_turn_detection(value)
    return value


def ga_session_update(session: dict[str, Any]) -> dict[str, Any]:
    """A beta ``session.update`` ``session`` → the GA partial session (``type: realtime``).

    ``temperature`` is not part of the GA session: the caller takes it from the beta payload.
    """
    ga: dict[str, Any] = {"type": "realtime"}
    audio: dict[str, dict[str, Any]] = {}
    for key, value in session.items():
        if key in _AUDIO_FIELDS:
            direction, name = _AUDIO_FIELDS[key]
            audio.setdefault(direction, {})[name] = _ga_audio_value(key, value)
        elif key in _SAME_NAME:
            ga[key] = ga_tools(value) if key == "tools" else value
        elif key == "modalities":
            ga["output_modalities"] = ga_modalities(value, "session.modalities")
        elif key == "tool_choice":
            ga["tool_choice"] = ga_tool_choice(value)
        elif key == "max_response_output_tokens":
            ga["max_output_tokens"] = value
    if audio:
        ga["audio"] = audio
    return ga


def ga_transcription_session_update(session: dict[str, Any]) -> dict[str, Any]:
    """A beta ``transcription_session.update`` ``session`` → GA ``session`` of type transcription.

    ``modalities`` has no GA counterpart (a transcription session only ever produces text).
    """
    ga: dict[str, Any] = {"type": "transcription"}
    audio_input: dict[str, Any] = {}
    for key, value in session.items():
        if key in _AUDIO_FIELDS and _AUDIO_FIELDS[key][0] == "input":
            audio_input[_AUDIO_FIELDS[key][1]] = _ga_audio_value(key, value)
        elif key == "include":
            ga["include"] = value
        elif key == "modalities" and value is not None:
            ga_modalities(value, "session.modalities")
    if audio_input:
        ga["audio"] = {"input": audio_input}
    return ga


# -- GA → beta ------------------------------------------------------------------------------------


def beta_format(fmt: dict[str, Any] | None) -> str | None:
    return None if fmt is None else AudioFormat.from_wire(fmt).beta_name


def beta_modalities(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    return ["text", "audio"] if "audio" in value else ["text"]


def beta_voice(voice: Any) -> Any:
    return voice.get("id") if isinstance(voice, dict) else voice


def beta_tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict):
        return choice.get("name") or choice.get("type")
    return choice


def beta_turn_detection(turn: dict[str, Any] | None) -> dict[str, Any] | None:
    """The beta turn detection has no ``idle_timeout_ms``."""
    if turn is None:
        return None
    return {key: value for key, value in turn.items() if key != "idle_timeout_ms"}


def beta_noise_reduction(noise: dict[str, Any] | None) -> dict[str, Any] | None:
    """The beta noise reduction is ``{type}``; GA's ``strength`` is shown only when set."""
    if noise is None:
        return None
    return {key: value for key, value in noise.items() if key != "strength" or value is not None}


def beta_session(ga: dict[str, Any], *, temperature: float | None) -> dict[str, Any]:
    """The GA session (``type: realtime``) as the flat beta session object."""
    audio_in = ga.get("audio", {}).get("input", {})
    audio_out = ga.get("audio", {}).get("output", {})
    return {
        "id": ga.get("id"),
        "object": "realtime.session",
        "model": ga.get("model"),
        "expires_at": ga.get("expires_at"),
        "modalities": beta_modalities(ga.get("output_modalities")),
        "instructions": ga.get("instructions"),
        "voice": beta_voice(audio_out.get("voice")),
        "input_audio_format": beta_format(audio_in.get("format")),
        "output_audio_format": beta_format(audio_out.get("format")),
        "input_audio_transcription": audio_in.get("transcription"),
        "input_audio_noise_reduction": beta_noise_reduction(audio_in.get("noise_reduction")),
        "turn_detection": beta_turn_detection(audio_in.get("turn_detection")),
        "tools": ga.get("tools", []),
        "tool_choice": beta_tool_choice(ga.get("tool_choice")),
        "temperature": DEFAULT_TEMPERATURE if temperature is None else temperature,
        "max_response_output_tokens": ga.get("max_output_tokens"),
        "speed": audio_out.get("speed", 1.0),
        "tracing": ga.get("tracing"),
    }


def beta_transcription_session(ga: dict[str, Any]) -> dict[str, Any]:
    """The GA transcription session as the beta transcription session object."""
    audio_in = ga.get("audio", {}).get("input", {})
    return {
        "id": ga.get("id"),
        "object": "realtime.transcription_session",
        "expires_at": ga.get("expires_at"),
        "modalities": ["text"],
        "input_audio_format": beta_format(audio_in.get("format")),
        "input_audio_transcription": audio_in.get("transcription"),
        "turn_detection": beta_turn_detection(audio_in.get("turn_detection")),
        "input_audio_noise_reduction": beta_noise_reduction(audio_in.get("noise_reduction")),
        "include": ga.get("include"),
    }


def beta_param(param: str | None) -> str | None:
    """A GA JSON path in an ``error`` as the beta client named the field."""
    if param is None:
        return None
    for ga, beta in PARAM_NAMES:
        if param == ga or param.startswith((f"{ga}.", f"{ga}[")):
            return beta + param[len(ga) :]
    return param
