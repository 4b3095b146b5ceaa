"""The registry of live calls that call control (hangup, accept, sideband) looks calls up in."""

from __future__ import annotations

import asyncio
from typing import Any

from parley.transports.call_life import CallEnding
from parley.transports.services import Calls


class _Call(CallEnding):
    """A call that runs until it is ended, then takes a while to free itself."""

    def __init__(self, key_id: str | None = None) -> None:
        super().__init__()
        self.id = "rtc_test"
        self.key_id = key_id
        self.session: Any = None
        self.sinks: list[Any] = []
        self.freeing = asyncio.Event()

    async def run(self, session_update: dict[str, Any] | None = None) -> None:
        await self.wait_ended()
        await self.freeing.wait()

    async def end(self, reason: str) -> None:
        self._end(reason)


async def test_an_ending_call_is_no_longer_found_while_it_frees_itself() -> None:
    calls, call = Calls(), _Call(key_id="key_a")
    calls.start(call, None)
    assert calls.get(call.id, "key_a") is call
    assert calls.get(call.id, "key_b") is None  # only the key that opened it controls it
    await call.end("hangup")
    assert call.id in calls.live and calls.get(call.id, "key_a") is None  # a second hangup: 404
    call.freeing.set()
    await calls.close()
    assert call.id not in calls.live and call.end_reason == "hangup"


async def test_an_ending_call_frees_its_place_under_the_limits_at_once_and_only_once() -> None:
    calls, call = Calls(), _Call()
    released: list[int] = []
    calls.start(call, None, release=lambda: released.append(1))
    await asyncio.sleep(0)
    assert released == []
    await call.end("hangup")
    for _ in range(3):
        await asyncio.sleep(0)
    assert released == [1], "before the call has freed itself"
    call.freeing.set()
    await calls.close()
    assert released == [1, 1], "the release is idempotent, and called again once the call is done"
