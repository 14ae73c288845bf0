"""survey links: one-time links of surveys sent as touches (the token is signed, never stored)

Revision ID: c4a8e1f7b2d3
Revises: 9b3e6f2a1d74
Create Date: 2026-12-06 18:35:35.257454
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import servicekit.types


revision: str = "c4a8e1f7b2d3"
down_revision: str | None = "9b3e6f2a1d74"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "survey_links",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("customer_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("alert_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
        sa.Column("task_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
        sa.Column("survey", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("expires_at", servicekit.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("answered_at", servicekit.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("dimensions", sa.JSON(), nullable=False),
        sa.Column("created_at", servicekit.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("survey_links", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_survey_links_customer_id"), ["customer_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("survey_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_survey_links_customer_id"))

    op.drop_table("survey_links")
