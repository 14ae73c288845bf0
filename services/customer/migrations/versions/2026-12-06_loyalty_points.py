"""loyalty points ledger and accounts

Revision ID: 7a3c9e2f1d64
Revises: 5e2f7a91c4d8
Create Date: 2026-12-06 19:45:00.000000

points_entries is the ledger (unique by source and source reference); points_accounts holds the running
balance, lifetime points and member tier (docs/loyalty-points.md).
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import servicekit.types


revision: str = "7a3c9e2f1d64"
down_revision: str | None = "5e2f7a91c4d8"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "points_accounts",
        sa.Column("customer_id", sa.String(length=36), nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        sa.Column("lifetime_points", sa.BigInteger(), nullable=False),
        sa.Column("tier", sqlmodel.sql.sqltypes.AutoString(length=30), nullable=True),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.Column("updated_at", servicekit.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"]),
        sa.PrimaryKeyConstraint("customer_id"),
    )
    op.create_table(
        "points_entries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("customer_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("source_ref", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("occurred_at", servicekit.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", servicekit.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source", "source_ref", name="uq_points_entries_source_ref"),
    )
    with op.batch_alter_table("points_entries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_points_entries_customer_id"), ["customer_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("points_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_points_entries_customer_id"))
    op.drop_table("points_entries")
    op.drop_table("points_accounts")
