"""report read models: each customer's purchase months (cohorts) and loyalty as of today (daily sweep)

Revision ID: 7d2f9c4e1a86
Revises: 4c7e2a9d5f61
Create Date: 2026-12-07 01:00:00.000000

customer_facts.first_order_month and order_months (bit k: an order k months after the month of the first
order) are filled from the orders already recorded (fact_events); customer_loyalty stays empty until the first daily sweep.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import servicekit.types

revision: str = "7d2f9c4e1a86"
down_revision: str | None = "4c7e2a9d5f61"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_S = sqlmodel.sql.sqltypes.AutoString


def _month(column: str, dialect: str) -> str:
    """The month (UTC) of a timestamp column as year x 12 + month - 1, as reports/order_months.py."""
    if dialect == "postgresql":
        utc = f"timezone('UTC', {column})"
        return f"CAST(EXTRACT(YEAR FROM {utc}) * 12 + EXTRACT(MONTH FROM {utc}) - 1 AS INTEGER)"
    return f"(CAST(strftime('%Y', {column}) AS INTEGER) * 12 + CAST(strftime('%m', {column}) AS INTEGER) - 1)"


def upgrade() -> None:
    op.add_column("customer_facts", sa.Column("first_order_month", sa.Integer(), nullable=True))
    op.add_column("customer_facts", sa.Column("order_months", sa.BigInteger(), nullable=False, server_default="0"))
    op.create_table(
        "customer_loyalty",
        sa.Column("customer_id", _S(length=100), nullable=False),
        sa.Column("type", _S(length=20), nullable=False),
        sa.Column("trap", sa.Boolean(), nullable=False),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.Column("buyer", sa.Boolean(), nullable=False),
        sa.Column("repeater", sa.Boolean(), nullable=False),
        sa.Column("recent_orders", sa.Integer(), nullable=False),
        sa.Column("prior_orders", sa.Integer(), nullable=False),
        sa.Column("nps", sa.Integer(), nullable=True),
        sa.Column("csat", sa.Integer(), nullable=True),
        sa.Column("as_of", servicekit.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("customer_id"),
    )
    op.create_index("ix_customer_loyalty_trap", "customer_loyalty", ["trap", "customer_id"], unique=False)
    op.create_table(
        "loyalty_sweeps",
        sa.Column("as_of", servicekit.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("customers", sa.Integer(), nullable=False),
        sa.Column("window_days", sa.Integer(), nullable=False),
        sa.Column("finished_at", servicekit.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("as_of"),
    )
    dialect = op.get_bind().dialect.name
    offset = f"({_month('e.at', dialect)} - {_month('customer_facts.first_order_at', dialect)})"
    op.execute(
        f"UPDATE customer_facts SET first_order_month = {_month('first_order_at', dialect)}, order_months = COALESCE(("
        f"SELECT sum(DISTINCT CAST(1 AS BIGINT) << {offset}) FROM fact_events e "
        f"WHERE e.customer_id = customer_facts.customer_id AND e.kind = 'order' AND {offset} BETWEEN 0 AND 62"
        "), 0) WHERE first_order_at IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_table("loyalty_sweeps")
    op.drop_index("ix_customer_loyalty_trap", table_name="customer_loyalty")
    op.drop_table("customer_loyalty")
    op.drop_column("customer_facts", "order_months")
    op.drop_column("customer_facts", "first_order_month")
