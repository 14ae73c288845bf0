"""replica profile: each known customer's segment, team and value tier (the complaint reports' filters)

Segment, team and the account-managed tier come from customer.created/updated, the scored tier from
score.updated; rows from before fill as their customers' next events arrive.

Revision ID: 8d4f2a6c1e95
Revises: 5e7a3c1b9d28
Create Date: 2026-12-07 10:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import servicekit.types

revision: str = "8d4f2a6c1e95"
down_revision: str | None = "5e7a3c1b9d28"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("known_customers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("segment", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True))
        batch_op.add_column(sa.Column("team", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True))
        batch_op.add_column(sa.Column("managed_tier", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("scored_tier", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("scored_tier_at", servicekit.types.UtcDateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_known_customers_segment"), ["segment"], unique=False)
        batch_op.create_index(batch_op.f("ix_known_customers_team"), ["team"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("known_customers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_known_customers_team"))
        batch_op.drop_index(batch_op.f("ix_known_customers_segment"))
        batch_op.drop_column("scored_tier_at")
        batch_op.drop_column("scored_tier")
        batch_op.drop_column("managed_tier")
        batch_op.drop_column("team")
        batch_op.drop_column("segment")
