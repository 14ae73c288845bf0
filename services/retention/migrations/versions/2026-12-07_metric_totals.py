"""retention metrics' read model: each customer's contribution rows and their monthly totals, backfilled

Revision ID: 3b8e5d1f7a29
Revises: 2f6d8a1c4e97
Create Date: 2026-12-07 10:20:00.000000

The rows and totals are built from the facts already stored (replicas, scores, status changes, alerts)
with the default look-back of 180 days (RetentionSettings.warning_lookback_days); a service set to
another look-back answers /retention/metrics from the facts until the totals are rebuilt with it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import servicekit.types
from services.retention.outcomes import read_model

revision: str = "3b8e5d1f7a29"
down_revision: str | None = "2f6d8a1c4e97"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_S = sqlmodel.sql.sqltypes.AutoString
_AT = servicekit.types.UtcDateTime


def upgrade() -> None:
    op.create_table(
        "metric_facts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("customer_id", _S(length=100), nullable=False),
        sa.Column("measure", _S(length=20), nullable=False),
        sa.Column("rule", _S(length=64), nullable=True),
        sa.Column("tier", _S(length=20), nullable=False),
        sa.Column("segment", _S(length=100), nullable=False),
        sa.Column("lo", _AT(timezone=True), nullable=False),
        sa.Column("t", _AT(timezone=True), nullable=False),
        sa.Column("u", _AT(timezone=True), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_metric_facts_customer_id", "metric_facts", ["customer_id"], unique=False)
    op.create_index("ix_metric_facts_lo", "metric_facts", ["lo"], unique=False)
    op.create_index("ix_metric_facts_t", "metric_facts", ["t"], unique=False)
    op.create_index("ix_metric_facts_u", "metric_facts", ["u"], unique=False)
    op.create_index("ix_metric_facts_measure_t", "metric_facts", ["measure", "t"], unique=False)
    op.create_table(
        "metric_totals",
        sa.Column("kind", _S(length=10), nullable=False),
        sa.Column("key", _S(length=100), nullable=False),
        sa.Column("measure", _S(length=20), nullable=False),
        sa.Column("lo_month", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("t_month", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("u_month", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "key", "measure", "lo_month", "t_month", "u_month"),
    )
    op.create_table(
        "metric_totals_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("lookback_seconds", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    read_model.rebuild(op.get_bind())


def downgrade() -> None:
    op.drop_table("metric_totals_state")
    op.drop_table("metric_totals")
    op.drop_index("ix_metric_facts_measure_t", table_name="metric_facts")
    op.drop_index("ix_metric_facts_u", table_name="metric_facts")
    op.drop_index("ix_metric_facts_t", table_name="metric_facts")
    op.drop_index("ix_metric_facts_lo", table_name="metric_facts")
    op.drop_index("ix_metric_facts_customer_id", table_name="metric_facts")
    op.drop_table("metric_facts")
