"""Topic names. Per owning service and versioned; the key is always the customer id."""

CUSTOMER = "crm.customer.v1"
INTERACTION = "crm.interaction.v1"
SCORING = "crm.scoring.v1"
RETENTION = "crm.retention.v1"
ERASURE = "crm.erasure.v1"
ERP_ORDERS = "erp.orders.v1"
ERP_RETURNS = "erp.returns.v1"
SCM_SHIPMENTS = "scm.shipments.v1"
ERP_CONSENTS = "erp.consents.v1"  # ERP and marketing systems: consent changes (the customer service consumes)
ERP_LOYALTY = "erp.loyalty.v1"  # ERP: loyalty points earned, redeemed, expired (the customer service consumes)

ALL = (
    CUSTOMER,
    INTERACTION,
    SCORING,
    RETENTION,
    ERASURE,
    ERP_ORDERS,
    ERP_RETURNS,
    SCM_SHIPMENTS,
    ERP_CONSENTS,
    ERP_LOYALTY,
)


def dead_letter(topic: str) -> str:
    return f"{topic}.dlq"
