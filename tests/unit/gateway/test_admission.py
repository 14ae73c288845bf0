"""Admission control: the limit adapts to observed latency, and requests over it wait briefly or are shed."""

from __future__ import annotations

import asyncio

import pytest

from gateway.admission import AdmissionControl, AdmissionPolicy, next_limit, smoothed_latency
from servicekit.problems import Problem

POLICY = AdmissionPolicy(min_inflight=2, max_inflight=8, target_s=0.1, queue_s=0.05, queue_max=2)


def test_the_limit_grows_additively_under_the_target_and_shrinks_by_a_tenth_over_it():
    assert next_limit(4.0, 0.05, POLICY, may_decrease=True) == pytest.approx(4.25)
    assert next_limit(8.0, 0.05, POLICY, may_decrease=True) == 8.0  # the ceiling
    assert next_limit(5.0, 0.2, POLICY, may_decrease=True) == pytest.approx(4.5)
    assert next_limit(5.0, 0.2, POLICY, may_decrease=False) == 5.0  # at most once per target interval
    assert next_limit(2.1, 0.2, POLICY, may_decrease=True) == 2.0  # the floor


def test_latency_is_smoothed_with_the_newest_answer_weighing_a_fifth():
    assert smoothed_latency(None, 0.3) == 0.3
    assert smoothed_latency(0.1, 0.6) == pytest.approx(0.2)


async def test_over_the_limit_a_request_waits_for_a_slot_then_is_shed_with_retry_after():
    control = AdmissionControl(POLICY)
    for _ in range(8):
        await control.acquire("interaction")
    waiting = asyncio.create_task(control.acquire("interaction"))
    await asyncio.sleep(0)
    control.release("interaction", 0.01)  # a slot frees up: the waiter gets it
    await asyncio.wait_for(waiting, 1)
    with pytest.raises(Problem) as shed:
        await control.acquire("interaction")  # nobody releases within queue_s
    assert shed.value.status == 503 and shed.value.code == "overloaded"
    assert shed.value.headers == {"Retry-After": "1"}
    # Another service has its own limit.
    await asyncio.wait_for(control.acquire("scoring"), 1)


async def test_beyond_the_queue_bound_a_request_is_shed_at_once():
    control = AdmissionControl(POLICY)
    for _ in range(8):
        await control.acquire("interaction")
    queued = [asyncio.create_task(control.acquire("interaction")) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(Problem):
        await control.acquire("interaction")
    for task in queued:
        with pytest.raises(Problem):
            await task


async def test_slow_answers_lower_the_limit_and_fast_ones_raise_it_again():
    control = AdmissionControl(AdmissionPolicy(min_inflight=2, max_inflight=8, target_s=0.0, queue_s=0, queue_max=0))
    for _ in range(20):
        await control.acquire("interaction")
        control.release("interaction", 1.0)
    assert control.limit("interaction") < 8
    slow = AdmissionControl(POLICY)
    for _ in range(30):
        await slow.acquire("interaction")
        slow.release("interaction", 5.0)
        slow._upstreams["interaction"].last_decrease = 0.0  # as if a target interval had passed
    assert slow.limit("interaction") == 2.0
    for _ in range(200):
        await slow.acquire("interaction")
        slow.release("interaction", 0.001)
    assert slow.limit("interaction") == 8.0


async def test_a_cancelled_waiter_leaves_no_slot_taken():
    control = AdmissionControl(POLICY)
    for _ in range(8):
        await control.acquire("interaction")
    waiting = asyncio.create_task(control.acquire("interaction"))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    for _ in range(8):
        control.release("interaction", 0.01)
    assert control._upstreams["interaction"].inflight == 0 and not control._upstreams["interaction"].waiters


async def test_off_it_never_refuses():
    control = AdmissionControl(POLICY, enabled=False)
    for _ in range(100):
        await control.acquire("interaction")
