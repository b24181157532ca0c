"""`python -m storage_adapter`: serve on EXAI_STORAGE_ADAPTER_PORT (8091)."""

from __future__ import annotations

from exai_telemetry.http_service import run_service
from storage_adapter import __version__
from storage_adapter.app import SERVICE_NAME, create_app
from storage_adapter.settings import StorageSettings


def main() -> None:
    run_service(
        SERVICE_NAME, __version__, StorageSettings, create_app, lambda settings: settings.port
    )


if __name__ == "__main__":
    main()
