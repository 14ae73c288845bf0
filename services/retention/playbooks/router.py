"""HTTP routes of playbooks."""

from fastapi import APIRouter, status

from servicekit.deps import SessionDep
from servicekit.pagination import DEFAULT_PAGE, Limit, Offset
from servicekit.unit_of_work import UnitOfWork
from services.retention.playbooks import service as playbooks
from services.retention.playbooks.models import PlaybookCreate, PlaybookPublic, PlaybooksPublic, PlaybookUpdate

router = APIRouter()


@router.get("/playbooks", response_model=PlaybooksPublic, tags=["playbooks"])
async def list_playbooks(session: SessionDep, limit: Limit = DEFAULT_PAGE, offset: Offset = 0) -> PlaybooksPublic:
    rows, total = await playbooks.list_playbooks(session=session, limit=limit, offset=offset)
    items = [PlaybookPublic.model_validate(p, from_attributes=True) for p in rows]
    return PlaybooksPublic(items=items, total=total, limit=limit, offset=offset)


@router.post("/playbooks", response_model=PlaybookPublic, status_code=status.HTTP_201_CREATED, tags=["playbooks"])
async def create_playbook(data: PlaybookCreate, session: SessionDep) -> PlaybookPublic:
    playbook = await playbooks.create_playbook(uow=UnitOfWork(session), data=data)
    await session.commit()
    return PlaybookPublic.model_validate(playbook, from_attributes=True)


@router.get("/playbooks/{playbook_id}", response_model=PlaybookPublic, tags=["playbooks"])
async def get_playbook(playbook_id: str, session: SessionDep) -> PlaybookPublic:
    playbook = await playbooks.get_playbook(session=session, playbook_id=playbook_id)
    return PlaybookPublic.model_validate(playbook, from_attributes=True)


@router.patch("/playbooks/{playbook_id}", response_model=PlaybookPublic, tags=["playbooks"])
async def update_playbook(playbook_id: str, data: PlaybookUpdate, session: SessionDep) -> PlaybookPublic:
    playbook = await playbooks.update_playbook(uow=UnitOfWork(session), playbook_id=playbook_id, data=data)
    await session.commit()
    return PlaybookPublic.model_validate(playbook, from_attributes=True)
