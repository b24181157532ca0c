from __future__ import annotations

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import SecretStr

from exai_telemetry.redaction import REDACTED, SecretRegistry, redact_path, redact_url
from exai_telemetry.settings import ServiceSettings
from tests.support.telemetry import CapturedTelemetry

SECRET = "sk-live-0123456789abcdef"


class SecretSettings(ServiceSettings):
    api_key: SecretStr = SecretStr(SECRET)


def test_exported_spans_never_carry_a_configured_secret(captured: CapturedTelemetry) -> None:
    telemetry, _ = captured.build("svc", SecretSettings())
    with telemetry.tracer("t").start_as_current_span("call") as span:
        span.set_attribute("url.full", f"https://api.example/v1?key={SECRET}")
        span.set_attribute("http.request.header.authorization", ["Bearer abc"])
        span.set_attribute("exai.note", f"the key is {SECRET}!")
        span.set_attribute("gen_ai.request.model", "kimi-k2")
        span.add_event("retry", {"detail": f"upstream said {SECRET}"})
    exported = captured.spans()[0]
    flat = repr(dict(exported.attributes or {})) + repr([e.attributes for e in exported.events])
    assert SECRET not in flat
    assert exported.attributes["http.request.header.authorization"] == REDACTED
    assert exported.attributes["exai.note"] == f"the key is {REDACTED}!"
    assert exported.attributes["gen_ai.request.model"] == "kimi-k2"


def test_content_attributes_dropped_unless_opted_in() -> None:
    for capture, expected_present in ((False, False), (True, True)):
        exporter = InMemorySpanExporter()
        telemetry, _ = CapturedTelemetry(exporter).build(
            "svc", ServiceSettings(capture_content=capture)
        )
        with telemetry.tracer("t").start_as_current_span("chat") as span:
            span.set_attribute("gen_ai.input.messages", "tell me a secret")
            span.set_attribute("gen_ai.usage.input_tokens", 5)
        attrs = exporter.get_finished_spans()[0].attributes or {}
        assert ("gen_ai.input.messages" in attrs) is expected_present
        assert attrs["gen_ai.usage.input_tokens"] == 5


def test_redact_url_removes_userinfo_and_token_parameters() -> None:
    assert (
        redact_url("https://user:pw@db.example:5432/x?token=abc&page=2")
        == f"https://db.example:5432/x?token={REDACTED}&page=2"
    )
    assert redact_path("/mcp?token=abc") == f"/mcp?token={REDACTED}"
    assert redact_path("/health") == "/health"


def test_registry_ignores_values_too_short_to_be_credentials() -> None:
    registry = SecretRegistry(["abc", "", "longer-secret"])
    assert registry.scrub("abc longer-secret") == f"abc {REDACTED}"
    assert "Bearer xyz.123" not in registry.scrub("Authorization: Bearer xyz.123")
