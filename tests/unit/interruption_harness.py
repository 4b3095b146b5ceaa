"""The harness and invariants of the randomised tool-call interruption tests, which check that no
sequence of response.create / cancel / barge-in / function_call_output / user text / disconnect
leaves a session stuck or leaks a call.

Each example drives a fresh session engine (no network) with fake engines through a random list of
client steps while a fake language model answers every request with a random reply (text, one or
two tool calls, text then a call, a failure, a reply cut by the token limit), pausing a random
number of event-loop turns between its events so cancellations land mid-stream. Time never passes:
pauses are ``asyncio.sleep(0)`` and turn taking runs on the session's input-audio clock, so an
example is deterministic and hundreds run in seconds. The invariants come from the project's issue:

* at most one in-conversation response at a time;
* every ``response.created`` is followed by exactly one ``response.done`` for that id, and nothing
  of a response is sent after its ``response.done`` (after draining, and after closing);
* every ``function_call`` item ends ``completed`` (its ``…arguments.done`` sent, its response
  ``completed``) or ``incomplete`` (its response stopped early, no ``…arguments.done`` ever);
* the language model is only ever shown calls that were completed when it was asked;
* every client ``function_call_output`` is added to the conversation and kept there in order;
* every ``response.create`` gets a response or an ``error``, and the session answers afterwards;
* every event sent validates against the openai GA models.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
from collections import Counter
from typing import Any

import numpy as np
from hypothesis import event
from hypothesis.errors import InvalidArgument

from parley.protocol import server_events as ev
from tests.fakes import FakeSTT, Recorder
from tests.unit.random_llm import RandomLLM, Reply
from tests.wire import validate_ga


def note(label: str) -> None:
    """A hypothesis statistics event (``--hypothesis-show-statistics``); ignored outside ``@given``."""
    with contextlib.suppress(InvalidArgument):
        event(label)


# -- the session under test -------------------------------------------------------------------------

TRANSCRIPT = "wait stop that please now"
"""What the fake recogniser hears in every utterance: words, not a backchannel, so speech during a
response is a barge-in once it lasts the minimum."""


def _tone(ms: int = 100, rate: int = 24000) -> bytes:
    t = np.arange(int(rate * ms / 1000)) / rate
    return (np.sin(2 * np.pi * 300 * t) * 8000).astype("<i2").tobytes()


TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
    {
        "type": "function",
        "name": "get_time",
        "description": "The time in a time zone.",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
    },
]
TONE = base64.b64encode(_tone()).decode()
SILENCE = base64.b64encode(bytes(48 * 100)).decode()


class Harness(Recorder):
    """A recorded session, checking on every emitted event that one in-conversation response runs."""

    def __init__(self, llm: RandomLLM) -> None:
        super().__init__(llm=llm, stt=FakeSTT(transcripts=[TRANSCRIPT] * 500))
        llm.session = self.session
        self.llm = llm
        self.created: set[str] = set()
        self.violations: list[str] = []
        self.closed_at: int | None = None
        self._ids = itertools.count(1)
        self.created_by_client: dict[str, str] = {}
        """Response id -> the event_id of the response.create that made it."""
        self.outputs: list[tuple[str, str]] = []
        """(item id, call_id) of every function_call_output the client created, in order."""

    async def _emit(self, event: ev.Event) -> None:
        running = [r for r in self.session.responses.values() if r.params.in_conversation and not r.done]
        if len(running) > 1:
            self.violations.append(f"{len(running)} in-conversation responses at {event['type']}")
        if event["type"] == "response.created":
            self.created.add(event["response"]["id"])
        await super()._emit(event)

    async def start(self, *, validation: bool = True) -> None:
        """Start the session with the tools the fake model calls (and argument validation on/off)."""
        if "tool_argument_validation" in type(self.session.settings).model_fields:
            update = {"tool_argument_validation": validation}
            self.session.settings = self.session.settings.model_copy(update=update)
        await self.session.start()
        await self.send({"type": "session.update", "session": {"type": "realtime", "tools": TOOLS}})
        assert self.types() == ["session.created", "session.updated"], self.events

    def event_id(self) -> str:
        return f"evt_{next(self._ids)}"

    def known_calls(self) -> list[str]:
        return [
            e["item"]["call_id"]
            for e in self.events
            if e["type"] == "response.output_item.added" and e["item"]["type"] == "function_call"
        ]

    # -- steps ----------------------------------------------------------------------------------

    async def create(self, mode: str) -> str | None:
        """response.create; returns the new response's id (None if refused, with an error checked)."""
        event_id = self.event_id()
        body: dict[str, Any] = {"type": "response.create", "event_id": event_id}
        if mode == "none":
            body["response"] = {"conversation": "none", "metadata": {"kind": "side"}}
        elif mode == "text":
            body["response"] = {"output_modalities": ["text"]}
        had_active = self.session.active is not None
        before, start = set(self.session.responses), len(self.events)
        await self.send(body)
        new = [r for r in self.session.responses if r not in before]
        errors = [e for e in self.events[start:] if e["type"] == "error"]
        if new:
            assert len(new) == 1 and not errors, (new, errors)
            self.created_by_client[new[0]] = event_id
            note("create: started" if mode != "none" else "create: out-of-band started")
            return new[0]
        # Never silence: a refusal is an error naming the client's event.
        assert len(errors) == 1, f"response.create {event_id} got neither a response nor an error"
        error = errors[0]["error"]
        assert error["event_id"] == event_id
        assert error["code"] == "conversation_already_has_active_response", error
        assert mode != "none" and had_active, error
        note("create: refused, a response is active")
        return None

    async def cancel(self, pick: int | None) -> None:
        """response.cancel of the active response (pick None), a running one, or an unknown id."""
        event_id = self.event_id()
        body: dict[str, Any] = {"type": "response.cancel", "event_id": event_id}
        running = list(self.session.responses.values())
        if pick is None:
            target = self.session.active
        elif pick < 0 or not running:
            target = None
            body["response_id"] = "resp_not_a_real_one"
        else:
            target = running[pick % len(running)]
            body["response_id"] = target.id
        start = len(self.events)
        await self.send(body)
        errors = [
            e for e in self.events[start:] if e["type"] == "error" and e["error"]["event_id"] == event_id
        ]
        if target is None or target.done:
            if target is None:
                assert errors and errors[0]["error"]["code"] == "response_cancel_not_active", errors
            note("cancel: nothing to cancel")
            return
        assert not errors, errors
        # The cancel waited for the response to stop: its response.done went out.
        dones = [e for e in self.events if e["type"] == "response.done" and e["response"]["id"] == target.id]
        assert len(dones) == 1, f"cancelled {target.id}, which never sent response.done"
        note(f"cancel: response ended {dones[0]['response']['status']}")

    async def output(self, pick: int) -> None:
        """A function_call_output for a call the model made (any status) or for an unknown call."""
        calls = self.known_calls()
        call_id = calls[pick % len(calls)] if calls and pick >= 0 else f"call_unknown_{len(self.outputs)}"
        state = "during a response" if self.session.active is not None else "between responses"
        if self.session.audio._turns is not None and self.session.audio._turns.speaking:
            state = "while the user speaks"
        note(f"output: {state}")
        start = len(self.events)
        item = {"type": "function_call_output", "call_id": call_id, "output": '{"ok": true}'}
        await self.send({"type": "conversation.item.create", "event_id": self.event_id(), "item": item})
        added = [
            e
            for e in self.events[start:]
            if e["type"] == "conversation.item.added" and e["item"]["type"] == "function_call_output"
        ]
        assert len(added) == 1, f"function_call_output for {call_id} was not added: {self.types()[start:]}"
        assert added[0]["item"]["call_id"] == call_id
        self.outputs.append((added[0]["item"]["id"], call_id))

    async def user_text(self) -> None:
        text = {"type": "input_text", "text": "and tomorrow?"}
        item = {"type": "message", "role": "user", "content": [text]}
        await self.send({"type": "conversation.item.create", "event_id": self.event_id(), "item": item})

    async def audio(self, chunk: str, count: int) -> None:
        for _ in range(count):
            await self.send({"type": "input_audio_buffer.append", "audio": chunk})

    def idle(self) -> bool:
        s = self.session
        return not (s.responses or s.background or s.audio.recognition._jobs)

    async def drain(self, limit: int = 20_000) -> None:
        """Run the loop until the session has nothing going on; a session that never settles is stuck."""
        quiet = 0
        for _ in range(limit):
            quiet = quiet + 1 if self.idle() else 0
            if quiet >= 5:
                return
            await asyncio.sleep(0)
        raise AssertionError(f"the session never settled: responses {list(self.session.responses)}")

    async def close(self) -> None:
        """Disconnect; nothing may run or be sent afterwards."""
        async with asyncio.timeout(5):  # not wait_for: its task would let responses start first
            await self.session.close()
        self.closed_at = len(self.events)
        for _ in range(200):  # whatever was scheduled before the disconnect gets to run
            await asyncio.sleep(0)
        late = self.types()[self.closed_at :]
        running = list(self.session.responses)
        assert not late, f"sent after the disconnect: {late}"
        assert not running, f"responses still running after the disconnect: {running}"


