"""`python -m provider_proxy`: serve on `EXAI_PROVIDER_PROXY_PORT` (8090) until SIGTERM."""

from __future__ import annotations

from exai_telemetry.http_service import run_service
from provider_proxy import __version__
from provider_proxy.app import create_app
from provider_proxy.settings import ProxySettings


def main() -> None:
    run_service(
        "provider-proxy", __version__, ProxySettings, create_app, lambda settings: settings.port
    )


if __name__ == "__main__":
    main()
