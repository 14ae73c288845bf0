"""The per-process copy of rules, playbooks and webhooks, and the token that keeps it current."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from servicekit.db import Database
from servicekit.unit_of_work import unit_of_work
from services.retention.catalog.service import catalog
from services.retention.webhooks.models import WebhookCreate
from services.retention.webhooks.service import create_webhook
from tests.statements import statements_sent
from tests.unit.retention.events import complaint
from tests.unit.retention.test_delivery import public_dns
from tests.unit.retention.test_handlers import alerts, apply

SEVERE = "default-severe-complaint"


async def test_an_unchanged_catalog_costs_a_transaction_one_read_of_its_token(database: Database):
    async with unit_of_work(database) as uow:
        first = await catalog(uow)
    with statements_sent(database.engine.sync_engine, "SELECT") as sent:
        async with unit_of_work(database) as uow:
            again = await catalog(uow)
            await catalog(uow)

    assert again is first
    assert [s.split("FROM ")[1].split()[0] for s in sent] == ["catalog_version"]
    assert SEVERE in {r.id for r in first.rules}


async def test_a_rule_disabled_by_hand_in_sql_stops_firing_in_the_next_transaction(database: Database):
    async with unit_of_work(database) as uow:
        assert SEVERE in {r.id for r in (await catalog(uow)).rules}
    async with unit_of_work(database) as uow:
        await uow.session.execute(text("UPDATE rules SET enabled = false WHERE id = :id"), {"id": SEVERE})

    await apply(database, complaint(severity="critical"))

    assert [a.reason for a in await alerts(database)] == []
    async with unit_of_work(database) as uow:
        assert SEVERE not in {r.id for r in (await catalog(uow)).rules}


async def test_a_webhook_is_subscribed_from_its_own_transaction_on(database: Database):
    async with unit_of_work(database) as uow:
        assert (await catalog(uow)).subscribers == ()
        hook = await create_webhook(
            uow=uow,
            data=WebhookCreate(url="https://hooks.example/crm", secret="s" * 16),
            resolve=public_dns,
        )
        assert [s.id for s in (await catalog(uow)).subscribers] == [hook.id]
    async with unit_of_work(database) as uow:
        assert [s.id for s in (await catalog(uow)).subscribers] == [hook.id]


async def test_a_copy_read_inside_a_rolled_back_change_is_not_kept(database: Database):
    with pytest.raises(RuntimeError):
        async with unit_of_work(database) as uow:
            await create_webhook(
                uow=uow,
                data=WebhookCreate(url="https://hooks.example/crm", secret="s" * 16),
                resolve=public_dns,
            )
            assert len((await catalog(uow)).subscribers) == 1
            raise RuntimeError("rolled back")

    async with unit_of_work(database) as uow:
        assert (await catalog(uow)).subscribers == ()


async def test_a_disabled_playbook_is_left_out(database: Database):
    async with unit_of_work(database) as uow:
        assert "severe_complaint" in (await catalog(uow)).playbooks
        await uow.session.execute(text("UPDATE playbooks SET enabled = false WHERE reason = 'severe_complaint'"))
    async with unit_of_work(database) as uow:
        assert "severe_complaint" not in (await catalog(uow)).playbooks
