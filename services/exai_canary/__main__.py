"""`python -m exai_canary`: check the gateway until SIGTERM; health on EXAI_CANARY_PORT (8098)."""

from __future__ import annotations

from exai_canary import __version__
from exai_canary.app import SERVICE_NAME, create_app
from exai_canary.settings import CanarySettings
from exai_telemetry.http_service import run_service


def main() -> None:
    run_service(
        SERVICE_NAME, __version__, CanarySettings, create_app, lambda settings: settings.port
    )


if __name__ == "__main__":
    main()
