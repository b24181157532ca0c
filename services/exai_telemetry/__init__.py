"""Shared telemetry and service plumbing for every EXAI service.

One entry point, :func:`setup_telemetry`, builds the tracer, meter and log wiring
described in DESIGN.md §6. The other modules hold what every service shares:

- :mod:`exai_telemetry.correlation` — the correlation ID in baggage, headers and spans
- :mod:`exai_telemetry.redaction` — secrets never leave the process
- :mod:`exai_telemetry.logs` — JSON log lines in UTC with trace/span/correlation IDs
- :mod:`exai_telemetry.settings` — the settings every service shares, fail-fast loading
- :mod:`exai_telemetry.health` — the `/health` document
"""

from exai_telemetry.correlation import (
    CORRELATION_BAGGAGE_KEY,
    CORRELATION_HEADER,
    CorrelationIdSpanProcessor,
    current_correlation_id,
    new_correlation_id,
    with_correlation_id,
)
from exai_telemetry.setup import Telemetry, setup_telemetry

__all__ = [
    "CORRELATION_BAGGAGE_KEY",
    "CORRELATION_HEADER",
    "CorrelationIdSpanProcessor",
    "Telemetry",
    "current_correlation_id",
    "new_correlation_id",
    "setup_telemetry",
    "with_correlation_id",
]
