"""The effective GA session configuration: defaults, ``session.update`` merging and its checks.

The session is kept as the GA wire dict (what ``session.created``/``session.updated`` carry), so what
the client sees is exactly what the engine uses; typed accessors live on :class:`SessionConfig`.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

from openai.types.realtime import RealtimeSessionCreateRequest, RealtimeTranscriptionSessionCreateRequest

from parley.config import Settings
from parley.protocol.errors import ProtocolError, invalid_value
from parley.tools.arguments import SchemaProblem, check_schema

VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")

SERVER_VAD_DEFAULTS: dict[str, Any] = {
    "type": "server_vad",
    "threshold": 0.5,
    "prefix_padding_ms": 300,
    "silence_duration_ms": 500,
    "idle_timeout_ms": None,
    "create_response": True,
    "interrupt_response": True,
}
SEMANTIC_VAD_DEFAULTS: dict[str, Any] = {
    "type": "semantic_vad",
    "eagerness": "auto",
    "create_response": True,
    "interrupt_response": True,
}
PCM_24K: dict[str, Any] = {"type": "audio/pcm", "rate": 24000}
DEFAULT_TRANSCRIPTION: dict[str, Any] = {"model": "gpt-4o-transcribe", "language": None, "prompt": None}
"""A transcription session transcribes even when the client names no model; any name runs the STT."""


def default_session(settings: Settings, *, session_id: str, model: str) -> dict[str, Any]:
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": session_id,
        "model": model,
        "output_modalities": ["audio"],
        "instructions": settings.instructions,
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "expires_at": int(time.time() + settings.session_max_minutes * 60),
        "include": None,
        "audio": {
            "input": {
                "format": dict(PCM_24K),
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": dict(SERVER_VAD_DEFAULTS),
            },
            "output": {"format": dict(PCM_24K), "voice": settings.voice, "speed": 1.0},
        },
    }


def default_transcription_session(settings: Settings, *, session_id: str) -> dict[str, Any]:
    """A GA transcription session (``?intent=transcription``): input audio only, no responses."""
    return {
        "type": "transcription",
        "object": "realtime.transcription_session",
        "id": session_id,
        "expires_at": int(time.time() + settings.session_max_minutes * 60),
        "include": None,
        "audio": {
            "input": {
                "format": dict(PCM_24K),
                "transcription": dict(DEFAULT_TRANSCRIPTION),
                "noise_reduction": None,
                "turn_detection": dict(SERVER_VAD_DEFAULTS),
            }
        },
    }


def new_config(settings: Settings, session_type: str, *, session_id: str, model: str) -> SessionConfig:
    """The configuration a new session of ``session_type`` starts with."""
    if session_type == "transcription":
        return SessionConfig(default_transcription_session(settings, session_id=session_id))
    return SessionConfig(default_session(settings, session_id=session_id, model=model))


@dataclass
class SessionConfig:
    """The effective session (GA wire shape) with typed views for the engine."""

    data: dict[str, Any]
    temperature: float | None = None
    """Sampling temperature; not part of the GA session (the beta dialect's ``temperature`` sets it)."""

    def wire(self) -> dict[str, Any]:
        return copy.deepcopy(self.data)

    @property
    def type(self) -> str:
        """``realtime`` (a voice agent) or ``transcription`` (input transcription only)."""
        return str(self.data["type"])

    @property
    def instructions(self) -> str:
        return str(self.data["instructions"])

    @property
    def output_modalities(self) -> list[str]:
        return list(self.data["output_modalities"])

    @property
    def tools(self) -> list[dict[str, Any]]:
        return list(self.data["tools"])

    @property
    def tool_choice(self) -> Any:
        return self.data["tool_choice"]

    @property
    def max_output_tokens(self) -> int | None:
        value = self.data["max_output_tokens"]
        return None if value == "inf" else int(value)

    @property
    def input(self) -> dict[str, Any]:
        result: dict[str, Any] = self.data["audio"]["input"]
        return result

    @property
    def output(self) -> dict[str, Any]:
        result: dict[str, Any] = self.data["audio"]["output"]
        return result

    @property
    def turn_detection(self) -> dict[str, Any] | None:
        value: dict[str, Any] | None = self.input["turn_detection"]
        return value

    @property
    def transcription(self) -> dict[str, Any] | None:
        value: dict[str, Any] | None = self.input["transcription"]
        return value

    @property
    def model(self) -> str:
        return str(self.data["model"])

    def apply_update(
        self,
        update: RealtimeSessionCreateRequest | RealtimeTranscriptionSessionCreateRequest,
        *,
        audio_produced: bool,
    ) -> None:
        """Merge a validated ``session.update`` (only the fields the client sent) or raise."""
        if update.type != self.type:
            raise ProtocolError(
                "invalid_value",
                f"This is a {self.type} session; its type cannot change to '{update.type}'. "
                + (
                    "Open a transcription session with ?intent=transcription instead."
                    if update.type == "transcription"
                    else "Open a realtime session (without intent=transcription) for responses."
                ),
                param="session.type",
            )
        patch = update.model_dump(mode="json", exclude_unset=True)
        merged = copy.deepcopy(self.data)
        for key, value in patch.items():
            if key == "audio":
                _merge_audio(merged["audio"], value or {})
            elif key == "type":
                continue
            else:
                merged[key] = value
        check_session(merged, previous=self.data, audio_produced=audio_produced)
        self.data = merged


def _merge_audio(current: dict[str, Any], patch: dict[str, Any]) -> None:
    for direction in ("input", "output"):
        fields = patch.get(direction)
        if fields is None:
            continue
        for key, value in fields.items():
            if key == "turn_detection" and value is not None:
                defaults = SERVER_VAD_DEFAULTS if value.get("type") == "server_vad" else SEMANTIC_VAD_DEFAULTS
                value = {**defaults, **{k: v for k, v in value.items() if v is not None}}
            elif key == "noise_reduction" and value is not None:
                # An update that leaves out the strength keeps the current one (the API's rule).
                kept = (current[direction].get(key) or {}).get("strength")
                value = {**value, "strength": value.get("strength", kept)}
            current[direction][key] = value


_UNSUPPORTED = {
    "prompt": "Stored prompts are not available on Parley; send the text as 'instructions' instead.",
    "reasoning": "Reasoning settings are not available with the configured language model engine.",
    "include": "Transcription logprobs are not available from Parley's speech recognition engines.",
}


def check_session(data: dict[str, Any], *, previous: dict[str, Any], audio_produced: bool) -> None:
    """Checks the SDK models do not make: value ranges, combinations, what cannot change."""
    for key, message in _UNSUPPORTED.items():
        if data.get(key) not in (None, [], {}):
            raise ProtocolError("unsupported_parameter", message, param=f"session.{key}")
    if data["type"] == "transcription":
        _check_input(data["audio"]["input"])
        if data["audio"]["input"]["transcription"] is None:
            raise invalid_value(
                "session.audio.input.transcription",
                "a transcription session needs a transcription model; set {'model': 'whisper-1'} or another.",
            )
        return
    if data["output_modalities"] not in (["audio"], ["text"]):
        raise invalid_value("session.output_modalities", "use either ['audio'] or ['text'].")
    limit = data["max_output_tokens"]
    if limit != "inf" and not 1 <= int(limit) <= 4096:
        raise invalid_value("session.max_output_tokens", "expected an integer between 1 and 4096, or 'inf'.")
    _check_tools(data["tools"])
    audio = data["audio"]
    _check_format(audio["output"]["format"], "output")
    _check_output(audio["output"], previous["audio"]["output"], audio_produced)
    _check_input(audio["input"])
    if previous.get("tracing") not in (None, data.get("tracing")):
        raise invalid_value("session.tracing", "tracing cannot be modified once it is enabled.")


def _check_tools(tools: list[dict[str, Any]]) -> None:
    labels: set[str] = set()
    for index, tool in enumerate(tools):
        param = f"session.tools[{index}]"
        if tool.get("type") == "mcp":
            if tool.get("connector_id") is not None:
                raise ProtocolError(
                    "unsupported_parameter",
                    "Connectors are OpenAI-hosted; give the MCP server's 'server_url' instead.",
                    param=f"{param}.connector_id",
                )
            url = tool.get("server_url")
            if not url or not str(url).startswith(("http://", "https://")):
                raise invalid_value(f"{param}.server_url", "expected the http(s) URL of an MCP server.")
            if tool["server_label"] in labels:
                raise invalid_value(f"{param}.server_label", "each MCP server needs its own label.")
            labels.add(tool["server_label"])
            continue
        if tool.get("type") != "function":
            raise ProtocolError(
                "unsupported_parameter",
                f"Tools of type '{tool.get('type')}' are not available; use function or mcp tools.",
                param=f"{param}.type",
            )
        if not tool.get("name"):
            raise ProtocolError(
                "missing_required_parameter", "Missing required parameter: 'name'.", param=f"{param}.name"
            )
        try:
            check_schema(tool.get("parameters") or {})
        except SchemaProblem as exc:
            raise invalid_value(f"{param}.parameters", f"not a valid JSON Schema ({exc}).") from None


def _check_format(fmt: dict[str, Any], direction: str) -> None:
    if fmt.get("type") == "audio/pcm" and fmt.get("rate", 24000) != 24000:
        raise invalid_value(f"session.audio.{direction}.format.rate", "only 24000 is supported.")
    if fmt.get("type") == "audio/pcm":
        fmt["rate"] = 24000


def _check_input(input_: dict[str, Any]) -> None:
    _check_format(input_["format"], "input")
    _check_turn_detection(input_["turn_detection"])
    noise = input_["noise_reduction"]
    if noise is not None:
        strength = noise.get("strength")
        if strength is not None and not 0.0 <= float(strength) <= 1.0:
            raise invalid_value(
                "session.audio.input.noise_reduction.strength", "expected a number between 0 and 1."
            )
        if noise.get("type") is None:
            raise ProtocolError(
                "missing_required_parameter",
                "Missing required parameter: 'type' ('near_field' or 'far_field').",
                param="session.audio.input.noise_reduction.type",
            )


def _check_output(output: dict[str, Any], previous: dict[str, Any], audio_produced: bool) -> None:
    speed = output.get("speed", 1.0)
    if not 0.25 <= float(speed) <= 1.5:
        raise ProtocolError(
            "decimal_above_max_value" if speed > 1.5 else "decimal_below_min_value",
            "Invalid 'session.audio.output.speed': expected a number between 0.25 and 1.5.",
            param="session.audio.output.speed",
        )
    if audio_produced and output.get("voice") != previous.get("voice"):
        raise ProtocolError(
            "cannot_update_voice",
            "Cannot update a conversation's voice if assistant audio is present.",
            param="session.audio.output.voice",
        )


def _check_turn_detection(turn: dict[str, Any] | None) -> None:
    if turn is None:
        return
    prefix = "session.audio.input.turn_detection"
    if turn["type"] == "server_vad":
        if not 0.0 <= float(turn["threshold"]) <= 1.0:
            raise invalid_value(f"{prefix}.threshold", "expected a number between 0 and 1.")
        for key in ("prefix_padding_ms", "silence_duration_ms", "idle_timeout_ms"):
            if turn.get(key) is not None and int(turn[key]) < 0:
                raise invalid_value(f"{prefix}.{key}", "expected a non-negative integer.")
    elif turn["type"] == "semantic_vad" and turn.get("eagerness") not in ("low", "medium", "high", "auto"):
        raise invalid_value(f"{prefix}.eagerness", "expected one of 'low', 'medium', 'high', 'auto'.")
