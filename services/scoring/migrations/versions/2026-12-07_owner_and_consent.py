"""owner and consent on customer_features: the value reports' owner filter, the segment builder's owner and
consent fields

Revision ID: 9b2e4f7c1a63
Revises: 3f8b6d2a7c41
Create Date: 2026-12-07 10:00:00.000000

Rows written before this revision gain the owner at the customer's next customer.created/updated event and
the consent at its next consent.changed event (scoring cannot read the customer service's tables); until
then they match no owner and no consent condition.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9b2e4f7c1a63"
down_revision: str | None = "3f8b6d2a7c41"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("customer_features", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("consent", sa.JSON(), nullable=False, server_default="{}"))
        batch_op.add_column(sa.Column("consent_version", sa.Integer(), nullable=False, server_default="0"))
        batch_op.create_index("ix_customer_features_owner", ["owner"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("customer_features", schema=None) as batch_op:
        batch_op.drop_index("ix_customer_features_owner")
        batch_op.drop_column("consent_version")
        batch_op.drop_column("consent")
        batch_op.drop_column("owner")
