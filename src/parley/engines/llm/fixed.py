"""A "language model" that says one given text: the greeting a phone call starts with (the recording
and AI disclosure), spoken as a response of the session without asking the real model."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

from parley.engines.base import ChatRequest, Finish, LLMEvent, TextDelta, Usage
from parley.engines.llm.echo import estimate_tokens


class FixedReply:
    name = "fixed"

    def __init__(self, text: str) -> None:
        self.text = text

    async def stream(self, request: ChatRequest) -> AsyncIterator[LLMEvent]:
        for word in re.findall(r"\S+\s*", self.text):
            yield TextDelta(word)
            await asyncio.sleep(0)
        yield Usage(0, estimate_tokens(self.text))
        yield Finish("stop")

    async def warm_up(self) -> None:
        return None
