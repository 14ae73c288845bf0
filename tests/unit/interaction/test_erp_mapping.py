from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pydantic
import pytest

from contracts.erp import (
    ErpOrderCancelled,
    ErpOrderPlaced,
    ErpReturnCreated,
    ScmShipmentDamaged,
    ScmShipmentDelayed,
    ScmShipmentLost,
)
from servicekit.events.envelope import CloudEvent
from services.interaction.inbound.erp import external_id_of, shipment_severity, to_interaction

AT = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)


def placed(**fields) -> ErpOrderPlaced:
    return ErpOrderPlaced(
        **{"order_id": "O-1", "customer_ref": "ERP-7", "amount": "120.50", "currency": "EUR", "quantity": 3}
        | {"placed_at": AT}
        | fields
    )


def test_an_order_placed_is_a_purchase_with_its_amount_and_the_order_id():
    interaction = to_interaction(placed(), "c-1")
    assert (interaction.type, interaction.customer_id, interaction.external_id) == ("purchase", "c-1", "erp-order:O-1")
    assert (interaction.amount, interaction.currency, interaction.quantity) == (Decimal("120.50"), "EUR", 3)
    assert (interaction.order_id, interaction.occurred_at, interaction.channel) == ("O-1", AT, "erp")
    assert to_interaction(placed(channel="web"), "c-1").channel == "web"


def test_a_cancelled_order_is_a_return_in_category_order_cancelled():
    event = ErpOrderCancelled(
        order_id="O-1", customer_ref="ERP-7", amount="120.50", currency="EUR", reason="changed mind", cancelled_at=AT
    )
    interaction = to_interaction(event, "c-1")
    assert (interaction.type, interaction.category, interaction.external_id) == (
        "return",
        "order_cancelled",
        "erp-order-cancelled:O-1",
    )
    assert (interaction.amount, interaction.text, interaction.order_id) == (Decimal("120.50"), "changed mind", "O-1")


def test_a_return_is_a_return_with_the_refund_and_the_reason_as_text():
    event = ErpReturnCreated(
        return_id="R-9",
        order_id="O-1",
        customer_ref="ERP-7",
        amount="20",
        currency="USD",
        reason="broken",
        returned_at=AT,
    )
    interaction = to_interaction(event, "c-1")
    assert (interaction.type, interaction.external_id, interaction.amount, interaction.currency) == (
        "return",
        "erp-return:R-9",
        Decimal("20"),
        "USD",
    )
    assert interaction.text == "broken"


@pytest.mark.parametrize(
    ("event", "severity"),
    [
        (ScmShipmentLost(shipment_id="S-1", customer_ref="E", reported_at=AT), "high"),
        (ScmShipmentDamaged(shipment_id="S-1", customer_ref="E", reported_at=AT), "medium"),
        (ScmShipmentDelayed(shipment_id="S-1", customer_ref="E", reported_at=AT), "low"),
        (ScmShipmentDelayed(shipment_id="S-1", customer_ref="E", reported_at=AT, delay_days=4), "low"),
        (ScmShipmentDelayed(shipment_id="S-1", customer_ref="E", reported_at=AT, delay_days=5), "medium"),
    ],
)
def test_a_shipment_problem_is_a_delivery_complaint_with_severity_by_kind_and_delay(event, severity):
    assert shipment_severity(event) == severity
    interaction = to_interaction(event, "c-1")
    assert (interaction.type, interaction.category, interaction.severity) == ("complaint", "delivery", severity)
    assert (interaction.initiated_by, interaction.channel) == ("company", "scm")
    assert interaction.text is not None and "S-1" in interaction.text


def test_each_kind_of_shipment_problem_has_its_own_external_id():
    kinds = [
        ScmShipmentDelayed(shipment_id="S-1", customer_ref="E", reported_at=AT),
        ScmShipmentLost(shipment_id="S-1", customer_ref="E", reported_at=AT),
        ScmShipmentDamaged(shipment_id="S-1", customer_ref="E", reported_at=AT),
    ]
    assert [external_id_of(e) for e in kinds] == [
        "scm-shipment:S-1:delayed",
        "scm-shipment:S-1:lost",
        "scm-shipment:S-1:damaged",
    ]


def test_an_event_that_lies_in_the_future_cannot_become_an_interaction():
    with pytest.raises(pydantic.ValidationError, match="occurred_at"):
        to_interaction(placed(placed_at=datetime.now(UTC) + timedelta(days=1)), "c-1")


@pytest.mark.parametrize(
    "fields",
    [{"amount": "-1"}, {"currency": "euro"}, {"quantity": 0}, {"customer_ref": ""}, {"order_id": None}],
)
def test_the_contract_refuses_bad_values(fields):
    with pytest.raises(pydantic.ValidationError):
        placed(**fields)


def test_the_envelope_subject_and_key_is_the_erp_customer_reference():
    envelope = CloudEvent.wrap(placed(), source="/erp")
    assert (envelope.subject, envelope.type) == ("ERP-7", "erp.order.placed")
