"""wait wakes: enrolments parked at a wait that ends early, and the events that end it

Revision ID: 2b9f5e7a3c18
Revises: 8d41c6b2e7f3
Create Date: 2026-12-06 22:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "2b9f5e7a3c18"
down_revision: str | None = "8d41c6b2e7f3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "enrolment_wakes",
        sa.Column("enrolment_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("customer_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("events", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.PrimaryKeyConstraint("enrolment_id"),
    )
    op.create_index("ix_enrolment_wakes_customer_id", "enrolment_wakes", ["customer_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_enrolment_wakes_customer_id", table_name="enrolment_wakes")
    op.drop_table("enrolment_wakes")
