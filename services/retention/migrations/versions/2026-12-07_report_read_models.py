"""report read models: each customer's purchase months (cohorts) and loyalty as of today (daily sweep)

Revision ID: 7d2f9c4e1a86
Revises: 4c7e2a9d5f61
Create Date: 2026-12-07 01:00:00.000000

customer_order_months is filled from the orders already recorded (fact_events); customer_loyalty stays
empty until the first daily sweep.
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

# The month of an order (UTC) as year x 12 + month - 1, as services/retention/reports/order_months.py.
_MONTH = {
    "postgresql": "CAST(EXTRACT(YEAR FROM timezone('UTC', at)) * 12 + EXTRACT(MONTH FROM timezone('UTC', at)) - 1"
    " AS INTEGER)",
    "sqlite": "CAST(strftime('%Y', at) AS INTEGER) * 12 + CAST(strftime('%m', at) AS INTEGER) - 1",
}


def upgrade() -> None:
    op.create_table(
        "customer_order_months",
        sa.Column("customer_id", _S(length=100), nullable=False),
        sa.Column("month", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", "month"),
    )
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
    bind = op.get_bind()
    month = _MONTH.get(bind.dialect.name, _MONTH["sqlite"])
    op.execute(
        "INSERT INTO customer_order_months (customer_id, month) "
        f"SELECT DISTINCT customer_id, {month} FROM fact_events WHERE kind = 'order'"
    )


def downgrade() -> None:
    op.drop_table("loyalty_sweeps")
    op.drop_index("ix_customer_loyalty_trap", table_name="customer_loyalty")
    op.drop_table("customer_loyalty")
    op.drop_table("customer_order_months")
