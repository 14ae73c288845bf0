"""Background loop of the customer service's consume role: expired Idempotency-Keys are deleted."""

from __future__ import annotations

import logging
from datetime import timedelta

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.background import every_in_transaction
from servicekit.clock import utc_now
from services.customer.consent import service as consent
from services.customer.customers import service
from services.customer.settings import CustomerSettings

log = logging.getLogger("customer.background")


async def purge_idempotency_keys(app: FastAPI) -> None:
    settings: CustomerSettings = app.state.settings

    async def work(session: AsyncSession) -> int:
        older_than = utc_now() - timedelta(hours=settings.idempotency_key_ttl_hours)
        purged = await service.purge_idempotency_keys(session=session, older_than=older_than)
        purged += await consent.purge_import_keys(session=session, older_than=older_than)
        if purged:
            log.info("expired idempotency keys deleted", extra={"keys": purged})
        return purged

    await every_in_transaction(settings.idempotency_purge_interval_s, "idempotency-keys", app.state.database, work)
