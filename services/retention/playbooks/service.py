"""Playbooks: what happens when an alert of a reason is raised (tasks at once, or a sequence per tier)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.clock import utc_now
from servicekit.problems import Problem, field_error, not_found
from servicekit.unit_of_work import UnitOfWork
from services.retention.catalog.service import changed as catalog_changed
from services.retention.db import page
from services.retention.playbooks.models import Playbook, PlaybookCreate, PlaybookUpdate


async def list_playbooks(*, session: AsyncSession, limit: int, offset: int) -> tuple[Sequence[Playbook], int]:
    return await page(session, select(Playbook).order_by(Playbook.reason), [], Playbook, limit, offset)


async def get_playbook(*, session: AsyncSession, playbook_id: str) -> Playbook:
    playbook = await session.get(Playbook, playbook_id)
    if playbook is None:
        raise not_found("Playbook", playbook_id)
    return playbook


async def create_playbook(*, uow: UnitOfWork, data: PlaybookCreate) -> Playbook:
    session = uow.session
    existing = (await session.execute(select(Playbook).where(Playbook.reason == data.reason))).scalar_one_or_none()
    if existing is not None:
        raise Problem(
            409,
            "Playbook exists",
            f"Reason {data.reason} already has playbook {existing.id}; PATCH it instead.",
            code="conflict",
            errors=[field_error("reason", "already has a playbook")],
            playbook_id=existing.id,
        )
    playbook = Playbook(
        reason=data.reason,
        name=data.name,
        steps=[s.model_dump(mode="json") for s in data.steps],
        sequences={k: v.model_dump(mode="json", by_alias=True) for k, v in data.sequences.items()},
        control_share=data.control_share,
        enabled=data.enabled,
    )
    session.add(playbook)
    await session.flush()
    catalog_changed(uow)
    return playbook


async def update_playbook(*, uow: UnitOfWork, playbook_id: str, data: PlaybookUpdate) -> Playbook:
    playbook = await get_playbook(session=uow.session, playbook_id=playbook_id)
    if data.steps is not None:
        playbook.steps = [s.model_dump(mode="json") for s in data.steps]
    if data.sequences is not None:
        playbook.sequences = {k: v.model_dump(mode="json", by_alias=True) for k, v in data.sequences.items()}
    for name in ("name", "control_share", "enabled"):
        value = getattr(data, name)
        if value is not None:
            setattr(playbook, name, value)
    playbook.updated_at = utc_now()
    await uow.session.flush()
    catalog_changed(uow)
    return playbook
