"""replica profile_known: whether a row's segment, team and tiers have been read

Rows from before (all rows at this revision: those from before 8d4f2a6c1e95 hold no profile) are filled
once from the customer service by the consume role (replica/backfill.py), with their owner where unread.

Revision ID: 6b3e9f1a7c24
Revises: 8d4f2a6c1e95
Create Date: 2026-12-07 13:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "6b3e9f1a7c24"
down_revision: str | None = "8d4f2a6c1e95"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("known_customers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("profile_known", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("known_customers", schema=None) as batch_op:
        batch_op.drop_column("profile_known")
