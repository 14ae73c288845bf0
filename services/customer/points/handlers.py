"""erp.loyalty.v1 -> the points ledger."""

from contracts.erp import ErpPointsEarned, ErpPointsExpired, ErpPointsRedeemed, PointsEvent
from servicekit.events.envelope import Received
from servicekit.inbox import Handlers, PoisonEvent
from servicekit.unit_of_work import UnitOfWork
from services.customer.points import service as points
from services.customer.points.loyalty_points import EntryKind
from services.customer.settings import get_settings

# The ERP's own source name in the ledger: a resent document (same document_id) is booked once.
ERP_SOURCE = "erp"
_KINDS = {
    ErpPointsEarned.event_type: EntryKind.earn,
    ErpPointsRedeemed.event_type: EntryKind.redeem,
    ErpPointsExpired.event_type: EntryKind.expire,
}


async def on_points(uow: UnitOfWork, event: Received[PointsEvent]) -> None:
    # Duplicate-safe: the ledger is unique by (source, document id), so a redelivery finds its entry.
    data = event.data
    booking = points.Booking(
        kind=_KINDS[data.event_type],
        amount=data.points,
        source=ERP_SOURCE,
        source_ref=data.document_id,
        occurred_at=data.occurred_at,
        reason=data.reason,
    )
    # Every refusal is dead-lettered with its reason (never the reference itself) for the integration.
    try:
        customer = await points.book_inbound(
            session=uow.session, customer_ref=data.customer_ref, booking=booking, tiers=get_settings().loyalty_tiers
        )
    except points.BeyondBalance:
        raise PoisonEvent(f"{data.event_type} takes more points than the balance holds") from None
    except points.RefUsedElsewhere:
        raise PoisonEvent(f"{data.event_type} reuses a document id booked as another entry") from None
    except points.ErasedCustomer:
        raise PoisonEvent(f"{data.event_type} names an erased customer") from None
    if customer is None:
        raise PoisonEvent(f"{data.event_type} names a customer reference no customer has")


HANDLERS: Handlers = {
    ErpPointsEarned.event_type: on_points,
    ErpPointsRedeemed.event_type: on_points,
    ErpPointsExpired.event_type: on_points,
}
