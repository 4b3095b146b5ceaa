"""The language model of last resort: it says that none is configured and repeats what it heard.

It lets a fresh install answer (and so be heard) before anyone has set up a real model, and gives tests
a deterministic engine. It never calls tools.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

from parley.config import Settings, env_name
from parley.engines.base import ChatRequest, Finish, LLMEvent, TextDelta, Usage

NO_INPUT_REPLY = (
    "No language model is configured, and I did not hear anything to repeat. To give me one, set "
    f"{env_name('llm_base_url')} to an OpenAI-compatible server, or run Ollama on this machine."
)


class EchoLLM:
    name = "echo"

    async def stream(self, request: ChatRequest) -> AsyncIterator[LLMEvent]:
        reply = echo_reply(last_user_text(request.messages))
        limit = request.max_output_tokens
        written = ""
        for word in re.findall(r"\S+\s*", reply):
            if limit is not None and estimate_tokens(written + word.rstrip()) > limit:
                yield Usage(_input_tokens(request.messages), estimate_tokens(written))
                yield Finish("length")
                return
            written += word
            yield TextDelta(word)
            await asyncio.sleep(0)  # let the consumer (and cancellation) in between words
        yield Usage(_input_tokens(request.messages), estimate_tokens(written))
        yield Finish("stop")

    async def warm_up(self) -> None:
        return None


def echo_reply(heard: str) -> str:
    heard = " ".join(heard.split())
    if not heard:
        return NO_INPUT_REPLY
    if heard[-1] not in ".!?":
        heard += "."
    return f"No language model is configured, so I can only repeat what I heard: {heard}"


def estimate_tokens(text: str) -> int:
    """About four characters a token, as OpenAI's rule of thumb for English."""
    return -(-len(text) // 4)


def message_text(message: dict[str, Any]) -> str:
    """The text of a chat message, whether its content is a string or a list of parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = (part.get("text") or part.get("transcript") for part in content if isinstance(part, dict))
        return " ".join(part for part in parts if isinstance(part, str))
    return ""


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return message_text(message)
    return ""


def _input_tokens(messages: list[dict[str, Any]]) -> int:
    return sum(estimate_tokens(message_text(message)) for message in messages)


def create(settings: Settings) -> EchoLLM:
    return EchoLLM()
