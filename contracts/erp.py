"""Inbound contracts: what ERP, SCM and marketing systems publish for the platform (erp.orders.v1,
erp.returns.v1, scm.shipments.v1, erp.consents.v1, erp.loyalty.v1).

Same CloudEvents envelope as the platform's own events, but the subject (and the Kafka key) is
``customer_ref``, the customer's reference in the ERP system: those systems do not know the CRM's
customer ids. The interaction service maps the reference to a customer and records an interaction;
an event naming a reference it does not know yet is parked until that customer appears.
"""

from datetime import datetime
from decimal import Decimal

from pydantic import Field

from contracts import topics
from contracts.common import ConsentSource, ConsentStatus, ContactChannel, LegalBasis
from servicekit.events.envelope import EventData

CURRENCY = r"^[A-Z]{3}$"


class InboundEvent(EventData):
    """Base of every inbound event: keyed by the ERP's customer reference, not a CRM customer id."""

    customer_ref: str = Field(min_length=1, max_length=100, description="the customer's reference in the ERP")

    def subject(self) -> str:
        return self.customer_ref


# ---- erp.orders.v1 ---------------------------------------------------------------------------------


class OrderEvent(InboundEvent):
    topic = topics.ERP_ORDERS
    order_id: str = Field(min_length=1, max_length=100)


class ErpOrderPlaced(OrderEvent):
    """An order was placed. Becomes a purchase interaction (idempotent by order_id)."""

    event_type = "erp.order.placed"
    amount: Decimal = Field(ge=0, max_digits=14, decimal_places=2, description="order total")
    currency: str = Field(pattern=CURRENCY, description="ISO 4217, e.g. EUR")
    quantity: int = Field(1, ge=1, le=1_000_000, description="number of items")
    channel: str | None = Field(None, min_length=1, max_length=40, description="e.g. web, store, phone, edi")
    placed_at: datetime
    offer_code: str | None = Field(
        None,
        min_length=1,
        max_length=60,
        pattern=r"^[a-z0-9][a-z0-9_.-]*$",
        description="the campaign offer's code the order redeems, if any (exact redemption)",
    )


class ErpOrderCancelled(OrderEvent):
    """An order was cancelled. Becomes a return interaction (category order_cancelled)."""

    event_type = "erp.order.cancelled"
    amount: Decimal | None = Field(None, ge=0, max_digits=14, decimal_places=2, description="amount cancelled")
    currency: str | None = Field(None, pattern=CURRENCY)
    quantity: int | None = Field(None, ge=1, le=1_000_000)
    reason: str | None = Field(None, max_length=500)
    cancelled_at: datetime


# ---- erp.returns.v1 ----------------------------------------------------------------------------------


class ErpReturnCreated(InboundEvent):
    """Goods came back. Becomes a return interaction (idempotent by return_id)."""

    topic = topics.ERP_RETURNS
    event_type = "erp.return.created"
    return_id: str = Field(min_length=1, max_length=100)
    order_id: str | None = Field(None, min_length=1, max_length=100)
    amount: Decimal = Field(ge=0, max_digits=14, decimal_places=2, description="amount refunded")
    currency: str = Field("EUR", pattern=CURRENCY)
    quantity: int | None = Field(None, ge=1, le=1_000_000)
    reason: str | None = Field(None, max_length=500)
    returned_at: datetime


# ---- scm.shipments.v1 --------------------------------------------------------------------------------


class ShipmentEvent(InboundEvent):
    """A delivery problem. Becomes a delivery complaint the company opens on the customer's behalf."""

    topic = topics.SCM_SHIPMENTS
    shipment_id: str = Field(min_length=1, max_length=100)
    order_id: str | None = Field(None, min_length=1, max_length=100)
    carrier: str | None = Field(None, max_length=100)
    reported_at: datetime


class ScmShipmentDelayed(ShipmentEvent):
    event_type = "scm.shipment.delayed"
    delay_days: int | None = Field(None, ge=0, le=3650, description="expected delay in days, if known")


class ScmShipmentLost(ShipmentEvent):
    event_type = "scm.shipment.lost"


class ScmShipmentDamaged(ShipmentEvent):
    event_type = "scm.shipment.damaged"


# ---- erp.consents.v1 ---------------------------------------------------------------------------------


class ErpConsentChanged(InboundEvent):
    """A customer gave or withdrew consent in the ERP or a marketing system (preference centre,
    unsubscribe link). The customer service applies it to the consent record of the customer with this
    reference; a change older than the recorded one for the channel is ignored. An unknown reference is
    dead-lettered (erp.consents.v1.dlq) with the reason, for the integration to resend."""

    topic = topics.ERP_CONSENTS
    event_type = "erp.consent.changed"
    channel: ContactChannel
    status: ConsentStatus
    legal_basis: LegalBasis = LegalBasis.consent
    source: ConsentSource = Field(ConsentSource.erp, description="erp or marketing")
    changed_at: datetime = Field(description="when the customer gave or withdrew it")


# ---- erp.loyalty.v1 ----------------------------------------------------------------------------------


class PointsEvent(InboundEvent):
    """A loyalty points movement booked in the ERP (docs/loyalty-points.md). The customer service adds
    it to the points ledger of the customer with this reference, once per ``document_id`` (a resent
    event changes nothing). An unknown reference, or a redemption or expiry beyond the balance, is
    dead-lettered (erp.loyalty.v1.dlq) with the reason, for the integration to resend."""

    topic = topics.ERP_LOYALTY
    document_id: str = Field(min_length=1, max_length=100, description="the ERP document that booked the points")
    points: int = Field(gt=0, le=1_000_000_000, description="how many points (always positive)")
    reason: str | None = Field(
        None, pattern=r"^[a-z0-9_.:-]{1,40}$", description="a code, e.g. purchase, reward, yearly_expiry"
    )
    occurred_at: datetime = Field(description="when the ERP booked the movement")


class ErpPointsEarned(PointsEvent):
    """Points earned (a purchase, a promotion): added to the balance and to the lifetime points."""

    event_type = "erp.points.earned"


class ErpPointsRedeemed(PointsEvent):
    """Points redeemed (a reward, a voucher): taken from the balance."""

    event_type = "erp.points.redeemed"


class ErpPointsExpired(PointsEvent):
    """Points that expired: taken from the balance."""

    event_type = "erp.points.expired"


# What the interaction service consumes; consent changes and loyalty points go to the customer service
# (CONSENT_MODELS, LOYALTY_MODELS).
MODELS = (
    ErpOrderPlaced,
    ErpOrderCancelled,
    ErpReturnCreated,
    ScmShipmentDelayed,
    ScmShipmentLost,
    ScmShipmentDamaged,
)
CONSENT_MODELS = (ErpConsentChanged,)
LOYALTY_MODELS = (ErpPointsEarned, ErpPointsRedeemed, ErpPointsExpired)
