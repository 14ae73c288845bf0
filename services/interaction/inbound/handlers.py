"""erp.orders.v1, erp.returns.v1, scm.shipments.v1 -> interactions, idempotent by the source's own id; an
event naming an unknown customer is parked, never dropped."""

from contracts.erp import MODELS as INBOUND_MODELS
from contracts.erp import InboundEvent
from servicekit.events.envelope import Received
from servicekit.inbox import Handlers
from servicekit.unit_of_work import UnitOfWork
from services.interaction.inbound import service
from services.interaction.settings import complaint_sla_hours


async def on_inbound(uow: UnitOfWork, event: Received[InboundEvent]) -> None:
    sla_hours = await complaint_sla_hours(uow.session)
    await service.record_inbound(
        session=uow.session, event=event, sla_hours=sla_hours, parked=uow.state(service.ParkedRefs)
    )


HANDLERS: Handlers = {model.event_type: on_inbound for model in INBOUND_MODELS}
