"""idempotency keys expire: an index on created_at for the hourly purge

Revision ID: 3b8e5d1c9f27
Revises: 630711ab7c62
Create Date: 2026-11-30 17:20:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "3b8e5d1c9f27"
down_revision: str | None = "630711ab7c62"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_idempotency_keys_created_at"), ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_idempotency_keys_created_at"))
