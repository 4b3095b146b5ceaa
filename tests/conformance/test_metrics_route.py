"""``GET /metrics`` on the real server: Prometheus text with what the sessions did."""

from __future__ import annotations

import asyncio
import urllib.request

from openai import AsyncOpenAI
from prometheus_client.parser import text_string_to_metric_families

from tests.conformance.conftest import Server
from tests.conformance.helpers import add_item, run_response, start_text_session, user_text
from tests.scripted_llm import ScriptedLLM


def _samples(server: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"{server.http_url}/metrics", timeout=10) as reply:
        assert reply.headers["Content-Type"].startswith("text/plain")
        text = reply.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_count_sessions_responses_and_latency(
    server: Server, client: AsyncOpenAI, scripted: ScriptedLLM
) -> None:
    before = await asyncio.to_thread(_samples, server)
    scripted.script("Hello from the metrics test.")
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await start_text_session(conn)
        await add_item(conn, user_text("hi"))
        await run_response(conn)
        await conn.send({"type": "conversation.item.retrieve", "item_id": "nope"})  # an error
        while True:
            if (await conn.recv()).type == "error":
                break
    after = await asyncio.to_thread(_samples, server)

    def grew(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert grew("parley_sessions_total", transport="websocket", session_type="realtime") == 1
    assert grew("parley_responses_total", status="completed") == 1
    assert grew("parley_client_events_total", type="response.create") == 1
    assert (
        grew("parley_errors_total", code="invalid_value") >= 1
        or grew("parley_errors_total", code="item_not_found") >= 1
    )
    assert grew("parley_stage_latency_seconds_count", stage="llm_first_token") == 1
