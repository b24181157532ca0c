"""`python -m llm_simulator`: serve on `EXAI_LLM_SIMULATOR_PORT` (8099) until SIGTERM."""

from __future__ import annotations

from exai_telemetry.http_service import run_service
from llm_simulator import __version__
from llm_simulator.app import create_app
from llm_simulator.settings import SimulatorSettings


def main() -> None:
    run_service(
        "llm-simulator", __version__, SimulatorSettings, create_app, lambda settings: settings.port
    )


if __name__ == "__main__":
    main()