# -- the invariants ---------------------------------------------------------------------------------


def check(h: Harness) -> None:
    """Every invariant over everything sent so far."""
    assert not h.violations, h.violations
    events = h.events
    for e in events:
        validate_ga(e)

    # response.created ... response.done: exactly one done, nothing of the response after it, and
    # never two in-conversation responses open at once.
    created: dict[str, int] = {}
    done: dict[str, dict[str, Any]] = {}
    open_in_conversation: set[str] = set()
    for index, e in enumerate(events):
        kind = e["type"]
        if kind == "response.created":
            rid = e["response"]["id"]
            assert rid not in created, f"{rid} created twice"
            created[rid] = index
            if e["response"]["conversation_id"] is not None:
                open_in_conversation.add(rid)
                assert len(open_in_conversation) <= 1, f"two active responses: {open_in_conversation}"
        elif kind == "response.done":
            rid = e["response"]["id"]
            assert rid in created, f"response.done for {rid} without response.created"
            assert rid not in done, f"{rid} sent response.done twice"
            done[rid] = e["response"]
            open_in_conversation.discard(rid)
        elif kind.startswith("response.") and "response_id" in e:
            rid = e["response_id"]
            assert rid in created and rid not in done, f"{kind} for {rid} outside its created..done"
    assert set(created) == set(done), f"responses never done: {set(created) - set(done)}"
    # A response the client's response.create started was announced (no silent response).
    for rid, event_id in h.created_by_client.items():
        assert rid in created, f"response.create {event_id} started {rid}, which never sent an event"

    # Function calls: completed (announced, response completed) or incomplete (never announced).
    args_done = Counter(e["item_id"] for e in events if e["type"] == "response.function_call_arguments.done")
    started_calls = {
        e["item"]["id"]
        for e in events
        if e["type"] == "response.output_item.added" and e["item"]["type"] == "function_call"
    }
    finished_calls: dict[str, str] = {}
    for response in done.values():
        for item in response["output"]:
            if item["type"] != "function_call":
                continue
            finished_calls[item["id"]] = item["status"]
            if item["status"] == "completed":
                assert response["status"] == "completed", (item, response["status"])
                assert args_done[item["id"]] == 1, f"completed call {item['call_id']} not announced once"
            else:
                assert item["status"] == "incomplete", item
                assert response["status"] in ("cancelled", "failed", "incomplete"), response["status"]
                assert args_done[item["id"]] == 0, f"call {item['call_id']} of a stopped response announced"
            note(f"call: {item['status']} ({response['status']})")
    assert started_calls <= set(finished_calls), (
        f"calls never finished: {started_calls - set(finished_calls)}"
    )
    assert set(args_done) <= {i for i, s in finished_calls.items() if s == "completed"}
    for item in h.session.conversation.items():
        if item.type == "function_call":
            assert item.data["status"] in ("completed", "incomplete"), item.data
    speaking_over = [
        e["type"] == "input_audio_buffer.speech_started"
        and any(x["type"] == "response.created" and x["response"]["conversation_id"] for x in events[:i])
        and not _all_done(events[:i])
        for i, e in enumerate(events)
    ]
    if any(speaking_over):
        note("barge-in: speech started during a response")
    for response in done.values():
        if response["status"] == "cancelled":
            assert response["status_details"]["reason"] in ("client_cancelled", "turn_detected")
            note(f"response: cancelled ({response['status_details']['reason']})")

    # The model was never shown a call of the conversation that was not completed when it was
    # asked. (A call it is asked to correct, not in the conversation yet, is its own: allowed.)
    final_status = {
        item["call_id"]: item["status"]
        for response in done.values()
        for item in response["output"]
        if item["type"] == "function_call"
    }
    for req in h.llm.requests:
        for message in req.request.messages:
            for call in message.get("tool_calls") or []:
                status = req.call_status.get(call["id"])
                assert status in (None, "completed"), (
                    f"the model was shown call {call['id']} while it was {status} "
                    f"(it ended {final_status.get(call['id'])})"
                )

    # Every function_call_output the client created is in the conversation, in the order created.
    order = [item.id for item in h.session.conversation.items()]
    positions = [order.index(item_id) if item_id in order else -1 for item_id, _ in h.outputs]
    assert -1 not in positions, f"function_call_output lost: {h.outputs} not all in {order}"
    assert positions == sorted(positions), "function_call_outputs out of order"


