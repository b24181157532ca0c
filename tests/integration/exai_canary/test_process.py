"""`python -m exai_canary` as a real process exporting OTLP/HTTP to a real receiver:
it keeps checking while the gateway is unreachable (no crash, one log line), serves
its health endpoints, and on SIGTERM exits 0 after exporting what it counted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.otlp import OtlpReceiver, attributes, wait_until
from tests.support.servers import free_port

pytestmark = pytest.mark.integration

TIME_SCALE = float(os.environ.get("EXAI_TEST_TIME_SCALE", "1"))
TOKEN = "canary-process-token-0123456789"


def test_the_process_counts_failed_checks_without_crashing_and_flushes_at_sigterm(
    tmp_path: Path,
) -> None:
    port, dead_port = free_port(), free_port()  # nothing listens on the second
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXAI_", "OTEL_"))}
    log_path = tmp_path / "canary.log"
    with OtlpReceiver() as receiver, log_path.open("wb") as log:
        env.update(
            {
                "PYTHONUNBUFFERED": "1",
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
                "EXAI_CANARY_PORT": str(port),
                "EXAI_CANARY_GATEWAY_URL": f"ws://127.0.0.1:{dead_port}",
                "EXAI_CANARY_INTERVAL_S": "0.2",
                "EXAI_WS_TOKEN": TOKEN,
                "EXAI_TELEMETRY_FLUSH_S": "3",
            }
        )
        popen = subprocess.Popen(
            [sys.executable, "-m", "exai_canary"],
            env=env,
            cwd=tmp_path,  # no stray .env
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:

            def ready() -> bool:
                assert popen.poll() is None, log_path.read_text()
                try:
                    return httpx.get(f"http://127.0.0.1:{port}/health/ready").status_code == 200
                except httpx.TransportError:
                    return False

            wait_until(ready, 30 * TIME_SCALE, "canary ready")
            time.sleep(1.5 * TIME_SCALE)  # several failed checks
            health = httpx.get(f"http://127.0.0.1:{port}/health").json()
            assert health["components"]["gateway"]["error_type"] == "connect"
            sigterm_at = time.monotonic()
            popen.send_signal(signal.SIGTERM)
            assert popen.wait(15 * TIME_SCALE) == 0
        finally:
            if popen.poll() is None:
                popen.kill()
                popen.wait(10)

        text = log_path.read_text()
        assert text.count("status check failing: connect") == 1, text
        assert TOKEN not in text
        errors = [
            point.as_double or point.as_int
            for arrived, point in receiver.metric_points("exai-canary", "exai.canary.checks")
            if arrived >= sigterm_at
            and attributes(point.attributes)
            == {"exai.canary.check": "status", "exai.outcome": "error"}
        ]
        assert errors and errors[-1] >= 3, errors
        failed = [
            attributes(span.attributes)
            for _, span in receiver.spans("exai-canary")
            if span.name == "canary status"
        ]
        assert len(failed) >= 3
        assert {a["error.type"] for a in failed} == {"connect"}
        assert all(a["exai.correlation_id"].startswith("canary-") for a in failed)
