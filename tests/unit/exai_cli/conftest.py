"""Recorded answers of Jaeger, Tempo and Loki, and a collector log file, written by hand
in the shapes those APIs document (see fixtures/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures"
# demo-1: a chat call whose first Kimi attempt was rate-limited, retried and answered.
JAEGER_TRACE_ID = "5b8efff798038103d269b633813fc60c"
# demo-2: a chat call refused by an open circuit, as Tempo returns it (base64 IDs).
TEMPO_TRACE_ID = "0000000000000000d269b633813fc60c"
# The fixtures are from 2024-12-01: search far enough back to include them.
ALL_TIME_S = 100 * 365 * 86400.0


def fixture_json(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())
