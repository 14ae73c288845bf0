"""retention read model: fact_events, customer_facts, churn_facts

The retention reports (docs/reports.md, "Retention") read per-customer facts fed by the consumed
topics: orders, returns, incidents, complaints, surveys, owner changes and price or competitor contacts
(fact_events, keyed by event id), per-customer counters and latest NPS/CSAT (customer_facts), and one
row per churn with its value lost and suggested reason (churn_facts). New tables only; they fill from
events consumed from now on.

Revision ID: 5c2e7a1f9d43
Revises: c4a8e1f7b2d3
Create Date: 2026-12-06 18:21:52.287410
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = "5c2e7a1f9d43"
down_revision: str | None = "c4a8e1f7b2d3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "churn_facts",
        sa.Column("event_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("customer_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("churned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("side", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
        sa.Column("voluntary", sa.Boolean(), nullable=True),
        sa.Column("tier", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
        sa.Column("segment", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("owner", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("team", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("historical_value", sa.Float(), nullable=True),
        sa.Column("predicted_value", sa.Float(), nullable=True),
        sa.Column("suggested_reason", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("suggestion_confidence", sa.Float(), nullable=True),
        sa.Column("suggestion_votes", sa.JSON(), nullable=False),
        sa.Column("suggestion_evidence", sa.JSON(), nullable=False),
        sa.Column("suggested_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("event_id"),
    )
    with op.batch_alter_table("churn_facts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_churn_facts_churned_at"), ["churned_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_churn_facts_customer_id"), ["customer_id"], unique=False)

    op.create_table(
        "customer_facts",
        sa.Column("customer_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("team", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("share_of_wallet", sa.Float(), nullable=True),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.Column("revenue", sa.Float(), nullable=False),
        sa.Column("first_order_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_order_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("nps", sa.Integer(), nullable=True),
        sa.Column("nps_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("csat", sa.Integer(), nullable=True),
        sa.Column("csat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("customer_id"),
    )
    with op.batch_alter_table("customer_facts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_customer_facts_team"), ["team"], unique=False)

    op.create_table(
        "fact_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("event_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("customer_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=30), nullable=False),
        sa.Column("category", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("dimension", sqlmodel.sql.sqltypes.AutoString(length=30), nullable=True),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("amount", sa.Float(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id"),
    )
    with op.batch_alter_table("fact_events", schema=None) as batch_op:
        batch_op.create_index("ix_fact_events_customer_kind_at", ["customer_id", "kind", "at"], unique=False)
        batch_op.create_index(
            "ix_fact_events_kind_at", ["kind", "at", "customer_id", "category", "score", "dimension"], unique=False
        )
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.create_index("ix_alerts_first_triggered_at", ["first_triggered_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index("ix_alerts_first_triggered_at")
    with op.batch_alter_table("fact_events", schema=None) as batch_op:
        batch_op.drop_index("ix_fact_events_kind_at")
        batch_op.drop_index("ix_fact_events_customer_kind_at")

    op.drop_table("fact_events")
    with op.batch_alter_table("customer_facts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_customer_facts_team"))

    op.drop_table("customer_facts")
    with op.batch_alter_table("churn_facts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_churn_facts_customer_id"))
        batch_op.drop_index(batch_op.f("ix_churn_facts_churned_at"))

    op.drop_table("churn_facts")
