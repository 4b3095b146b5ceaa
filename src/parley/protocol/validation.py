"""Turns pydantic validation of the ``openai`` wire models into Realtime API ``error`` details.

The ``openai`` models accept unknown fields (``extra="allow"``) and report every member of an
undiscriminated union when validation fails. Here the member the client meant is chosen from the
input (its ``type``/``role``), its first error becomes one ``ProtocolError`` with an OpenAI-style
code and a JSON path in ``param``, and unknown fields anywhere in a valid event are refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from parley.protocol.errors import ProtocolError, unknown_parameter

M = TypeVar("M")

_FIELD = re.compile(r"^[a-z_][a-z0-9_]*$")
_TYPE_TAGS = {"int", "str", "float", "bool", "list", "dict", "none", "is-instance", "literal"}

# Which member of an undiscriminated union the client meant, keyed by the member's class name and
# matched against the input dict found at that point.
_ITEM_MEMBERS: dict[str, tuple[str, str | None]] = {
    "RealtimeConversationItemSystemMessage": ("message", "system"),
    "RealtimeConversationItemUserMessage": ("message", "user"),
    "RealtimeConversationItemAssistantMessage": ("message", "assistant"),
    "RealtimeConversationItemFunctionCall": ("function_call", None),
    "RealtimeConversationItemFunctionCallOutput": ("function_call_output", None),
    "RealtimeMcpApprovalResponse": ("mcp_approval_response", None),
    "RealtimeMcpListTools": ("mcp_list_tools", None),
    "RealtimeMcpToolCall": ("mcp_call", None),
    "RealtimeMcpApprovalRequest": ("mcp_approval_request", None),
    "RealtimeSessionCreateRequest": ("realtime", None),
    "RealtimeTranscriptionSessionCreateRequest": ("transcription", None),
    "RealtimeFunctionTool": ("function", None),
    "Mcp": ("mcp", None),
}


def json_path(parts: Sequence[str | int]) -> str:
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path


def _lookup(data: Any, parts: Sequence[str | int]) -> Any:
    for part in parts:
        if isinstance(data, Mapping) and isinstance(part, str):
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return None
    return data


def _member_matches(member: str, value: Any) -> bool:
    wanted = _ITEM_MEMBERS.get(member)
    if wanted is None or not isinstance(value, Mapping):
        return False
    type_, role = wanted
    return value.get("type") == type_ and (role is None or value.get("role") == role)


def _is_member_tag(part: str | int) -> bool:
    if isinstance(part, int):
        return False
    return not _FIELD.match(part) or part in _TYPE_TAGS or part.startswith(("literal[", "function-"))


def _clean(error: ErrorDetails, data: Any) -> tuple[list[str | int], bool] | None:
    """The error's path without union member tags, or None when it belongs to a member the input
    did not choose. The flag says whether a chosen member was seen on the way."""
    path: list[str | int] = []
    chose = False
    for part in error["loc"]:
        if _is_member_tag(part):
            assert isinstance(part, str)
            here = _lookup(data, path)
            if part in _ITEM_MEMBERS:
                if not _member_matches(part, here):
                    return None
                chose = True
            continue
        path.append(part)
    return path, chose


def _describe(value: Any) -> str:
    names = {str: "a string", bool: "a boolean", int: "an integer", float: "a number"}
    if value is None:
        return "null"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return names.get(type(value), type(value).__name__)


def to_protocol_error(exc: ValidationError, data: Any, prefix: Sequence[str | int] = ()) -> ProtocolError:
    """Pick the most relevant error of ``exc`` (raised validating ``data``) and describe it."""
    candidates: list[tuple[list[str | int], bool, ErrorDetails]] = []
    for error in exc.errors():
        cleaned = _clean(error, data)
        if cleaned is not None:
            candidates.append((cleaned[0], cleaned[1], error))
    if not candidates:
        # No union member matches the input's type: the discriminating field itself is wrong.
        parts = []
        for part in exc.errors()[0]["loc"]:
            if isinstance(part, str) and part in _ITEM_MEMBERS:
                break
            if not _is_member_tag(part):
                parts.append(part)
        type_path = [*prefix, *parts, "type"]
        value = _lookup(data, [*parts, "type"])
        return ProtocolError(
            "invalid_value",
            f"Invalid value: '{value}'. '{json_path(type_path)}' does not name a supported type.",
            param=json_path(type_path),
        )
    # Prefer errors inside the member the client chose, then the deepest path.
    candidates.sort(key=lambda c: (not c[1], -len(c[0])))
    path, _, error = candidates[0]
    param = json_path([*prefix, *path])
    kind = error["type"]
    got = _lookup(data, path)
    if kind == "missing":
        return ProtocolError(
            "missing_required_parameter", f"Missing required parameter: '{param}'.", param=param
        )
    if kind in ("literal_error", "enum", "union_tag_invalid"):
        return ProtocolError("invalid_value", f"Invalid value: '{got}'. {error['msg']}.", param=param)
    if kind.endswith(("_type", "_parsing")) or kind in (
        "model_type",
        "model_attributes_type",
        "dict_type",
        "list_type",
    ):
        return ProtocolError(
            "invalid_type",
            f"Invalid type for '{param}': {error['msg'].lower()}, but got {_describe(got)} instead.",
            param=param,
        )
    if kind in ("greater_than", "greater_than_equal"):
        return ProtocolError("decimal_below_min_value", f"Invalid '{param}': {error['msg']}.", param=param)
    if kind in ("less_than", "less_than_equal"):
        return ProtocolError("decimal_above_max_value", f"Invalid '{param}': {error['msg']}.", param=param)
    return ProtocolError("invalid_value", f"Invalid '{param}': {error['msg']}.", param=param)


def reject_unknown_fields(value: Any, prefix: Sequence[str | int] = ()) -> None:
    """Raise ``unknown_parameter`` for the first field the wire model does not declare."""
    if isinstance(value, BaseModel):
        for name in value.model_extra or {}:
            raise unknown_parameter(json_path([*prefix, name]))
        for name in type(value).model_fields:
            child = getattr(value, name)
            reject_unknown_fields(child, [*prefix, name])
    elif isinstance(value, list):
        for index, child in enumerate(value):
            reject_unknown_fields(child, [*prefix, index])
    elif isinstance(value, dict):
        for key, child in value.items():
            if isinstance(child, BaseModel | list):
                reject_unknown_fields(child, [*prefix, key])


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def validate(model: type[M] | Any, data: Any, prefix: Sequence[str | int] = ()) -> M:
    """Validate ``data`` as ``model`` (a class or a typing form), strictly, with Realtime errors."""
    adapter = _ADAPTERS.get(model)
    if adapter is None:
        adapter = _ADAPTERS[model] = TypeAdapter(model)
    try:
        result: M = adapter.validate_python(data)
    except ValidationError as exc:
        raise to_protocol_error(exc, data, prefix) from None
    reject_unknown_fields(result, prefix)
    return result
