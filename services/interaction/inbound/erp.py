"""Inbound ERP/SCM events -> interactions. Pure: no clock, no I/O.

How each event becomes an interaction (and why):
- erp.order.placed     -> purchase (order id, amount, currency, quantity, at placed_at).
- erp.order.cancelled  -> return, category "order_cancelled": a cancellation takes back a purchase the
                          way a return does, so scoring nets it against spend and counts it as a
                          negative signal; feedback would lose the amount.
- erp.return.created   -> return (amount refunded, reason as the text).
- scm.shipment.*       -> a complaint in category delivery, opened by the company on the customer's
                          behalf: lost = high, damaged = medium, delayed = medium from
                          DELAY_MEDIUM_DAYS days on, else low. It runs through the complaint workflow
                          with an SLA, so a lost parcel is handled before the customer has to complain.
Each is idempotent by the source's own id (see external_id_of); a shipment can have one complaint per
kind of problem (delayed, then lost, are two complaints; a second "delayed" is a repeat).
"""

from __future__ import annotations

from typing import Any

from contracts.common import InteractionType, Severity
from contracts.erp import (
    ErpOrderCancelled,
    ErpOrderPlaced,
    ErpReturnCreated,
    InboundEvent,
    ScmShipmentDamaged,
    ScmShipmentDelayed,
    ScmShipmentLost,
    ShipmentEvent,
)
from services.interaction.complaints.workflow import ComplaintCategory
from services.interaction.interactions.models import Initiator, InteractionCreate

DELAY_MEDIUM_DAYS = 5
ORDER_CANCELLED = "order_cancelled"
ERP_CHANNEL = "erp"
SCM_CHANNEL = "scm"
# Stands in for the customer while an event is checked before its customer is known (see service.park).
PENDING_CUSTOMER = "pending"

SHIPMENT_KINDS: dict[type[ShipmentEvent], str] = {
    ScmShipmentDelayed: "delayed",
    ScmShipmentLost: "lost",
    ScmShipmentDamaged: "damaged",
}


def external_id_of(event: InboundEvent) -> str:
    """The interaction's external_id: the source system's id, so a repeated event adds nothing."""
    if isinstance(event, ErpOrderPlaced):
        return f"erp-order:{event.order_id}"
    if isinstance(event, ErpOrderCancelled):
        return f"erp-order-cancelled:{event.order_id}"
    if isinstance(event, ErpReturnCreated):
        return f"erp-return:{event.return_id}"
    if isinstance(event, ShipmentEvent):
        return f"scm-shipment:{event.shipment_id}:{SHIPMENT_KINDS[type(event)]}"
    raise TypeError(f"no mapping for {type(event).__name__}")


def shipment_severity(event: ShipmentEvent) -> Severity:
    if isinstance(event, ScmShipmentLost):
        return Severity.high
    if isinstance(event, ScmShipmentDamaged):
        return Severity.medium
    if isinstance(event, ScmShipmentDelayed) and (event.delay_days or 0) >= DELAY_MEDIUM_DAYS:
        return Severity.medium
    return Severity.low


def _shipment_text(event: ShipmentEvent) -> str:
    kind = SHIPMENT_KINDS[type(event)]
    parts = [f"Shipment {event.shipment_id}"]
    if event.order_id:
        parts.append(f"of order {event.order_id}")
    parts.append(f"reported {kind} by SCM")
    if isinstance(event, ScmShipmentDelayed) and event.delay_days is not None:
        parts.append(f"({event.delay_days} days late)")
    if event.carrier:
        parts.append(f"carrier {event.carrier}")
    return " ".join(parts) + "."


def to_interaction(event: InboundEvent, customer_id: str) -> InteractionCreate:
    """The interaction an inbound event stands for; raises pydantic.ValidationError if it cannot be one."""
    common: dict[str, Any] = {"customer_id": customer_id, "external_id": external_id_of(event)}
    if isinstance(event, ErpOrderPlaced):
        return InteractionCreate(
            **common,
            type=InteractionType.purchase,
            channel=event.channel or ERP_CHANNEL,
            initiated_by=Initiator.customer,
            occurred_at=event.placed_at,
            order_id=event.order_id,
            amount=event.amount,
            currency=event.currency,
            quantity=event.quantity,
            offer_code=event.offer_code,
        )
    if isinstance(event, ErpOrderCancelled):
        return InteractionCreate(
            **common,
            type=InteractionType.return_,
            channel=ERP_CHANNEL,
            occurred_at=event.cancelled_at,
            order_id=event.order_id,
            amount=event.amount,
            currency=event.currency if event.amount is not None else None,
            quantity=event.quantity,
            category=ORDER_CANCELLED,
            text=event.reason,
        )
    if isinstance(event, ErpReturnCreated):
        return InteractionCreate(
            **common,
            type=InteractionType.return_,
            channel=ERP_CHANNEL,
            initiated_by=Initiator.customer,
            occurred_at=event.returned_at,
            order_id=event.order_id,
            amount=event.amount,
            currency=event.currency,
            quantity=event.quantity,
            text=event.reason,
        )
    if isinstance(event, ShipmentEvent):
        return InteractionCreate(
            **common,
            type=InteractionType.complaint,
            channel=SCM_CHANNEL,
            initiated_by=Initiator.company,
            occurred_at=event.reported_at,
            order_id=event.order_id,
            severity=shipment_severity(event),
            category=ComplaintCategory.delivery.value,
            text=_shipment_text(event),
        )
    raise TypeError(f"no mapping for {type(event).__name__}")