def _all_done(events: list[ev.Event]) -> bool:
    created = {e["response"]["id"] for e in events if e["type"] == "response.created"}
    return created <= {e["response"]["id"] for e in events if e["type"] == "response.done"}


# -- one example ------------------------------------------------------------------------------------


async def run_scenario(
    steps: list[tuple[str, int | None]],
    replies: list[Reply],
    disconnect: bool,
    validation: bool = True,
) -> None:
    llm = RandomLLM(replies)
    h = Harness(llm)
    await h.start(validation=validation)
    note(f"argument validation {'on' if validation else 'off'}")
    try:
        for name, arg in steps:
            if name == "create":
                await h.create(("default", "none", "text")[arg or 0])
            elif name == "cancel":
                await h.cancel(arg)
            elif name == "output":
                await h.output(arg or 0)
            elif name == "user_text":
                await h.user_text()
            elif name == "speak":
                await h.audio(TONE, arg or 1)
            elif name == "silence":
                await h.audio(SILENCE, arg or 1)
            elif name == "barge_in":  # words long enough to interrupt, and the end of the turn or not
                await h.audio(TONE, 6)
                await h.audio(SILENCE, 6 * (arg or 0))
            elif name == "wait":
                for _ in range(arg or 0):
                    await asyncio.sleep(0)
            elif name == "drain":
                await h.drain()
            else:  # pragma: no cover
                raise AssertionError(name)
        if disconnect:
            note("end: disconnect mid-sequence")
            await h.close()
            check(h)
            return
        # The sequence drains, everything holds, and the session still answers.
        await h.drain()
        check(h)
        for item_id, _ in h.outputs:
            start = len(h.events)
            await h.send({"type": "conversation.item.retrieve", "item_id": item_id})
            assert [e["type"] for e in h.events[start:]] == ["conversation.item.retrieved"]
            assert h.events[start]["item"]["type"] == "function_call_output"
        llm.forced = Reply("text", (1,))
        rid = await h.create("default")
        assert rid is not None, "the final response.create was refused"
        await h.drain()
        final = next(e for e in h.events if e["type"] == "response.done" and e["response"]["id"] == rid)
        assert final["response"]["status"] == "completed", final["response"]
        check(h)
        await h.close()
        check(h)
    finally:
        if h.closed_at is None:
            await h.session.close()
