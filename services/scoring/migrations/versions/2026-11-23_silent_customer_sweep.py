"""silent-customer sweep: when each customer was last looked at

Revision ID: 5c1d7a2e9f30
Revises: e1893280b299
Create Date: 2026-11-23 12:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import servicekit.types

revision: str = "5c1d7a2e9f30"
down_revision: str | None = "e1893280b299"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("customer_features", schema=None) as batch_op:
        batch_op.add_column(sa.Column("swept_at", servicekit.types.UtcDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("customer_features", schema=None) as batch_op:
        batch_op.drop_column("swept_at")
