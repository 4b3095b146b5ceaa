"""Tool-call interruption sequences the randomised search found, kept as regressions (run through the
harness and invariants of :mod:`tests.unit.interruption_harness`)."""

from __future__ import annotations

import asyncio

from tests.unit.interruption_harness import SILENCE, TONE, Harness, run_scenario
from tests.unit.random_llm import RandomLLM, Reply


async def test_cancel_before_the_response_task_ran_still_ends_it() -> None:
    await run_scenario([("create", 0), ("cancel", None)], [Reply("tool")], disconnect=False)


async def test_disconnect_right_after_response_create_ends_it() -> None:
    await run_scenario([("create", 0)], [Reply("text")], disconnect=True)


async def test_cancel_right_after_the_turn_that_started_a_response() -> None:
    await run_scenario([("barge_in", 1), ("cancel", None)], [Reply("text")], disconnect=False)


async def test_a_side_response_is_not_shown_a_call_still_streaming() -> None:
    steps: list[tuple[str, int | None]] = [
        ("create", 0),  # the model starts a call...
        ("wait", 5),
        ("create", 1),  # ...a side response reads the conversation meanwhile...
        ("wait", 5),
        ("cancel", None),  # ...and the call is cancelled
    ]
    replies = [Reply("tool", pauses=(0, 40)), Reply("text")]
    await run_scenario(steps, replies, disconnect=False, validation=False)


async def test_a_response_due_after_a_turn_never_runs_after_disconnect() -> None:
    h = Harness(RandomLLM([Reply("text", pauses=(20,)), Reply("text")]))
    await h.start()
    await h.audio(TONE, 6)  # the user speaks; no response runs, so the turn starts at once
    await h.create("default")  # the client asks for a response meanwhile
    await asyncio.sleep(0)
    await h.audio(SILENCE, 6)  # the turn ends while that response runs: another is due after it
    assert h.session.audio._auto_response_pending
    for _ in range(1000):  # the first response ends, and the due one is spawned
        if h.session.background:
            break
        await asyncio.sleep(0)
    await h.close()  # the client disconnects before the due response started
