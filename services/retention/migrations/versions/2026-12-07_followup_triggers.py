"""follow-ups after events: per tier and trigger, and one pending follow-up per triggering event

Revision ID: 7d2f9a4c1e85
Revises: 7d2f9c4e1a86
Create Date: 2026-12-07 01:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import servicekit.types

revision: str = "7d2f9a4c1e85"
down_revision: str | None = "7d2f9c4e1a86"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_S = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "followup_triggers",
        sa.Column("tier", _S(length=20), nullable=False),
        sa.Column("trigger", _S(length=30), nullable=False),
        sa.Column("action", _S(length=40), nullable=False),
        sa.Column("delay_hours", sa.Float(), nullable=False),
        sa.Column("due_in_hours", sa.Float(), nullable=False),
        sa.Column("updated_at", servicekit.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tier", "trigger"),
    )
    op.create_table(
        "followup_pending",
        sa.Column("key", _S(length=200), nullable=False),
        sa.Column("customer_id", _S(length=100), nullable=False),
        sa.Column("trigger", _S(length=30), nullable=False),
        sa.Column("tier", _S(length=20), nullable=False),
        sa.Column("action", _S(length=40), nullable=False),
        sa.Column("due_in_hours", sa.Float(), nullable=False),
        sa.Column("due_at", servicekit.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("status", _S(length=20), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", servicekit.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("fired_at", servicekit.types.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_followup_pending_due", "followup_pending", ["status", "due_at"], unique=False)
    op.create_index("ix_followup_pending_customer", "followup_pending", ["customer_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_followup_pending_customer", table_name="followup_pending")
    op.drop_index("ix_followup_pending_due", table_name="followup_pending")
    op.drop_table("followup_pending")
    op.drop_table("followup_triggers")
