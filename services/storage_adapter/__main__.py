"""`python -m storage_adapter`: serve on EXAI_STORAGE_ADAPTER_PORT (8091)."""

from __future__ import annotations

from exai_telemetry.http_service import serve
from exai_telemetry.settings import load_settings
from exai_telemetry.setup import setup_telemetry
from storage_adapter import __version__
from storage_adapter.app import SERVICE_NAME, create_app
from storage_adapter.settings import StorageSettings


def main() -> None:
    settings = load_settings(StorageSettings)
    telemetry = setup_telemetry(SERVICE_NAME, __version__, settings)
    try:
        serve(create_app(settings, telemetry), settings, settings.port)
    finally:
        telemetry.shutdown()


if __name__ == "__main__":
    main()
