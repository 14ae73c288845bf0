"""replica owner: the account manager of each known customer (the complaint desk across an agent's customers)

Rows from before are filled from the customer service by the consume role (replica/backfill.py).

Revision ID: 3f8b1d6e2c57
Revises: 7a2c5e9d1f43
Create Date: 2026-12-07 01:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "3f8b1d6e2c57"
down_revision: str | None = "7a2c5e9d1f43"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("known_customers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True))
        batch_op.add_column(sa.Column("owner_known", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.create_index(batch_op.f("ix_known_customers_owner"), ["owner"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("known_customers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_known_customers_owner"))
        batch_op.drop_column("owner_known")
        batch_op.drop_column("owner")
