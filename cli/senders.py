"""Sending an import's batches: customer references resolved, each batch posted to its bulk route (one result
per row back), and up to --concurrency batches in flight at once, answered in file order."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import orjson

from cli.client import IDEMPOTENCY_KEYS, RETRIES, Gateway, GatewayError, _describe, _error_text, retry_wait_s
from cli.import_state import Pending, RowResult

PATHS = {"customers": "/customers/bulk", "interactions": "/interactions/bulk"}
STATUS_BULK = "/customers/status/bulk"
RESOLVE = "/customers/resolve"
RESOLVE_CHUNK = 5000  # references per POST /customers/resolve (the route's limit)
MAX_REF_LENGTH = 100  # a customer's external_ref: the route refuses a longer one, which names no customer
FALLBACK_CONCURRENCY = 8  # status changes in flight at once where there is no bulk route


# ---- customer references ------------------------------------------------------------------------------------


class Directory:
    """external_ref -> customer id, asked of POST /customers/resolve for the references a batch names (each
    once), or, from a platform without that route, read from GET /customers page by page the first time."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.ids: dict[str, str] = {}
        self.unknown: set[str] = set()
        self.complete = False  # every customer was read (the listing): a reference not in ids is unknown

    def prepare(self, refs: Iterable[str]) -> None:
        """Learn the ids of these references (those not asked before), a chunk of them per request."""
        if self.complete:
            return
        wanted = sorted({ref for ref in refs if ref not in self.ids and ref not in self.unknown})
        impossible = {ref for ref in wanted if not 0 < len(ref) <= MAX_REF_LENGTH}
        self.unknown |= impossible  # rejected as unknown rows, not a refused request that stops the import
        wanted = [ref for ref in wanted if ref not in impossible]
        for start in range(0, len(wanted), RESOLVE_CHUNK):
            if self.complete:
                return
            self._resolve(wanted[start : start + RESOLVE_CHUNK])

    def _resolve(self, refs: list[str]) -> None:
        response = self.gateway.request("POST", RESOLVE, json={"external_refs": refs})
        if response.status_code in (404, 405):
            self.load()  # an older platform: read the whole listing instead
            return
        if response.status_code != 200:
            raise GatewayError(f"POST {RESOLVE} refused: {_describe(response)}")
        answer = response.json()
        self.ids.update({item["external_ref"]: item["id"] for item in answer["customers"]})
        self.unknown.update(answer["unknown"])

    def load(self) -> dict[str, str]:
        ids: dict[str, str] = {}
        cursor: str | None = None
        while True:
            page = self.gateway.get_json("/customers", {"limit": 200, "cursor": cursor, "sort": "created_at"})
            for item in page["items"]:
                if item.get("external_ref"):
                    ids[item["external_ref"]] = item["id"]
            cursor = page.get("next_cursor")
            if not cursor:
                break
        self.ids, self.complete = ids, True
        return ids

    def resolve(self, ref: str) -> str | None:
        if ref not in self.ids and ref not in self.unknown:
            self.prepare([ref])
        return self.ids.get(ref)


# ---- senders: a batch of bodies in, one result per row out -----------------------------------------------


Sender = Callable[[list[dict[str, Any]], str], list[RowResult]]


def _results(report: dict[str, Any], count: int) -> list[RowResult]:
    results = [RowResult("rejected", "no result for this row")] * count
    for item in report.get("rows") or report.get("items") or []:
        index = int(item["index"])
        status = str(item.get("status", "rejected"))
        if status == "rejected":
            reason = "; ".join(_error_text(e) for e in item.get("errors") or []) or "rejected"
            results[index] = RowResult("rejected", reason, bool(item.get("retryable")))
        else:
            # `existing` (a known key) and `unchanged` (a status it already had): nothing written.
            results[index] = RowResult("created" if status in ("created", "changed") else "existing")
    return results


def bulk_sender(gateway: Gateway, path: str) -> Sender:
    def send(bodies: list[dict[str, Any]], key: str) -> list[RowResult]:
        # A gateway timeout (504) means the service may still finish the batch: it is sent again only when
        # every row carries its own key, so a second delivery reports them `existing`.
        keyed = all(IDEMPOTENCY_KEYS & body.keys() for body in bodies)
        # orjson: several times cheaper than the standard library's encoder for a batch of thousands of rows.
        content = orjson.dumps({"rows": bodies})
        headers = {"Idempotency-Key": key, "content-type": "application/json"}
        for attempt in range(1, RETRIES + 2):
            response = gateway.request("POST", path, content=content, headers=headers)
            if response.status_code != 504 or not keyed or attempt > RETRIES:
                break
            gateway.sleep(retry_wait_s(attempt, None, backoff_s=gateway.retry_backoff_s * 4, cap_s=gateway.max_wait_s))
        if response.status_code != 200:
            raise GatewayError(f"POST {path} refused a batch: {_describe(response)}")
        return _results(orjson.loads(response.content), len(bodies))

    return send


