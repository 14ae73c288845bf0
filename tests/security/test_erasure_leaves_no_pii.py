"""Erasure proof (issue 20, finding 7): after a customer's erasure no store, topic or log of the run
holds anything readable of its personal data.

A customer with distinctive name, e-mail, phone, tags, attributes and ERP reference gets complaints
(so interaction, scoring and retention hold data about it, an alert is raised and a webhook delivery
is made to a local receiver), is changed once (customer.updated), then erased through the gateway.
Once every service confirmed (erasure.confirmed), the test reads every table of every database on
the PostgreSQL server, every Kafka topic from the beginning (all partitions, raw key, value and
headers), the webhook delivery store (retention's table, among the others) and the run's log files,
and looks for each distinctive value in its plain, lower-case and JSON-escaped forms.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from servicekit.settings import state_dir
from tests.e2e.helpers import alerts_for, eventually, read_topic
from tests.e2e.test_retention_loop import Receiver
from tests.platform import KAFKA, PG_PORT, log_dir

pytestmark = pytest.mark.e2e
SECRET = "privacy-webhook-secret-0123456789"


@dataclass(frozen=True)
class Person:
    """Values no other test uses, so any hit is this customer's."""

    tag: str = uuid.uuid4().hex[:10]

    @property
    def name(self) -> str:
        return f"Quorblewick Zyxtanova {self.tag}"

    @property
    def email(self) -> str:
        return f"q.zyxtanova.{self.tag}@privacy.example"

    @property
    def phone(self) -> str:
        return f"+49 30 {int(self.tag[:6], 16) % 10**8:08d}"

    @property
    def external_ref(self) -> str:
        return f"ERP-PRIV-{self.tag}"

    @property
    def tags(self) -> list[str]:
        return [f"vip-{self.tag}", f"Sleeps-Late-{self.tag}"]

    @property
    def attributes(self) -> dict[str, Any]:
        # "tier" is declared non-personal (it may stay); every other attribute is personal data.
        return {"tier": "platinum", "nickname": f"Snorkelfrost-{self.tag}", "favourite_shop": f"Kiez-{self.tag}"}

    @property
    def new_nickname(self) -> str:
        return f"Wobblequill-{self.tag}"

    def needles(self) -> dict[str, str]:
        values = {
            "name": self.name,
            "email": self.email,
            "phone": self.phone,
            "phone digits": self.phone.replace(" ", ""),
            "external_ref": self.external_ref,
            "nickname": self.attributes["nickname"],
            "favourite_shop": self.attributes["favourite_shop"],
            "patched nickname": self.new_nickname,
            "complaint text": f"Zyxtanova-{self.tag} says",
        }
        values.update({f"tag {i}": t for i, t in enumerate(self.tags)})
        return values


def forms(value: str) -> set[bytes]:
    """The value as stored or sent: plain, lower-case, JSON-escaped (a JSON string's inside)."""
    escaped = json.dumps(value)[1:-1]
    return {f.lower().encode() for f in (value, escaped, json.dumps(value, ensure_ascii=True)[1:-1])}


def find(haystack: bytes, needles: dict[str, str]) -> list[str]:
    low = haystack.lower()
    return [label for label, value in needles.items() if any(f in low for f in forms(value))]


# ---- the stores ---------------------------------------------------------------------------------------------


async def scan_databases(needles: dict[str, str]) -> list[str]:
    """Every column of every row of every table of every database on the server."""
    admin = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{PG_PORT}/postgres")
    try:
        names = [r["datname"] for r in await admin.fetch("SELECT datname FROM pg_database WHERE NOT datistemplate")]
    finally:
        await admin.close()
    hits: list[str] = []
    for name in names:
        conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{PG_PORT}/{name}")
        try:
            tables = await conn.fetch(
                "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
                "AND table_schema NOT IN ('pg_catalog', 'information_schema')"
            )
            for t in tables:
                qualified = f'"{t["table_schema"]}"."{t["table_name"]}"'
                for row in await conn.fetch(f"SELECT * FROM {qualified}"):
                    for column, value in row.items():
                        raw = value if isinstance(value, bytes) else str(value).encode()
                        hits += [f"{name}.{qualified}.{column}: {label}" for label in find(raw, needles)]
        finally:
            await conn.close()
    return hits


async def scan_topics(needles: dict[str, str]) -> tuple[list[str], int]:
    """Every record (key, value, headers) of every topic on the broker, from the beginning."""
    consumer = AIOKafkaConsumer(bootstrap_servers=KAFKA, group_id=None)
    await consumer.start()
    try:
        topics = sorted(t for t in await consumer.topics() if t != "__consumer_offsets")
    finally:
        await consumer.stop()
    hits: list[str] = []
    scanned = 0
    for topic in topics:
        for record in await read_topic(topic, timeout_s=20):
            scanned += 1
            raw = b"\0".join([record.key or b"", record.value or b"", *(v for _, v in record.headers or ())])
            hits += [f"{topic}@{record.partition}:{record.offset}: {label}" for label in find(raw, needles)]
    return hits, scanned


def run_files() -> Iterable[Path]:
    """The run's logs (platform processes, broker, database server) and file databases (gateway)."""
    yield from (p for p in log_dir().rglob("*") if p.is_file())
    root = state_dir()
    yield from (p for p in (root / "postgres" / "server.log", root / "kafka" / "server.log") if p.is_file())
    yield from root.glob("*.db")


def scan_files(needles: dict[str, str]) -> list[str]:
    return [f"{path}: {label}" for path in run_files() for label in find(path.read_bytes(), needles)]


