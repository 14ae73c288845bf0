"""Suite-wide fixtures.

Unit tests call service apps directly, as the gateway would but without its signed internal credential,
so the check is switched off for them (per test, so nothing leaks into the processes e2e tests start).
tests/unit/gateway/test_internal_credential.py covers the check itself with explicit settings.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from servicekit.auth import current_settings

# The real-platform fixtures (one platform per session, shared by tests/e2e and tests/security).
pytest_plugins = ("tests.platform",)


@pytest.fixture(autouse=True)
def _internal_auth_off_in_unit_tests(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if "unit" in request.path.parts:
        monkeypatch.setenv("CRM_INTERNAL_AUTH", "off")
        current_settings.cache_clear()
    yield
    current_settings.cache_clear()
