"""score signals: churn risk and lifecycle stage as columns; indexes that fit the history read

The risk-jump and lifecycle-decline rules read a customer's recent scores for every score they judge;
taken from the stored JSON document, every row was parsed again on every read. And with an index on
`at` (a btree), PostgreSQL's generic plan of that read range-scanned it across every customer's
signals; `at` gets a BRIN index instead (see Signal in models.py).

Revision ID: 7a4c2e91b3d5
Revises: e0bb9542f4df
Create Date: 2026-11-23 18:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7a4c2e91b3d5"
down_revision: str | None = "e0bb9542f4df"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("signals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("churn_risk", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("lifecycle_stage", sa.String(length=40), nullable=True))
        batch_op.drop_index("ix_signals_customer_at")
        batch_op.drop_index("ix_signals_at")
        batch_op.create_index("ix_signals_customer_type_at", ["customer_id", "event_type", "at"], unique=False)
        batch_op.create_index("ix_signals_at", ["at"], unique=False, postgresql_using="brin")
    signals = sa.table(
        "signals",
        sa.column("event_type", sa.String()),
        sa.column("data", sa.JSON()),
        sa.column("churn_risk", sa.Float()),
        sa.column("lifecycle_stage", sa.String()),
    )
    current = signals.c.data["current"]
    op.execute(
        signals.update()
        .where(signals.c.event_type == "score.updated")
        .values(churn_risk=current["churn_risk"].as_float(), lifecycle_stage=current["lifecycle_stage"].as_string())
    )


def downgrade() -> None:
    with op.batch_alter_table("signals", schema=None) as batch_op:
        batch_op.drop_index("ix_signals_at")
        batch_op.drop_index("ix_signals_customer_type_at")
        batch_op.create_index("ix_signals_at", ["at"], unique=False)
        batch_op.create_index("ix_signals_customer_at", ["customer_id", "at"], unique=False)
        batch_op.drop_column("lifecycle_stage")
        batch_op.drop_column("churn_risk")