# ---- the customer's life ---------------------------------------------------------------------------------------


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0)
    receiver.port = server.sockets[0].getsockname()[1]
    yield receiver
    server.close()


async def _complain(gateway: httpx.AsyncClient, customer_id: str, person: Person) -> None:
    body = {
        "customer_id": customer_id,
        "type": "complaint",
        "channel": "phone",
        "initiated_by": "customer",
        "severity": "high",
        "category": "delivery",
        "text": f"{person.needles()['complaint text']} the parcel to {person.email} never came.",
        "external_id": f"ticket-{uuid.uuid4()}",
    }
    response = await gateway.post("/api/v1/interactions", json=body)
    assert response.status_code == 201, response.text


CONSENT_TABLES = {"customer": ("consents", "consent_changes", "contact_profiles"), "retention": ("consent_replica",)}
# The loyalty points ledger and account (docs/loyalty-points.md), and retention's member-tier replica of it.
POINTS_TABLES = {"customer": ("points_entries", "points_accounts"), "retention": ("member_tiers",)}


async def _consent_rows(customer_id: str, service: str) -> int:
    """Rows about the customer in the service's consent (and loyalty points) tables."""
    conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{PG_PORT}/{service}")
    try:
        total = 0
        for table in (*CONSENT_TABLES[service], *POINTS_TABLES.get(service, ())):
            total += await conn.fetchval(f"SELECT count(*) FROM {table} WHERE customer_id = $1", customer_id)
        return total
    finally:
        await conn.close()


async def _wait_for_every_receipt(gateway: httpx.AsyncClient, customer_id: str, timeout_s: float = 90) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        response = await gateway.get(f"/api/v1/customers/{customer_id}/erasure")
        assert response.status_code == 200, response.text
        if response.json()["complete"] or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.5)
    assert response.json()["complete"], f"not every service confirmed the erasure: {response.json()['services']}"


async def test_after_erasure_no_store_topic_or_log_holds_the_customers_personal_data(
    gateway: httpx.AsyncClient, receiver: Receiver
):
    hook = await gateway.post(
        "/api/v1/webhooks",
        json={"url": f"http://127.0.0.1:{receiver.port}/hook", "event_types": [], "secret": SECRET},
    )
    assert hook.status_code == 201, hook.text
    person = Person()
    created = await gateway.post(
        "/api/v1/customers",
        json={
            "name": person.name,
            "kind": "person",
            "email": person.email,
            "phone": person.phone,
            "external_ref": person.external_ref,
            "segment": "privacy-e2e",
            "owner": "agent-privacy",
            "tags": person.tags,
            "attributes": person.attributes,
        },
    )
    assert created.status_code == 201, created.text
    customer_id = created.json()["id"]
    patched = await gateway.patch(
        f"/api/v1/customers/{customer_id}",
        json={"attributes": {"nickname": person.new_nickname}},
        headers={"If-Match": created.headers["etag"]},
    )
    assert patched.status_code == 200, patched.text
    # Consent and contact preferences (docs/consent.md): the customer service's records and audit trail
    # and retention's replica of them are erased with the rest.
    consent = await gateway.put(
        f"/api/v1/customers/{customer_id}/consent",
        json={"channels": {"email": {"status": "opt_out"}}, "timezone": "Pacific/Chatham"},
    )
    assert consent.status_code == 200, consent.text
    assert await eventually(lambda: _consent_rows(customer_id, "retention"), what="retention's consent replica")
    # Loyalty points: a ledger entry and the account with the balance, erased with the rest.
    booked = await gateway.post(
        f"/api/v1/customers/{customer_id}/points",
        json={"kind": "earn", "amount": 120, "source": "erp", "source_ref": f"INV-{uuid.uuid4()}"},
    )
    assert booked.status_code == 201, booked.text

    # Every service holds data about the customer: complaints, a score, an alert, a webhook delivery.
    for _ in range(2):
        await _complain(gateway, customer_id, person)
    [alert, *_] = await eventually(lambda: alerts_for(gateway, customer_id), what="an alert for the customer")
    await eventually(
        lambda: asyncio.sleep(0, receiver.for_alert(alert["id"], "alert.raised")), what="the alert.raised webhook"
    )

    async def scored() -> bool:
        return (await gateway.get(f"/api/v1/customers/{customer_id}/scores")).status_code == 200

    await eventually(scored, what="the customer's score")
    # The scanner finds what is there: before the erasure the customer database holds every value.
    before = await scan_databases(person.needles())
    assert {"name", "email", "external_ref", "patched nickname", "favourite_shop", "tag 0"} <= {
        h.rsplit(": ", 1)[1] for h in before
    }

    erased = await gateway.delete(f"/api/v1/customers/{customer_id}")
    assert erased.status_code == 202, erased.text
    await _wait_for_every_receipt(gateway, customer_id)

    needles = person.needles()
    assert await scan_databases(needles) == []
    assert await _consent_rows(customer_id, "customer") == 0
    assert await _consent_rows(customer_id, "retention") == 0
    assert (await gateway.get(f"/api/v1/customers/{customer_id}/consent")).json()["channels"] == {}
    points = (await gateway.get(f"/api/v1/customers/{customer_id}/points")).json()
    assert (points["balance"], points["total"], points["tier"]) == (0, 0, None)
    topic_hits, scanned = await scan_topics(needles)
    assert scanned > 0 and topic_hits == []
    assert scan_files(needles) == []
    # The receiver got deliveries about the customer: the check above covered a real delivery log.
    assert any(orjson.loads(b)["data"].get("customer_id") == customer_id for _, b in receiver.requests)
