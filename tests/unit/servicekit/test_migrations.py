"""Each service's migrations, run on a fresh SQLite file, against the tables its code uses."""

import importlib
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from servicekit.migrations import alembic_config, upgrade, version_table

ROOT = Path(__file__).resolve().parents[3]
# (name, migrations folder, module holding the metadata its env.py migrates)
SERVICES = [
    ("customer", ROOT / "services/customer/migrations", "services.customer.main"),
    ("interaction", ROOT / "services/interaction/migrations", "services.interaction.models"),
    ("scoring", ROOT / "services/scoring/migrations", "services.scoring.main"),
    ("retention", ROOT / "services/retention/migrations", "services.retention.models"),
    ("gateway", ROOT / "gateway/migrations", "gateway.keys"),
]
SERVICE_IDS = [name for name, _, _ in SERVICES]


def _differences(path: Path, service: str, metadata: sa.MetaData) -> list[object]:
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "version_table": version_table(service)}
            )
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def _tables(path: Path) -> set[str]:
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            return set(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()


@pytest.mark.parametrize(("service", "migrations", "module"), SERVICES, ids=SERVICE_IDS)
def test_migrating_to_head_creates_exactly_the_schema_the_code_describes(
    tmp_path: Path, service: str, migrations: Path, module: str
) -> None:
    path = tmp_path / f"{service}.db"
    upgrade(migrations, f"sqlite+aiosqlite:///{path}", service)
    assert _differences(path, service, importlib.import_module(module).metadata) == []


@pytest.mark.parametrize(("service", "migrations", "module"), SERVICES[:4], ids=SERVICE_IDS[:4])
def test_every_service_database_gets_the_outbox_and_inbox_and_downgrade_removes_them(
    tmp_path: Path, service: str, migrations: Path, module: str
) -> None:
    path = tmp_path / f"{service}.db"
    url = f"sqlite+aiosqlite:///{path}"
    upgrade(migrations, url, service)
    assert {"outbox", "inbox"} <= _tables(path)
    command.downgrade(alembic_config(migrations, url, service), "base")
    assert _tables(path) == {version_table(service)}
    upgrade(migrations, url, service)  # and back up again on the emptied database
    assert _differences(path, service, importlib.import_module(module).metadata) == []
