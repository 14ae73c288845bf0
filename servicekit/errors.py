"""Which failures are passing (retry, answer 503) rather than bugs or bad input."""

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

# PostgreSQL's SQLSTATEs for a transaction chosen as a deadlock's victim or refused for a serialization
# conflict: nothing of it was committed, and the same transaction run again succeeds.
CONCURRENCY_CONFLICTS = frozenset({"40P01", "40001"})


def is_transient(exc: BaseException) -> bool:
    """True when the database (or the network to it) is unavailable, or the transaction lost a race that a
    retry wins; not when the request or code is wrong."""
    if isinstance(exc, DBAPIError) and (exc.connection_invalidated or _sqlstate(exc) in CONCURRENCY_CONFLICTS):
        return True
    # PoolTimeout: every pooled connection stayed busy for pool_timeout; overload, not a bug (503, retry).
    return isinstance(exc, OperationalError | InterfaceError | PoolTimeout | ConnectionError | OSError | TimeoutError)


def _sqlstate(exc: DBAPIError) -> str | None:
    """The SQLSTATE the driver reported (asyncpg's adapted errors carry it; SQLite has none)."""
    return getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
