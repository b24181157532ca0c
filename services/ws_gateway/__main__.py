"""`python -m ws_gateway`: settings from the environment, telemetry, serve until SIGTERM."""

from __future__ import annotations

import asyncio

from exai_telemetry.settings import load_settings
from exai_telemetry.setup import setup_telemetry
from ws_gateway import __version__
from ws_gateway.server import SERVICE_NAME, serve_gateway
from ws_gateway.settings import GatewaySettings


def main() -> None:
    settings = load_settings(GatewaySettings)
    telemetry = setup_telemetry(SERVICE_NAME, __version__, settings)
    asyncio.run(serve_gateway(settings, telemetry))


if __name__ == "__main__":
    main()
