"""crm.erasure.v1 -> erasure receipts; erp.consents.v1 -> consent changes; erp.loyalty.v1 -> points ledger.

Handlers never commit; the consumer commits with the inbox row.

Every service (this one too) publishes erasure.confirmed once it erased its copy of a customer's
personal data. Recording a receipt is idempotent: a repeat keeps the earliest confirmation.
"""

from servicekit.events.contracts.erasure import ErasureConfirmed
from servicekit.events.contracts.erp import (
    ErpConsentChanged,
    ErpPointsEarned,
    ErpPointsExpired,
    ErpPointsRedeemed,
    PointsEvent,
)
from servicekit.events.envelope import Received
from servicekit.inbox import Handlers, PoisonEvent
from servicekit.unit_of_work import UnitOfWork
from services.customer import consent, points, service
from services.customer.loyalty_points import EntryKind
from services.customer.settings import get_settings


async def on_erasure_confirmed(uow: UnitOfWork, event: Received[ErasureConfirmed]) -> None:
    data = event.data
    receipt = await service.record_receipt(
        session=uow.session,
        customer_id=data.customer_id,
        service=data.service,
        confirmed_at=data.erased_at,
        summary=data.summary,
        event_id=event.id,
    )
    if receipt is None:
        # Customers are never deleted here, so an unknown id can never be matched later.
        raise PoisonEvent(f"erasure.confirmed for unknown customer {data.customer_id}")


async def on_consent_changed(uow: UnitOfWork, event: Received[ErpConsentChanged]) -> None:
    # Duplicate-safe: a repeat equals the recorded consent (or is older than it) and changes nothing.
    data = event.data
    change = consent.ChannelChange(data.channel, data.status, data.legal_basis, data.source, data.changed_at)
    if await consent.apply_inbound(session=uow.session, customer_ref=data.customer_ref, change=change) is None:
        # Dead-lettered with the reason (never the reference itself) for the integration to resend.
        raise PoisonEvent("erp.consent.changed names a customer reference no customer has")


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
    ErasureConfirmed.event_type: on_erasure_confirmed,
    ErpConsentChanged.event_type: on_consent_changed,
    ErpPointsEarned.event_type: on_points,
    ErpPointsRedeemed.event_type: on_points,
    ErpPointsExpired.event_type: on_points,
}
