"""Randomised interruptions of tool-calling responses, searched with hypothesis: random client steps
against random model replies, each example checked against every invariant of
:mod:`tests.unit.interruption_harness`."""

from __future__ import annotations

import asyncio
import os

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.unit.interruption_harness import run_scenario
from tests.unit.random_llm import KINDS, Reply

# -- strategies -------------------------------------------------------------------------------------

replies_st = st.lists(
    st.builds(
        Reply,
        kind=st.sampled_from(KINDS),
        pauses=st.lists(st.integers(0, 4) | st.integers(0, 30), min_size=1, max_size=4).map(tuple),
        named_calls=st.booleans(),
    ),
    min_size=1,
    max_size=8,
)

_create = st.tuples(st.just("create"), st.sampled_from([0, 0, 1, 2]))
_cancel = st.tuples(st.just("cancel"), st.none() | st.integers(-1, 2))
_output = st.tuples(st.just("output"), st.integers(-1, 5))
_wait = st.tuples(st.just("wait"), st.integers(0, 25))
_barge_in = st.tuples(st.just("barge_in"), st.integers(0, 1))
step_st = st.one_of(
    _create,
    _create,
    _create,
    _cancel,
    _cancel,
    _output,
    _output,
    st.tuples(st.just("user_text"), st.none()),
    st.tuples(st.just("speak"), st.integers(1, 8)),
    st.tuples(st.just("silence"), st.integers(1, 7)),
    _barge_in,
    _barge_in,
    _wait,
    _wait,
    _wait,
    st.tuples(st.just("drain"), st.none()),
)


@settings(
    max_examples=int(os.environ.get("INTERRUPTION_EXAMPLES", "150")),  # a longer search: e.g. 5000
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
)
@given(
    steps=st.lists(step_st, min_size=3, max_size=40),
    replies=replies_st,
    disconnect=st.booleans(),
    validation=st.booleans(),
)
def test_no_interruption_sequence_sticks_or_leaks(
    steps: list[tuple[str, int | None]], replies: list[Reply], disconnect: bool, validation: bool
) -> None:
    asyncio.run(run_scenario(steps, replies, disconnect, validation))
