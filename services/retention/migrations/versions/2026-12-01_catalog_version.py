"""catalog version: a token the rules, playbooks and webhooks tables' triggers renew on every change

Processes keep those three tables in memory and, per transaction, read only this token to know whether
their copy is current (services/retention/catalog.py). A trigger catches every change, also one made by
hand in SQL, which a bump in the API's code would not.

Revision ID: 3f1d8c6a9b20
Revises: 7a4c2e91b3d5
Create Date: 2026-12-01 22:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.retention.catalog.models import catalog_version_ddl, drop_catalog_version_ddl

revision: str = "3f1d8c6a9b20"
down_revision: str | None = "7a4c2e91b3d5"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "catalog_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    for statement in catalog_version_ddl(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    for statement in drop_catalog_version_ddl(op.get_bind().dialect.name):
        op.execute(statement)
    op.drop_table("catalog_version")
