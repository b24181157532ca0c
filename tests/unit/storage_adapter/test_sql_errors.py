"""Driver errors become StoreUnavailable with type names only (never SQL parameters)."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError, OperationalError

from storage_adapter.store.sql import describe_error


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
