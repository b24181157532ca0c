"""Driver errors become StoreUnavailable (or, about the data, InvalidData) with type
names and codes only (never SQL parameters)."""

from __future__ import annotations

import sqlite3

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError

from storage_adapter.store.sql import data_error, describe_error


def test_dbapi_errors_are_described_by_type_only() -> None:
    class UniqueViolation(Exception):
        pass

    exc = IntegrityError("INSERT INTO messages ...", {"content": "private"}, UniqueViolation())
    assert describe_error(exc) == "IntegrityError/UniqueViolation"
    refused = OperationalError("SELECT 1", None, ConnectionRefusedError(111, "refused"))
    assert "private" not in describe_error(refused)


def test_socket_errors_keep_their_text() -> None:
    described = describe_error(ConnectionRefusedError(111, "Connect call failed ('h', 5432)"))
    assert described.startswith("ConnectionRefusedError") and "5432" in described
    assert describe_error(TimeoutError()) == "TimeoutError"


class _PgError(Exception):
    """What SQLAlchemy's asyncpg adapter raises: the SQLSTATE on the error."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__("invalid byte sequence")
        self.sqlstate = sqlstate


def test_data_errors_are_told_apart_from_outages() -> None:
    for code in ("22021", "22P02", "22P05", "22000", "23505", "23514"):
        refused = DBAPIError("INSERT ...", {"content": "private"}, _PgError(code))
        assert data_error(refused) == f"SQLSTATE {code}"
    for code in ("08006", "57P01", "53300", "40001", "42P01"):
        assert data_error(DBAPIError("SELECT 1", None, _PgError(code))) is None
    # SQLite has no SQLSTATE: its exception classes say it.
    assert data_error(IntegrityError("INSERT", None, sqlite3.IntegrityError("x"))) is not None
    assert data_error(DataError("INSERT", None, sqlite3.DataError("x"))) is not None
    assert data_error(OperationalError("SELECT 1", None, sqlite3.OperationalError("x"))) is None
    encoding = UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")
    assert data_error(encoding) is not None and "\ud800" not in str(data_error(encoding))
    assert data_error(ConnectionRefusedError(111, "refused")) is None
