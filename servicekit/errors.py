"""Which failures are passing (retry, answer 503) rather than bugs or bad input."""

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout


def is_transient(exc: BaseException) -> bool:
    """True when the database (or the network to it) is unavailable, not when the request or code is wrong."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    # PoolTimeout: every pooled connection stayed busy for pool_timeout; overload, not a bug (503, retry).
    return isinstance(exc, OperationalError | InterfaceError | PoolTimeout | ConnectionError | OSError | TimeoutError)
