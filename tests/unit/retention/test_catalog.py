"""The per-process copy of rules, playbooks and webhooks, and the token that keeps it current."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from servicekit.db import Database
from services.retention import service
from services.retention.catalog import catalog
from services.retention.models import WebhookCreate
from tests.statements import statements_sent
from tests.unit.retention.events import complaint
from tests.unit.retention.test_delivery import public_dns
from tests.unit.retention.test_handlers import alerts, apply

SEVERE = "default-severe-complaint"


async def test_an_unchanged_catalog_costs_a_transaction_one_read_of_its_token(database: Database):
    async with database.transaction() as session:
        first = await catalog(session)
    with statements_sent(database.engine.sync_engine, "SELECT") as sent:
        async with database.transaction() as session:
            again = await catalog(session)
            await catalog(session)

    assert again is first
    assert [s.split("FROM ")[1].split()[0] for s in sent] == ["catalog_version"]
    assert SEVERE in {r.id for r in first.rules}


async def test_a_rule_disabled_by_hand_in_sql_stops_firing_in_the_next_transaction(database: Database):
    async with database.transaction() as session:
        assert SEVERE in {r.id for r in (await catalog(session)).rules}
    async with database.transaction() as session:
        await session.execute(text("UPDATE rules SET enabled = false WHERE id = :id"), {"id": SEVERE})

    await apply(database, complaint(severity="critical"))

    assert [a.reason for a in await alerts(database)] == []
    async with database.transaction() as session:
        assert SEVERE not in {r.id for r in (await catalog(session)).rules}


async def test_a_webhook_is_subscribed_from_its_own_transaction_on(database: Database):
    async with database.transaction() as session:
        assert (await catalog(session)).subscribers == ()
        hook = await service.create_webhook(
            session=session,
            data=WebhookCreate(url="https://hooks.example/crm", secret="s" * 16),
            resolve=public_dns,
        )
        assert [s.id for s in (await catalog(session)).subscribers] == [hook.id]
    async with database.transaction() as session:
        assert [s.id for s in (await catalog(session)).subscribers] == [hook.id]


async def test_a_copy_read_inside_a_rolled_back_change_is_not_kept(database: Database):
    with pytest.raises(RuntimeError):
        async with database.transaction() as session:
            await service.create_webhook(
                session=session,
                data=WebhookCreate(url="https://hooks.example/crm", secret="s" * 16),
                resolve=public_dns,
            )
            assert len((await catalog(session)).subscribers) == 1
            raise RuntimeError("rolled back")

    async with database.transaction() as session:
        assert (await catalog(session)).subscribers == ()


async def test_a_disabled_playbook_is_left_out(database: Database):
    async with database.transaction() as session:
        assert "severe_complaint" in (await catalog(session)).playbooks
        await session.execute(text("UPDATE playbooks SET enabled = false WHERE reason = 'severe_complaint'"))
    async with database.transaction() as session:
        assert "severe_complaint" not in (await catalog(session)).playbooks
