"""consent replica and touches

Revision ID: 9b3e6f2a1d74
Revises: 3f1d8c6a9b20
Create Date: 2026-12-06 18:22:46.569949
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import servicekit.types


revision: str = "9b3e6f2a1d74"
down_revision: str | None = "3f1d8c6a9b20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "consent_replica",
        sa.Column("customer_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("channels", sa.JSON(), nullable=False),
        sa.Column("timezone", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("cap_max_touches", sa.Integer(), nullable=True),
        sa.Column("cap_window_days", sa.Float(), nullable=True),
        sa.Column("quiet_start", sqlmodel.sql.sqltypes.AutoString(length=5), nullable=True),
        sa.Column("quiet_end", sqlmodel.sql.sqltypes.AutoString(length=5), nullable=True),
        sa.Column("updated_at", servicekit.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("customer_id"),
    )
    op.create_table(
        "touches",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("customer_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("alert_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
        sa.Column("task_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("allowed", sa.Boolean(), nullable=False),
        sa.Column("verdict", sqlmodel.sql.sqltypes.AutoString(length=30), nullable=False),
        sa.Column("at", servicekit.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("created_at", servicekit.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("touches", schema=None) as batch_op:
        batch_op.create_index("ix_touches_created_verdict", ["created_at", "verdict"], unique=False)
        batch_op.create_index("ix_touches_customer_created", ["customer_id", "created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("touches", schema=None) as batch_op:
        batch_op.drop_index("ix_touches_customer_created")
        batch_op.drop_index("ix_touches_created_verdict")

    op.drop_table("touches")
    op.drop_table("consent_replica")
