"""The gateway's per-process memory of path lookups answers exactly what scanning the tables answers."""

import pytest

from gateway.audit import AUDITED, _audited, audited
from gateway.canonical import NonCanonicalPath, _canonicalize, canonicalize
from gateway.routes import (
    MEMO_MAX_PATH,
    PERMISSIONS,
    PUBLIC,
    ROUTES,
    Permission,
    _permission_for,
    _resolve,
    is_public,
    permission_for,
    resolve,
)

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _paths() -> list[str]:
    """Every rule's pattern with ids filled in, plus paths no rule takes and one too long to remember."""
    patterns = {r.pattern for r in PERMISSIONS} | {r.pattern for r in PUBLIC} | {r.pattern for r in AUDITED}
    patterns |= {r.pattern for r in ROUTES}
    # Sorted: pytest-xdist's workers must collect the same tests in the same order.
    paths = sorted("/api/v1/" + "/".join("x-1" if s == "*" else s for s in p) for p in patterns)
    paths += ["/api/v1/nothing", "/api/v1/customers/c-1/", "/elsewhere", "/api/v1/" + "a" * (MEMO_MAX_PATH + 1)]
    return paths


@pytest.mark.parametrize("path", _paths())
def test_remembered_lookups_equal_a_scan_of_the_tables(path: str) -> None:
    for _ in range(2):  # the first call fills the memory, the second reads it
        assert resolve(path) == _resolve(path, ROUTES)
        for method in METHODS:
            scanned = _permission_for(method, path, PERMISSIONS)
            assert permission_for(method, path) is scanned
            assert is_public(method, path) == (_permission_for(method, path, PUBLIC) is not None)
            assert audited(method, path) == _audited(method, path)


def test_a_table_of_the_callers_own_is_scanned_not_remembered() -> None:
    own = (Permission(frozenset({"GET"}), ("interactions",), "own:read"),)
    assert permission_for("POST", "/api/v1/interactions") is not None  # remembered with the default table
    assert permission_for("POST", "/api/v1/interactions", own) is None
    assert permission_for("GET", "/api/v1/interactions", own) == own[0]


def test_a_refused_path_is_refused_every_time_and_a_long_one_is_canonical_too() -> None:
    for _ in range(2):
        with pytest.raises(NonCanonicalPath):
            canonicalize("/api/v1/%6beys")
    long = "/api/v1/customers/" + "a%20b" * 100
    assert canonicalize(long) == _canonicalize(long)
    assert canonicalize("/api/v1/customers/a%20b") is canonicalize("/api/v1/customers/a%20b")
    assert canonicalize("/api/v1/customers/a%20b").encoded == "/api/v1/customers/a%20b"