class StatusSender:
    """POST /customers/status/bulk ({"rows": [{customer_id, status, reason, churned_at, note}]}: `changed`,
    `unchanged` or `rejected` per row); where the platform has no such route (404), one POST
    /customers/{id}/status per row. A customer_ref is resolved to its id by the CLI first."""

    def __init__(self, gateway: Gateway, directory: Directory) -> None:
        self.gateway = gateway
        self.directory = directory
        self.bulk = True

    def __call__(self, bodies: list[dict[str, Any]], key: str) -> list[RowResult]:
        changes: list[dict[str, Any] | None] = [self._change(body) for body in bodies]
        results: list[RowResult | None] = [
            None if change is not None else RowResult("rejected", _unknown_ref(body))
            for body, change in zip(bodies, changes, strict=True)
        ]
        known = [i for i, change in enumerate(changes) if change is not None]
        if known and self.bulk:
            rows = [changes[i] for i in known]
            response = self.gateway.request("POST", STATUS_BULK, json={"rows": rows}, headers={"Idempotency-Key": key})
            if response.status_code in (404, 405):
                self.bulk = False
            elif response.status_code == 200:
                for i, result in zip(known, _results(response.json(), len(known)), strict=True):
                    results[i] = result
                known = []
            else:
                raise GatewayError(f"POST {STATUS_BULK} refused a batch: {_describe(response)}")
        if known:
            # One request per row: a few at a time, as a bulk request would be processed.
            with ThreadPoolExecutor(max_workers=FALLBACK_CONCURRENCY) as pool:
                for i, result in zip(known, pool.map(self._one, [changes[i] for i in known]), strict=True):
                    results[i] = result
        return [r if r is not None else RowResult("rejected", "no result") for r in results]

    def _change(self, body: dict[str, Any]) -> dict[str, Any] | None:
        customer_id = body.get("customer_id")
        if customer_id is None:
            customer_id = self.directory.resolve(body["customer_ref"])
            if customer_id is None:
                return None
        change = {k: body[k] for k in ("status", "reason", "churned_at", "note") if k in body}
        return {"customer_id": customer_id, **change}

    def _one(self, change: dict[str, Any] | None) -> RowResult:
        assert change is not None
        body = {k: v for k, v in change.items() if k != "customer_id"}
        response = self.gateway.request("POST", f"/customers/{change['customer_id']}/status", json=body)
        if response.status_code in (200, 201):
            return RowResult("created")
        return RowResult("rejected", _describe(response), retryable=response.status_code in (429, 503, 504))


def _unknown_ref(body: dict[str, Any]) -> str:
    return f"customer_ref: no customer with external_ref {body.get('customer_ref')!r}"


# ---- batches in flight -------------------------------------------------------------------------------------


Answer = tuple[list[RowResult], int]  # one result per row, and how many rows were sent again


class InFlight:
    """Up to `limit` batches sent at once, answered oldest first.

    The importer takes answers only through oldest(), in the order the batches were submitted, so its
    checkpoint never moves past a batch that is still unanswered, even when later ones finished first.
    """

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._pool: ThreadPoolExecutor | None = None
        self._queue: deque[tuple[list[Pending], int, Future[Answer]]] = deque()

    def __len__(self) -> int:
        return len(self._queue)

    def full(self) -> bool:
        return len(self._queue) >= self.limit

    def submit(self, batch: list[Pending], through: int, send: Callable[[], Answer]) -> None:
        assert not self.full()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.limit, thread_name_prefix="crm-import")
        self._queue.append((batch, through, self._pool.submit(send)))

    def oldest(self) -> tuple[list[Pending], int, Answer]:
        """The oldest batch, its last line and its answer (waiting for it); its error is raised here."""
        batch, through, future = self._queue.popleft()
        return batch, through, future.result()

    def close(self) -> None:
        """Drop batches not started yet and wait for those being sent (an interruption resumes from the
        checkpoint, and their rows' keys make a second delivery harmless)."""
        for _, _, future in self._queue:
            future.cancel()
        self._queue.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
