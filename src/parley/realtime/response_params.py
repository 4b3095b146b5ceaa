"""Resolves what one response uses from the session config and the ``response.create`` overrides."""

from __future__ import annotations

from parley.audio.pcm import AudioFormat
from parley.protocol.client_events import ItemReference, ParsedResponseCreate, ResponseInput
from parley.protocol.errors import ProtocolError
from parley.protocol.session_config import SessionConfig
from parley.realtime.conversation import Conversation, Item
from parley.realtime.items import item_from_client
from parley.realtime.response import ResponseParams


def resolve_params(
    config: SessionConfig,
    event: ParsedResponseCreate | None,
    conversation: Conversation,
    input_format: AudioFormat,
) -> ResponseParams:
    output = config.output
    params = ResponseParams(
        instructions=config.instructions,
        output_modalities=config.output_modalities,
        voice=str(output["voice"]) if isinstance(output["voice"], str) else str(output["voice"].get("id")),
        speed=float(output.get("speed") or 1.0),
        output_format=AudioFormat.from_wire(output["format"]),
        tools=config.tools,
        tool_choice=config.tool_choice,
        max_output_tokens=config.max_output_tokens,
        model=config.model,
        parallel_tool_calls=config.data.get("parallel_tool_calls"),
        temperature=config.temperature,
    )
    # A dialect may carry a per-response temperature GA has no field for (beta's BetaResponseCreate).
    temperature: float | None = getattr(event, "temperature", None)
    if temperature is not None:
        params.temperature = temperature
    if event is None or event.event.response is None:
        return params
    r = event.event.response
    for name in ("prompt", "reasoning"):
        if getattr(r, name) is not None:
            raise ProtocolError(
                "unsupported_parameter",
                f"'response.{name}' is not available with Parley's language model engines.",
                param=f"response.{name}",
            )
    if r.instructions is not None:
        params.instructions = r.instructions
    if r.output_modalities is not None:
        params.output_modalities = list(r.output_modalities)
    if r.audio is not None and r.audio.output is not None:
        if r.audio.output.format is not None:
            params.output_format = AudioFormat.from_wire(r.audio.output.format.model_dump(exclude_none=True))
        if r.audio.output.voice is not None:
            voice = r.audio.output.voice
            params.voice = voice if isinstance(voice, str) else str(getattr(voice, "id", voice))
    if r.tools is not None:
        tools = [t.model_dump(mode="json", exclude_none=True) for t in r.tools]
        for index, tool in enumerate(tools):
            if tool.get("type") != "function":
                raise ProtocolError(
                    "unsupported_parameter",
                    "MCP servers are configured in session.tools; a response can use function tools.",
                    param=f"response.tools[{index}].type",
                )
        params.tools = tools
    if r.tool_choice is not None:
        choice = r.tool_choice
        params.tool_choice = choice if isinstance(choice, str) else choice.model_dump(mode="json")
    if r.max_output_tokens is not None:
        params.max_output_tokens = None if r.max_output_tokens == "inf" else int(r.max_output_tokens)
    if r.parallel_tool_calls is not None:
        params.parallel_tool_calls = r.parallel_tool_calls
    params.metadata = dict(r.metadata) if r.metadata is not None else None
    params.in_conversation = r.conversation != "none"
    if event.input is not None:
        params.input = _resolve_input(event.input, conversation, input_format)
    return params


def _resolve_input(
    entries: ResponseInput, conversation: Conversation, input_format: AudioFormat
) -> list[Item]:
    items: list[Item] = []
    for index, entry in enumerate(entries):
        if isinstance(entry, ItemReference):
            items.append(conversation.get(entry.id, param=f"response.input[{index}].id"))
        else:
            items.append(item_from_client(entry, input_format, param=f"response.input[{index}]"))
    return items
