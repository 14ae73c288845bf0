"""HTTP routes of webhooks: subscriptions and their delivery logs."""

from fastapi import APIRouter, Request, Response, status

from servicekit.deps import SessionDep
from servicekit.pagination import DEFAULT_PAGE, Limit, Offset
from servicekit.unit_of_work import UnitOfWork
from services.retention.settings import RetentionSettings
from services.retention.webhooks import service as webhooks
from services.retention.webhooks import targets
from services.retention.webhooks.models import (
    DeliveriesPublic,
    DeliveryPublic,
    WebhookCreate,
    WebhookPublic,
    WebhooksPublic,
)

router = APIRouter()


@router.get("/webhooks", response_model=WebhooksPublic, tags=["webhooks"])
async def list_webhooks(session: SessionDep, limit: Limit = DEFAULT_PAGE, offset: Offset = 0) -> WebhooksPublic:
    rows, total = await webhooks.list_webhooks(session=session, limit=limit, offset=offset)
    items = [WebhookPublic.model_validate(h, from_attributes=True) for h in rows]
    return WebhooksPublic(items=items, total=total, limit=limit, offset=offset)


@router.post("/webhooks", response_model=WebhookPublic, status_code=status.HTTP_201_CREATED, tags=["webhooks"])
async def create_webhook(data: WebhookCreate, request: Request, session: SessionDep) -> WebhookPublic:
    """Subscribe a URL to retention events; deliveries are signed with the secret (never returned).

    The URL must reach a public address (or one in RETENTION_WEBHOOK_ALLOWED_NETWORKS); else 422 on url."""
    settings: RetentionSettings = request.app.state.settings
    hook = await webhooks.create_webhook(
        uow=UnitOfWork(session), data=data, allow=targets.networks(settings.webhook_allowed_networks)
    )
    await session.commit()
    return WebhookPublic.model_validate(hook, from_attributes=True)


@router.delete("/webhooks/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["webhooks"])
async def delete_webhook(webhook_id: str, session: SessionDep) -> Response:
    await webhooks.delete_webhook(uow=UnitOfWork(session), webhook_id=webhook_id)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/webhooks/{webhook_id}/deliveries", response_model=DeliveriesPublic, tags=["webhooks"])
async def list_deliveries(
    webhook_id: str, session: SessionDep, limit: Limit = DEFAULT_PAGE, offset: Offset = 0
) -> DeliveriesPublic:
    """The delivery log, newest first: status, attempts, last HTTP status or error, next attempt."""
    rows, total = await webhooks.list_deliveries(session=session, webhook_id=webhook_id, limit=limit, offset=offset)
    items = [DeliveryPublic.model_validate(d, from_attributes=True) for d in rows]
    return DeliveriesPublic(items=items, total=total, limit=limit, offset=offset)
