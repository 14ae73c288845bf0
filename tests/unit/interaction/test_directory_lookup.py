"""The batch lookup of the customer service: waited for longer than one customer's read, asked again meanwhile."""

import httpx

from services.interaction.replica import handlers
from services.interaction.replica.directory import CustomerDirectory


async def test_a_batch_lookup_may_take_the_whole_wait_and_is_asked_again_after_a_failure():
    timeouts: list[float | None] = []
    calls = 0

    def customer_service(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        timeouts.append(request.extensions["timeout"]["read"])
        if calls == 1:
            return httpx.Response(503)
        return httpx.Response(200, json={"customers": [{"id": "c-1", "status": "active", "version": 2}]})

    directory = CustomerDirectory(
        "http://customer", timeout_s=0.5, batch_wait_s=3.0, transport=httpx.MockTransport(customer_service)
    )
    found = await directory.fetch_many(["c-1", "c-2"])
    await directory.aclose()

    assert calls == 2 and timeouts == [3.0, 3.0]
    assert found["c-2"] is None and found["c-1"] is not None and found["c-1"].version == 2


def test_the_replica_consumer_waits_for_the_batch_lookup_as_a_bulk_import_does(monkeypatch):
    monkeypatch.setenv("INTERACTION_CUSTOMER_LOOKUP_WAIT_S", "7")
    handlers.consumer_settings.cache_clear()
    handlers._directory.cache_clear()
    try:
        assert handlers._directory().batch_wait_s == 7.0
    finally:
        handlers.consumer_settings.cache_clear()
        handlers._directory.cache_clear()
