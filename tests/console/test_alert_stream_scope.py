"""The alert stream the console's queue follows, on the real platform: an agent's stream carries only the
alerts of the customers they own."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import orjson
import pytest

from tests.e2e.helpers import alerts_for, create_customer, eventually, post_complaint
from tests.platform import token

pytestmark = pytest.mark.e2e


async def test_an_agents_alert_stream_carries_their_customers_alerts_and_no_one_elses(gateway: httpx.AsyncClient):
    agent = f"agent-{uuid.uuid4().hex[:8]}"
    theirs = await create_customer(gateway, owner=f"other-{uuid.uuid4().hex[:8]}")
    mine = await create_customer(gateway, owner=agent)
    # The other owner's alert first: ids only rise and a change goes out once every lower id has, so once
    # the agent's own alert arrives, the other one would already have been relayed had it not been left out.
    await post_complaint(gateway, theirs["id"], severity="high")
    [their_alert] = await eventually(lambda: alerts_for(gateway, theirs["id"]), what="the other owner's alert")
    await post_complaint(gateway, mine["id"], severity="high")
    [my_alert] = await eventually(lambda: alerts_for(gateway, mine["id"]), what="the agent's alert")

    seen: list[dict] = []

    async def read_until_mine() -> None:
        headers = {"accept": "text/event-stream", "authorization": f"Bearer {token('agent', sub=agent)}"}
        # From the start of the log: every change of every alert is replayed, then narrowed to the agent's.
        async with gateway.stream(
            "GET", "/api/v1/alerts/stream", headers={**headers, "Last-Event-ID": "0"}, timeout=15
        ) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    seen.append(orjson.loads(line[5:]))
                    if seen[-1]["alert_id"] == my_alert["id"]:
                        return

    await asyncio.wait_for(read_until_mine(), 30)
    assert {event["customer_id"] for event in seen} == {mine["id"]}
    assert their_alert["id"] not in {event["alert_id"] for event in seen}
