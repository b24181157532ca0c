"""The 413 for request bodies over `EXAI_MAX_REQUEST_BYTES` (enforced by the shared
`exai_telemetry.http_service.BodyLimit`)."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from provider_proxy.errors import InvalidRequest, openai_error_body

PAYLOAD_TOO_LARGE = 413


class PayloadTooLarge(InvalidRequest):
    error_type = "payload_too_large"
    status_code = PAYLOAD_TOO_LARGE

    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"request body over {max_bytes} bytes")


def too_large(max_bytes: int) -> JSONResponse:
    """The proxy's 413, in OpenAI's error shape (for `exai_telemetry`'s `BodyLimit`)."""
    return JSONResponse(openai_error_body(PayloadTooLarge(max_bytes)), PAYLOAD_TOO_LARGE)
