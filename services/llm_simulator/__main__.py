"""`python -m llm_simulator`: serve on `EXAI_LLM_SIMULATOR_PORT` (8099) until SIGTERM."""

from __future__ import annotations

from exai_telemetry.http_service import serve
from exai_telemetry.settings import load_settings
from exai_telemetry.setup import setup_telemetry
from llm_simulator import __version__
from llm_simulator.app import create_app
from llm_simulator.settings import SimulatorSettings

SERVICE_NAME = "llm-simulator"


def main() -> None:
    settings = load_settings(SimulatorSettings)
    telemetry = setup_telemetry(SERVICE_NAME, __version__, settings)
    try:
        serve(create_app(settings, telemetry), settings, settings.port)
    finally:
        # After uvicorn has drained in-flight requests: flush what they recorded.
        telemetry.shutdown()


if __name__ == "__main__":
    main()
