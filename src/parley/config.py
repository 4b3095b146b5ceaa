"""Parley's settings: ``PARLEY_*`` environment variables, an optional TOML file, and CLI flags.

Every field here is a setting; ``parley serve --help`` lists them all with their defaults, and the
README's settings table lists each one (tests/unit/test_settings_documented.py checks).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from parley.engine_settings import EngineSettings

DEFAULT_INSTRUCTIONS = (
    "You are a helpful, friendly voice assistant. Speak naturally and keep replies short: one or two "
    "sentences unless asked for more."
)


class Settings(EngineSettings):
    model_config = SettingsConfigDict(env_prefix="PARLEY_", extra="ignore", validate_default=True)

    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port to listen on (0 picks a free one).")
    workers: int = Field(
        1,
        ge=1,
        description="Server processes sharing the port; keys, secrets and limits live in the database.",
    )
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated API keys. Empty: dev mode, any key is accepted (bind to loopback).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")
    log_format: Literal["text", "json"] = Field("text", description="Log format.")

    instructions: str = Field(DEFAULT_INSTRUCTIONS, description="Default session instructions.")
    voice: str = Field("marin", description="Default output voice.")
    session_max_minutes: float = Field(60.0, gt=0, description="Maximum session length in minutes.")
    barge_in_min_ms: float = Field(
        400.0,
        ge=0,
        description="Speech (with a word that is not a backchannel) that interrupts the assistant, in ms.",
    )
    barge_in_pause: bool = Field(
        True,
        description="Where the server plays the audio (WebRTC, SIP, Twilio), pause it while the caller's "
        "speech is judged as an interruption, and resume it if that was a backchannel.",
    )

    tool_argument_validation: bool = Field(
        True,
        description="Check tool-call arguments against the tool's JSON Schema (one correction, then fail).",
    )
    mcp_allowed_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated URL prefixes MCP server URLs must start with. Empty: any URL.",
    )
    mcp_timeout_s: float = Field(
        30.0, gt=0, description="Timeout of connecting to an MCP server, listing its tools, and one call."
    )

    max_audio_speed: float = Field(
        5.0, gt=0, description="Input audio may arrive at most this many times faster than real time."
    )
    audio_burst_s: float = Field(
        60.0, gt=0, description="Seconds of input audio a client may send at once before that rate applies."
    )

    sessions_per_ip: int = Field(200, ge=1, description="Sessions one client address may have open at once.")
    handshakes_per_minute_per_ip: int = Field(
        600, ge=1, description="WebSocket connections one client address may open per minute."
    )
    slow_client_timeout_s: float = Field(
        10.0, gt=0, description="A client that reads nothing for this long while events wait is disconnected."
    )

    shutdown_grace_s: float = Field(
        10.0, ge=0, description="On shutdown, how long open sessions may go on before they are ended."
    )

    webrtc_host_addresses: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated local IPs WebRTC offers as ICE host candidates (e.g. 127.0.0.1 or "
        "the host's LAN address). Empty: every interface but loopback.",
    )
    webrtc_ice_servers: list[dict[str, Any]] = Field(
        default_factory=list,
        description='STUN/TURN servers for WebRTC, as a JSON list like [{"urls": "stun:host:3478"}] '
        '(with "username" and "credential" for TURN).',
    )
    webrtc_media_timeout_s: float = Field(
        30.0,
        gt=0,
        description="A WebRTC call that is not connected, or brings no audio, for this long is ended.",
    )
    playground: Literal["auto", "on", "off"] = Field(
        "auto",
        description="The browser playground at / and its secret-minting route POST "
        "/playground/client_secret: auto serves them only in dev mode (no API keys anywhere); on "
        "always (anyone who can reach the server can then mint client secrets); off never.",
    )

    phone_session: dict[str, Any] | None = Field(
        None,
        description="The agent phone calls talk to: a GA session object as JSON (instructions, "
        "audio.output.voice, tools including MCP, audio.input.turn_detection...). Default: the server's.",
    )
    phone_greeting: str = Field(
        "",
        description="What the agent says first on every phone call (e.g. the recording and AI "
        "disclosure), word for word. Empty: it waits for the caller.",
    )
    twilio_auth_token: str | None = Field(
        None,
        description="The Twilio account's auth token: the Twilio routes (/v1/telephony/twilio...) accept "
        "only requests it signed (X-Twilio-Signature). Unset: they are open in dev mode and refused "
        "once API keys exist.",
    )
    public_url: str | None = Field(
        None,
        description="The server's public base URL as carriers reach it (e.g. https://voice.example.com): "
        "the Twilio stream URL and the signed URLs are built on it. Default: from each request "
        "(X-Forwarded-Proto and X-Forwarded-Host, else its Host).",
    )

    sip_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="UDP port of the SIP user agent server for phone calls. Unset: no SIP.",
    )
    sip_webhook_url: str | None = Field(
        None,
        description="Where an incoming SIP call posts the realtime.call.incoming webhook; the call rings "
        "until POST /v1/realtime/calls/{id}/accept or /reject. Unset: calls are answered at once.",
    )
    sip_webhook_secret: str | None = Field(
        None, description="Standard Webhooks signing secret (whsec_...) for that webhook. Unset: unsigned."
    )
    sip_allowed_networks: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated networks (CIDR) SIP calls may come from, e.g. your trunk's. Empty: "
        "any in dev mode, none once API keys exist.",
    )
    sip_media_timeout_s: float = Field(
        30.0, gt=0, description="A SIP call that brings no RTP for this long is hung up."
    )

    data_dir: Path | None = Field(
        None, description="Where Parley keeps its data (the SQLite database). Default: ~/.local/share/parley."
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the database (postgresql+psycopg://... for PostgreSQL). "
        "Default: SQLite in the data directory.",
    )
    redact: bool = Field(
        False,
        description="Redact emails, phone and card numbers (and PARLEY_REDACT_PATTERNS) before storing.",
    )
    redact_patterns: list[str] = Field(
        default_factory=list, description="More regular expressions to redact, as a JSON list of strings."
    )
    retention_days: float = Field(
        0.0, ge=0, description="Delete recorded sessions older than this (0: keep)."
    )
    record_audio: bool = Field(False, description="Also store the raw audio of recorded sessions.")
    session_audio_memory_mb: float = Field(
        16.0,
        gt=0,
        description="Conversation audio one session keeps in memory (about 3 minutes of 24 kHz audio per "
        "16 MB); older items' audio moves to a temporary file, deleted when the session ends.",
    )

    requests_per_minute: int = Field(
        600, ge=1, description="Responses a session may start per minute; more are refused."
    )
    tokens_per_minute: int = Field(
        200_000, ge=1, description="Tokens a session may use per minute; past it responses are refused."
    )

    @field_validator(
        "api_keys", "mcp_allowed_urls", "webrtc_host_addresses", "sip_allowed_networks", mode="before"
    )
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @field_validator("phone_session", mode="before")
    @classmethod
    def _phone_session(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) and value.strip() else value or None

    @field_validator("webrtc_ice_servers", mode="before")
    @classmethod
    def _ice_servers(cls, value: Any) -> Any:
        servers = json.loads(value) if isinstance(value, str) else value
        for server in servers if isinstance(servers, list) else []:
            if not isinstance(server, dict) or "urls" not in server:
                raise ValueError(
                    f'each ICE server needs "urls", like {{"urls": "stun:host:3478"}}: {server!r}'
                )
            unknown = set(server) - {"urls", "username", "credential"}
            if unknown:
                raise ValueError(
                    f"unknown ICE server fields {sorted(unknown)}: use urls, username, credential"
                )
        return servers

    @field_validator("redact_patterns", mode="before")
    @classmethod
    def _patterns(cls, value: Any) -> Any:
        if isinstance(value, str):
            return json.loads(value) if value.strip().startswith("[") else [value]
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("PARLEY_CONFIG")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)

    @property
    def dev_mode(self) -> bool:
        return not self.api_keys


def env_name(field_name: str) -> str:
    return f"PARLEY_{field_name.upper()}"
