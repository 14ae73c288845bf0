"""The soak's load generator: open loop at a fixed rate through the gateway, every answer counted.

A refused send (429/503) is sent again after its Retry-After with the same external id, so what the gateway
sheds shows up as answers and retries, not as a lower rate silently offered.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from bench.chaos import Run, Sent, interaction_body


@dataclass
class Offered:
    """What the load generator offered and what came back: every attempt's answer by status, the retries,
    and how far behind its schedule each send went out (a generator that cannot keep up shows here, not as a
    lower rate silently offered)."""

    rate: float
    scheduled: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    in_flight: int = 0
    max_behind_s: float = 0.0
    latency_ms: list[float] = field(default_factory=list)  # scheduled -> acknowledged, every acknowledged one


async def offer(run: Run, http: aiohttp.ClientSession, stats: Offered, stop: asyncio.Event, max_in_flight: int) -> None:
    """Open loop at stats.rate: send n goes out at start + n/rate whatever the earlier ones are doing. A
    refused send (429/503) is sent again after its Retry-After, a lost connection after 0.5 s, with the same
    external id (the interaction service is idempotent by it). Past max_in_flight unanswered sends the
    schedule waits (counted as behind) rather than piling up without bound."""
    rng = random.Random(7)
    url = f"{run.infra.gateway}/api/v1/interactions"
    in_flight: set[asyncio.Task[None]] = set()
    started = time.monotonic()
    n = 0
    while not stop.is_set():
        due = started + n / stats.rate
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        while len(in_flight) >= max_in_flight and not stop.is_set():
            await asyncio.wait(set(in_flight), return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            break
        stats.max_behind_s = max(stats.max_behind_s, time.monotonic() - due)
        body = interaction_body(rng.choice(run.customers), rng)
        task = asyncio.create_task(_post(run, http, url, body, due, stats))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
        n += 1
        stats.scheduled = n
    await asyncio.gather(*in_flight)


async def _post(
    run: Run, http: aiohttp.ClientSession, url: str, body: dict[str, Any], due: float, stats: Offered
) -> None:
    scenario = run.scenario
    run.sent[scenario] += 1
    sent_at = time.time()
    data = orjson.dumps(body)
    stats.in_flight += 1
    try:
        for attempt in range(120):
            if attempt:
                stats.retries += 1
            wait = 0.5
            try:
                async with http.post(url, data=data, headers=run.headers) as response:
                    answer = await response.read()
                    stats.answers[str(response.status)] += 1
                    if response.status in (200, 201):
                        interaction_id = orjson.loads(answer)["id"]
                        stats.latency_ms.append((time.monotonic() - due) * 1000)
                        kind, severity = body["type"], body.get("severity")
                        run.acknowledged.append(
                            Sent(interaction_id, body["customer_id"], kind, severity, scenario, sent_at)
                        )
                        return
                    if response.status not in (429, 503) and response.status < 500:
                        run.log(f"refused {response.status}: {answer[:200]!r}")
                        return
                    with contextlib.suppress(ValueError):
                        wait = float(response.headers.get("Retry-After", wait))
            except (aiohttp.ClientError, TimeoutError):
                stats.answers["no answer"] += 1
            await asyncio.sleep(wait)
    finally:
        stats.in_flight -= 1
