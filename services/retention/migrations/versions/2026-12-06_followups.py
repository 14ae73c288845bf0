"""follow-ups: schedules per tier and each customer's next scheduled follow-up

Revision ID: 4c7e2a9d5f61
Revises: 6a3d8e1f4b27
Create Date: 2026-12-06 22:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import servicekit.types

revision: str = "4c7e2a9d5f61"
down_revision: str | None = "6a3d8e1f4b27"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_S = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "followup_schedules",
        sa.Column("tier", _S(length=20), nullable=False),
        sa.Column("every_days", sa.Float(), nullable=False),
        sa.Column("action", _S(length=40), nullable=False),
        sa.Column("due_in_hours", sa.Float(), nullable=False),
        sa.Column("updated_at", servicekit.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tier"),
    )
    op.create_table(
        "followup_due",
        sa.Column("customer_id", _S(length=100), nullable=False),
        sa.Column("tier", _S(length=20), nullable=False),
        sa.Column("next_due_at", servicekit.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("last_result", _S(length=30), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id"),
    )
    op.create_index("ix_followup_due_next", "followup_due", ["next_due_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_followup_due_next", table_name="followup_due")
    op.drop_table("followup_due")
    op.drop_table("followup_schedules")
