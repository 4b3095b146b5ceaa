"""Builds the language model's chat messages from conversation items (DESIGN.md §4).

User audio contributes what was recognised, assistant audio only what was heard (a truncated
item's transcript is cut), function calls become assistant ``tool_calls`` with their outputs placed
right after them (chat APIs require that order, while the conversation keeps arrival order), and
calls from cancelled responses, which were never to be made, are left out with their outputs; a
call still waiting for its output is followed by a note saying so. MCP calls Parley ran read like
function calls with their output (or error); an approval request reads as a call that waits for, or
was refused, the user's approval.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from parley.realtime.conversation import Item

Message = dict[str, Any]

PENDING_RESULT = "The result of this function call is not available yet."
AWAITING_APPROVAL = "The call was not made: it is waiting for the user's approval."
DECLINED = "The call was not made: the user declined it."
NOTHING_HEARD = "(no words were heard)"
"""What the model reads for user audio with no recognised words (silence after an idle timeout)."""


def _user_content(item: Item) -> str | list[dict[str, Any]]:
    texts: list[str] = []
    images: list[dict[str, Any]] = []
    for index, part in enumerate(item.data.get("content", [])):
        kind = part.get("type")
        if kind == "input_text":
            texts.append(part.get("text") or "")
        elif kind == "input_audio":
            heard = part.get("transcript") or item.heard.get(index) or ""
            texts.append(heard.strip() or NOTHING_HEARD)
        elif kind == "input_image" and part.get("image_url"):
            images.append({"type": "image_url", "image_url": {"url": part["image_url"]}})
    text = " ".join(t.strip() for t in texts if t and t.strip())
    if not images:
        return text
    return [{"type": "text", "text": text}, *images] if text else images


def _assistant_text(item: Item) -> str:
    pieces = []
    for part in item.data.get("content", []):
        if part.get("type") == "output_text":
            pieces.append(part.get("text") or "")
        elif part.get("type") == "output_audio":
            pieces.append(part.get("transcript") or "")
    return "".join(pieces).strip()


def _system_text(item: Item) -> str:
    return " ".join(p.get("text") or "" for p in item.data.get("content", [])).strip()


def build_messages(instructions: str, items: Iterable[Item]) -> list[Message]:
    items = list(items)
    skipped_calls = {  # calls of cancelled responses, and calls still being written
        i.data.get("call_id")
        for i in items
        if i.type == "function_call" and i.data.get("status") != "completed"
    }
    outputs: dict[str, Item] = {str(i.data["call_id"]): i for i in items if i.type == "function_call_output"}
    known_calls = {i.data.get("call_id") for i in items if i.type == "function_call"}
    messages: list[Message] = [{"role": "system", "content": instructions}] if instructions else []
    for item in items:
        if item.type == "message":
            message = _message(item)
            if message is not None:
                messages.append(message)
        elif item.type == "function_call" and item.data.get("call_id") not in skipped_calls:
            call_id = str(item.data.get("call_id"))
            arguments = item.data.get("arguments") or "{}"
            call = {
                "id": call_id,
                "type": "function",
                "function": {"name": item.data["name"], "arguments": arguments},
            }
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
            output = outputs.get(call_id)
            result = output.data["output"] if output is not None else PENDING_RESULT
            messages.append({"role": "tool", "tool_call_id": call_id, "content": result})
        elif item.type in ("mcp_call", "mcp_approval_request"):
            messages.extend(_mcp_messages(item, items))
        elif item.type == "function_call_output":
            call_id = str(item.data["call_id"])
            if call_id in known_calls:
                continue
            # An output whose call is not in the conversation (deleted, or made elsewhere): keep
            # what it says without breaking the chat API's call/output pairing.
            messages.append(
                {"role": "system", "content": f"Result of function call {call_id}: {item.data['output']}"}
            )
    return messages


def _tool_exchange(call_id: str, name: str, arguments: str, result: str) -> list[Message]:
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments or "{}"}}
    return [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call_id, "content": result},
    ]


def _mcp_messages(item: Item, items: list[Item]) -> list[Message]:
    name, arguments = str(item.data.get("name")), str(item.data.get("arguments") or "{}")
    if item.type == "mcp_call":
        error = item.data.get("error")
        result = f"Error: {error.get('message')}" if error else str(item.data.get("output") or "")
        return _tool_exchange(item.id, name, arguments, result)
    answer = _approval_response(item.id, items)
    if answer is None:
        return _tool_exchange(item.id, name, arguments, AWAITING_APPROVAL)
    if not answer.data.get("approve"):
        reason = answer.data.get("reason")
        return _tool_exchange(item.id, name, arguments, f"{DECLINED} {reason}" if reason else DECLINED)
    return []  # approved: the mcp_call that ran it says what came of it


def _approval_response(request_id: str, items: list[Item]) -> Item | None:
    for item in items:
        if item.type == "mcp_approval_response" and item.data.get("approval_request_id") == request_id:
            return item
    return None


def approved_requests(items: Iterable[Item]) -> list[Item]:
    """Approval requests the client approved whose call has not been made yet."""
    items = list(items)
    made = {i.data.get("approval_request_id") for i in items if i.type == "mcp_call"}
    return [
        i
        for i in items
        if i.type == "mcp_approval_request"
        and i.id not in made
        and (answer := _approval_response(i.id, items)) is not None
        and answer.data.get("approve")
    ]


def _message(item: Item) -> Message | None:
    role = item.role
    if role == "user":
        content = _user_content(item)
        return {"role": "user", "content": content} if content else None
    if role == "assistant":
        text = _assistant_text(item)
        return {"role": "assistant", "content": text} if text else None
    if role == "system":
        return {"role": "system", "content": _system_text(item)}
    return None


def estimate_tokens(messages: list[Message]) -> int:
    """About four characters a token: what the usage figures report when the engine gives none."""
    chars = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(len(str(p.get("text", ""))) for p in content)
        for call in message.get("tool_calls", []):
            chars += len(call["function"]["name"]) + len(call["function"]["arguments"])
    return max(1, chars // 4) if messages else 0
