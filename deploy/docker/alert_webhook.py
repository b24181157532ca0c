"""Alertmanager webhook receiver for the compose stack: logs every notification.

Alertmanager's receivers all post to http://127.0.0.1:9095/alerts
(deploy/alertmanager/alertmanager.yml). In the no-Docker stack the end-to-end tests
listen there; in compose this process does, sharing Alertmanager's network namespace
(network_mode: service:alertmanager). Read the notifications with
`docker compose logs -f alert-webhook`; replace the URL with a real pager or chat
integration to page people.

Standard library only, so it runs in the plain Python base image.
"""

from __future__ import annotations

import json
import logging
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

logger = logging.getLogger("alert-webhook")

MAX_BODY_BYTES = 1024 * 1024


class AlertHandler(BaseHTTPRequestHandler):
    server_version = "exai-alert-webhook/1"

    def do_GET(self) -> None:
        # Health probe for the container's healthcheck.
        self._reply(200 if self.path == "/health" else 404)

    def do_POST(self) -> None:
        if self.path != "/alerts":
            self._reply(404)
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0 or length > MAX_BODY_BYTES:
            self._reply(413 if length > MAX_BODY_BYTES else 400)
            return
        try:
            payload = json.loads(self.rfile.read(length))
        except json.JSONDecodeError:
            self._reply(400)
            return
        receiver = payload.get("receiver", "?")
        for alert in payload.get("alerts", []):
            labels = alert.get("labels", {})
            logger.info(
                "%s %s receiver=%s severity=%s labels=%s summary=%s",
                alert.get("status", "?").upper(),
                labels.get("alertname", "?"),
                receiver,
                labels.get("severity", "?"),
                json.dumps(labels, sort_keys=True),
                alert.get("annotations", {}).get("summary", ""),
            )
        self._reply(200)

    def _reply(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        # One line per alert above is enough; skip the per-request access log.
        return


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    host = os.environ.get("ALERT_WEBHOOK_HOST", "127.0.0.1")
    port = int(os.environ.get("ALERT_WEBHOOK_PORT", "9095"))
    server = ThreadingHTTPServer((host, port), AlertHandler)
    logger.info("listening on http://%s:%d/alerts", host, port)
    server.serve_forever()


if __name__ == "__main__":
    main()
