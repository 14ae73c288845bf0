"""Admission control: the gateway sheds load early, per upstream service, instead of queueing without bound.

Each service gets a limit on the requests the gateway has in flight to it. A request over the limit waits
for a free slot, at most ``admission_queue_s`` and behind at most ``admission_queue_max`` others; failing
either, it is shed at once with 503, Retry-After and a problem body (code ``overloaded``), before the service
sees it, so a shed request was never acknowledged and the caller may simply send it again.

The limit adapts to the latency the gateway observes from the service (additive increase, multiplicative
decrease, as TCP's congestion window does): while the smoothed latency stays under ``admission_target_s`` the
limit grows by about one slot per limit's worth of answers, up to ``admission_max_inflight``; when it goes over,
the limit shrinks by a tenth, at most once per target interval, down to ``admission_min_inflight``. Under
overload the service's own queue therefore stays short (its latency near the target), the excess waits briefly
in the gateway and is shed, and as soon as the overload ends the latency falls and the limit grows back.

The adaptation is a pure function (next_limit); AdmissionControl holds the per-service state for one
gateway process (each replica limits its own traffic).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field

from prometheus_client import Counter, Gauge

from gateway.settings import GatewaySettings
from servicekit.problems import DEFAULT_RETRY_AFTER_S, Problem

SHED = Counter(
    "crm_gateway_shed_total",
    "Requests the gateway refused with 503 before forwarding them, because the service was at its admission limit",
    ["service", "reason"],
)
LIMIT = Gauge("crm_gateway_admission_limit", "Current admission limit (requests in flight) per service", ["service"])

log = logging.getLogger("gateway.admission")
SHED_LOG_EVERY_S = 10.0  # a warning per service while it sheds, at most this often (with the count)
SMOOTHING = 0.2  # weight of the newest answer in the smoothed latency
DECREASE = 0.9  # the limit's factor when the smoothed latency is over the target


@dataclass(frozen=True, slots=True)
class AdmissionPolicy:
    min_inflight: int
    max_inflight: int
    target_s: float
    queue_s: float
    queue_max: int


def smoothed_latency(previous: float | None, observed_s: float) -> float:
    """Exponentially weighted latency: the newest answer weighs SMOOTHING."""
    return observed_s if previous is None else previous + SMOOTHING * (observed_s - previous)


def next_limit(limit: float, smoothed_s: float, policy: AdmissionPolicy, *, may_decrease: bool) -> float:
    """The limit after one answer: a multiplicative decrease while the smoothed latency is over the target
    (when may_decrease: at most once per target interval), else an additive increase of 1/limit."""
    if smoothed_s > policy.target_s:
        return max(float(policy.min_inflight), limit * DECREASE) if may_decrease else limit
    return min(float(policy.max_inflight), limit + 1.0 / max(limit, 1.0))


def admission_policy(settings: GatewaySettings) -> AdmissionPolicy:
    return AdmissionPolicy(
        min_inflight=settings.admission_min_inflight,
        max_inflight=settings.admission_max_inflight,
        target_s=settings.admission_target_s,
        queue_s=settings.admission_queue_s,
        queue_max=settings.admission_queue_max,
    )


def overloaded(service: str) -> Problem:
    return Problem(
        503,
        "Overloaded",
        f"The {service} service is at its admission limit; the request was not processed. Retry after the "
        "interval in Retry-After.",
        code="overloaded",
        headers={"Retry-After": str(DEFAULT_RETRY_AFTER_S)},
    )


@dataclass(slots=True)
class _Upstream:
    limit: float
    inflight: int = 0
    smoothed_s: float | None = None
    last_decrease: float = 0.0
    shed: int = 0  # since the last warning
    last_warning: float = 0.0
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)


class AdmissionControl:
    """Per-service adaptive concurrency limits for one gateway process."""

    def __init__(self, policy: AdmissionPolicy, *, enabled: bool = True) -> None:
        self.policy = policy
        self.enabled = enabled
        self._upstreams: dict[str, _Upstream] = {}

    def _state(self, service: str) -> _Upstream:
        state = self._upstreams.get(service)
        if state is None:
            state = self._upstreams[service] = _Upstream(limit=float(self.policy.max_inflight))
            LIMIT.labels(service).set(state.limit)
        return state

    def limit(self, service: str) -> float:
        return self._state(service).limit

    async def acquire(self, service: str) -> None:
        """A slot for one request to `service`, or Problem 503 (shed) when none frees up in time."""
        if not self.enabled:
            return
        state = self._state(service)
        if state.inflight < state.limit and not state.waiters:
            state.inflight += 1
            return
        if len(state.waiters) >= self.policy.queue_max:
            raise self._shed(service, state, "queue_full")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        state.waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), self.policy.queue_s)
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                return  # granted just as the wait ran out: the slot is ours
            waiter.cancel()
            raise self._shed(service, state, "queue_timeout") from None
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._release_slot(state)  # granted, but the caller went away: pass the slot on
            else:
                waiter.cancel()
            raise
        finally:
            if waiter in state.waiters:
                state.waiters.remove(waiter)

    def _shed(self, service: str, state: _Upstream, reason: str) -> Problem:
        SHED.labels(service, reason).inc()
        state.shed += 1
        now = time.monotonic()
        if now - state.last_warning >= SHED_LOG_EVERY_S:
            log.warning(
                "shedding load",
                extra={"upstream": service, "shed": state.shed, "limit": round(state.limit, 1), "reason": reason},
            )
            state.shed, state.last_warning = 0, now
        return overloaded(service)

    def release(self, service: str, latency_s: float | None) -> None:
        """The request's slot back; latency_s (None: the request failed before an answer) adapts the limit."""
        if not self.enabled:
            return
        state = self._state(service)
        if latency_s is not None:
            state.smoothed_s = smoothed_latency(state.smoothed_s, latency_s)
            now = time.monotonic()
            may_decrease = now - state.last_decrease >= self.policy.target_s
            limit = next_limit(state.limit, state.smoothed_s, self.policy, may_decrease=may_decrease)
            if limit < state.limit:
                state.last_decrease = now
            if limit != state.limit:
                state.limit = limit
                LIMIT.labels(service).set(limit)
        self._release_slot(state)

    def _release_slot(self, state: _Upstream) -> None:
        state.inflight -= 1
        while state.waiters and state.inflight < state.limit:
            waiter = state.waiters.popleft()
            if not waiter.done():
                state.inflight += 1
                waiter.set_result(None)
