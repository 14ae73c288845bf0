"""an order's campaign offer code (the ERP order carries it when the order redeems an offer)

Revision ID: 3a6c9e2b7d14
Revises: 9b4458b200e8
Create Date: 2026-12-07 01:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "3a6c9e2b7d14"
down_revision: str | None = "9b4458b200e8"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("interactions", sa.Column("offer_code", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("interactions") as batch_op:
        batch_op.drop_column("offer_code")
