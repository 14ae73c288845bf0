"""The e2e fixtures live in tests/platform.py (registered for the whole suite by tests/conftest.py), so
tests/e2e and tests/security share one running platform; the names below are re-exported for imports."""

from tests.platform import GATEWAY, KAFKA, PG_PORT, database_url, log_dir, new_database, service_url, token

__all__ = ["GATEWAY", "KAFKA", "PG_PORT", "database_url", "log_dir", "new_database", "service_url", "token"]
