"""Where to open the same trace in a browser: Grafana's Explore on the Tempo datasource,
or Jaeger's own UI when the Jaeger being read serves one.

Grafana's provisioning gives the Tempo datasource the fixed UID ``tempo``; the link asks
for the trace by ID over a time range around it (Tempo finds a trace by ID without one,
but Explore would otherwise open on "last hour" and miss an older trace).
"""

from __future__ import annotations

import json
from urllib.parse import quote, urlencode

from exai_cli.types import Trace

ENV_GRAFANA = "EXAI_GRAFANA_URL"
ENV_GRAFANA_TEMPO_UID = "EXAI_GRAFANA_TEMPO_UID"
DEFAULT_GRAFANA_URL = "http://127.0.0.1:3000"  # compose publishes Grafana here
DEFAULT_TEMPO_UID = "tempo"
_MARGIN_MS = 5 * 60 * 1000


def grafana_trace_url(base_url: str, trace: Trace, tempo_uid: str = DEFAULT_TEMPO_UID) -> str:
    """Explore with the Tempo datasource, showing `trace`."""
    datasource = {"type": "tempo", "uid": tempo_uid}
    pane = {
        "datasource": tempo_uid,
        "queries": [
            {
                "refId": "A",
                "datasource": datasource,
                "queryType": "traceql",
                "query": trace.trace_id,
            }
        ],
        "range": {
            "from": str(trace.start_ns // 1_000_000 - _MARGIN_MS),
            "to": str(trace.end_ns // 1_000_000 + _MARGIN_MS),
        },
    }
    query = urlencode(
        {"schemaVersion": "1", "panes": json.dumps({"trace": pane}, separators=(",", ":"))},
        quote_via=quote,
    )
    return f"{base_url.rstrip('/')}/explore?{query}"


def jaeger_trace_url(base_url: str, trace_id: str) -> str:
    return f"{base_url.rstrip('/')}/trace/{trace_id}"
