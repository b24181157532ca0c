"""`python -m provider_proxy`: serve on `EXAI_PROVIDER_PROXY_PORT` (8090) until SIGTERM."""

from __future__ import annotations

from exai_telemetry.http_service import serve
from exai_telemetry.settings import load_settings
from exai_telemetry.setup import setup_telemetry
from provider_proxy import __version__
from provider_proxy.app import create_app
from provider_proxy.settings import ProxySettings

SERVICE_NAME = "provider-proxy"


def main() -> None:
    settings = load_settings(ProxySettings)
    telemetry = setup_telemetry(SERVICE_NAME, __version__, settings)
    try:
        serve(create_app(settings, telemetry), settings, settings.port)
    finally:
        # After uvicorn has drained in-flight requests: flush what they recorded.
        telemetry.shutdown()


if __name__ == "__main__":
    main()
