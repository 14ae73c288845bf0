"""HTTP routes of model versions and jobs: models change only through background jobs."""

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from servicekit.deps import SessionDep
from servicekit.pagination import DEFAULT_PAGE, Limit, Offset
from servicekit.problems import Problem, not_found
from servicekit.unit_of_work import UnitOfWork
from services.scoring.scores.models import PurchaseHistoryPublic
from services.scoring.training import service
from services.scoring.training import service as jobs
from services.scoring.training.models import (
    ChurnTrainRequest,
    JobPublic,
    ModelVersionPublic,
    ModelVersionsPublic,
    ValueRefitRequest,
)

router = APIRouter(tags=["scores"])


# ---- models and jobs -----------------------------------------------------------------------------------


def _queue_limit(http: Request) -> int:
    # Requested jobs are bounded (429 beyond it); the ones the service queues itself are not.
    return http.app.state.settings.job_queue_limit


@router.post("/models/value/refit", response_model=JobPublic, status_code=202, tags=["models"])
async def refit_value_model(session: SessionDep, http: Request, body: ValueRefitRequest | None = None) -> JobPublic:
    """Start a BG/NBD + Gamma-Gamma refit over the purchase history; poll GET /jobs/{id}."""
    body = body or ValueRefitRequest()
    request = {
        "calibration_end": None if body.calibration_end is None else body.calibration_end.isoformat(),
        "segment": body.segment,
    }
    job = await jobs.enqueue_job(
        session=session,
        kind=jobs.VALUE_REFIT,
        request={**request, "rescore": body.rescore},
        queue_limit=_queue_limit(http),
    )
    await session.commit()
    return await service.job_public(session=session, job_id=job.id)


@router.post("/models/churn/train", response_model=JobPublic, status_code=202, tags=["models"])
async def train_churn_model(session: SessionDep, http: Request, body: ChurnTrainRequest | None = None) -> JobPublic:
    """Start training a churn model on customers who churned (features before their churn date) against
    active ones; poll GET /jobs/{id}. The new version is activated unless activate is false."""
    body = body or ChurnTrainRequest()
    request = body.model_dump(mode="json")
    job = await jobs.enqueue_job(
        session=session, kind=jobs.CHURN_TRAIN, request=request, queue_limit=_queue_limit(http)
    )
    await session.commit()
    return await service.job_public(session=session, job_id=job.id)


@router.get("/models/value/purchases", response_model=PurchaseHistoryPublic, tags=["models"])
async def purchase_history(
    session: SessionDep, segment: Annotated[str | None, Query(max_length=100)] = None
) -> PurchaseHistoryPublic:
    """The purchase history a value refit would read (e.g. to see that an import has arrived)."""
    return await service.purchase_history(session=session, segment=segment)


@router.get("/jobs/{job_id}", response_model=JobPublic, tags=["models"])
async def get_job(job_id: str, session: SessionDep) -> JobPublic:
    """A background job's status (queued, running, succeeded, failed), progress 0..1 and result."""
    return await service.job_public(session=session, job_id=job_id)


@router.get("/models", response_model=ModelVersionsPublic, tags=["models"])
async def list_models(
    session: SessionDep,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
    kind: Annotated[Literal["value", "churn"] | None, Query()] = None,
) -> ModelVersionsPublic:
    """Model versions with their parameters and metrics, newest first; `active` marks the ones in use."""
    return await service.model_versions(session=session, kind=kind, limit=limit, offset=offset)


@router.post("/models/{model_id}/activate", response_model=ModelVersionPublic, tags=["models"])
async def activate_model(model_id: str, session: SessionDep) -> ModelVersionPublic:
    """Choose the active version of its kind (also to roll back); every customer is rescored with it."""
    try:
        row = await jobs.activate_version(uow=UnitOfWork(session), model_id=model_id)
    except LookupError:
        raise not_found(
            "model", model_id, detail=f"No model version {model_id}", message=f"unknown model {model_id}"
        ) from None
    await jobs.enqueue_job(session=session, kind=jobs.RESCORE, request={"model_id": model_id})
    public = service.model_public(row)
    await session.commit()
    return public


@router.post("/models/churn/deactivate", response_model=JobPublic, tags=["models"])
async def deactivate_churn_model(session: SessionDep) -> JobPublic:
    """Back to no active churn model (rules-based risk); every customer is rescored: the rescore job to poll.
    409 when no churn model is active."""
    row = await jobs.deactivate_churn_model(uow=UnitOfWork(session))
    if row is None:
        raise Problem(409, "No active churn model", "Churn risk is rules-based already.", code="no_active_model")
    job = await jobs.enqueue_job(session=session, kind=jobs.RESCORE, request={"deactivated": row.id})
    await session.commit()
    return await service.job_public(session=session, job_id=job.id)
