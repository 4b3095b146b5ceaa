"""Fixtures shared by the conformance and end-to-end tests: a scripted OpenAI-compatible LLM served
from a background thread, started once per test session and emptied before each test that asks."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from tests.scripted_llm import ScriptedLLM

# Helper modules whose plain ``assert``s should explain themselves when they fail, as in a test file.
pytest.register_assert_rewrite("tests.unit.interruption_harness", "tests.unit.beta_recorder", "tests.fakes")


class LLMThread:
    """A ScriptedLLM serving from a background thread's event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.llm = ScriptedLLM()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.llm.__aenter__(), self.loop).result(30)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.llm.__aexit__(None, None, None), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@pytest.fixture(scope="session")
def llm_thread() -> Iterator[LLMThread]:
    thread = LLMThread()
    yield thread
    thread.stop()


@pytest.fixture
def scripted(llm_thread: LLMThread) -> ScriptedLLM:
    """The scripted LLM, emptied for this test."""
    llm = llm_thread.llm
    llm.reset()
    return llm
