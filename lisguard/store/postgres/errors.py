"""PostgreSQL errors as the store's errors: what means "cannot serve now" (StoreUnavailable),
what means "this content cannot be stored" (StoreDataError), and DSNs fit to print."""

from __future__ import annotations

from urllib.parse import urlsplit

import asyncpg

from lisguard.store.records import StoreDataError, StoreError, StoreUnavailable

# Server errors that mean "the database cannot serve us now" rather than "this request is bad".
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable, DNS
    TimeoutError,
    asyncpg.PostgresConnectionError,  # class 08
    asyncpg.InterfaceError,  # connection closed / released underneath us
    asyncpg.InternalClientError,  # protocol state broken, e.g. by a backend killed mid-session
    asyncpg.exceptions.OperatorInterventionError,  # class 57: shutdown, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # class 53: disk full, out of memory, slots
    asyncpg.exceptions.PostgresSystemError,  # class 58: I/O error
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # standby / default_transaction_read_only
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,  # class 28: auth failed
    asyncpg.exceptions.InvalidCatalogNameError,  # database does not exist
)


# What the database layer raises; anything else is a bug and propagates as it is.
# the content, not the server: class 22 (a NUL in text or \u0000 in jsonb is 22P05 or 22021,
# a too long value 22001) and text Python cannot encode (a lone surrogate)
_BAD_DATA: tuple[type[BaseException], ...] = (asyncpg.exceptions.DataError, UnicodeEncodeError)

LIBRARY_ERRORS: tuple[type[Exception], ...] = (
    UnicodeEncodeError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)


def redact_dsn(dsn: str) -> str:
    """The DSN without password or query, for error messages and logs."""
    try:
        parts = urlsplit(dsn)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        user = f"{parts.username}@" if parts.username else ""
        return f"{parts.scheme}://{user}{host}{port}{parts.path}"
    except ValueError:
        return "postgresql://(unparseable DSN)"


def translate(
    exc: BaseException, doing: str, where: str, *, connection_lost: bool = False
) -> StoreError:
    """An asyncpg/OS exception as the store error the service understands."""
    if isinstance(exc, StoreError):
        return exc
    # the server's primary message only: its DETAIL may quote the values (message content)
    primary = exc.message if isinstance(exc, asyncpg.PostgresError) else str(exc)
    detail = primary or type(exc).__name__
    if isinstance(exc, UnicodeEncodeError):  # its text quotes the characters themselves
        detail = f"text not encodable as UTF-8 ({exc.reason})"
    if connection_lost:
        detail = f"connection lost ({detail})"
    if connection_lost or isinstance(exc, _UNAVAILABLE):
        return StoreUnavailable(f"PostgreSQL {where}: {doing}: {detail}")
    if isinstance(exc, _BAD_DATA):
        return StoreDataError(f"PostgreSQL {where}: {doing}: {detail}")
    return StoreError(f"PostgreSQL {where}: {doing}: {detail}")
