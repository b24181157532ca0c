"""A recorded HTTP API on localhost (Jaeger, Tempo, Loki answers from fixtures/) and the
`exai trace` runner the CLI tests share."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from exai_cli import main as cli
from tests.unit.exai_cli.conftest import TEMPO_TRACE_ID, fixture_json

FOREVER = "36500d"  # the fixtures are from 2024
ENV_NAMES = (
    "EXAI_JAEGER_URL",
    "EXAI_TEMPO_URL",
    "EXAI_LOKI_URL",
    "EXAI_TELEMETRY_DIR",
    "EXAI_TAIL_DECISION_WAIT",
    "EXAI_GRAFANA_URL",
    "EXAI_GRAFANA_TEMPO_UID",
)

Answer = tuple[int, Any]
Route = Callable[[dict[str, str]], Answer]


@dataclass
class RecordedApi:
    """Serves canned answers by path; records every request (path, query)."""

    routes: dict[str, Route]
    url: str = ""
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def calls(self, path: str) -> list[dict[str, str]]:
        return [q for p, q in self.requests if p == path]


@contextlib.contextmanager
def serve(routes: dict[str, Route], text_type: str | None = None) -> Iterator[RecordedApi]:
    """`text_type`: the Content-Type of plain-text answers (JSON ones say JSON)."""
    api = RecordedApi(routes)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            api.requests.append((parts.path, query))
            route = api.routes.get(parts.path)
            status, body = route(query) if route else (404, "404 page not found")
            raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(raw)))
            if not isinstance(body, str):
                self.send_header("Content-Type", "application/json")
            elif text_type is not None:
                self.send_header("Content-Type", text_type)
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()


def jaeger_routes(found_from_poll: int = 1) -> dict[str, Route]:
    """Jaeger with three services; the trace is stored from the n-th poll on."""
    polls: set[str] = set()  # each poll searches every service with the same time range

    def traces(query: dict[str, str]) -> Answer:
        polls.add(query["end"])
        if query["service"] == "jaeger" or len(polls) < found_from_poll:
            return 200, {"data": [], "total": 0}
        return 200, fixture_json("jaeger_traces.json")

    return {
        "/api/services": lambda q: (200, {"data": ["ws-gateway", "provider-proxy", "jaeger"]}),
        "/api/traces": traces,
    }


def tempo_routes(*, with_loki: bool = True) -> dict[str, Route]:
    """Tempo's recorded search and trace; with Loki's recorded lines on the same server."""
    routes: dict[str, Route] = {
        "/api/echo": lambda q: (200, "echo"),
        "/api/search": lambda q: (200, fixture_json("tempo_search.json")),
        f"/api/traces/{TEMPO_TRACE_ID}": lambda q: (200, fixture_json("tempo_trace.json")),
    }
    if with_loki:
        routes["/loki/api/v1/query_range"] = lambda q: (200, fixture_json("loki_query_range.json"))
    return routes


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(["trace", *argv])
    out, err = capsys.readouterr()
    return code, out, err
