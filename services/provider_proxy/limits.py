"""A cap on request bodies: 413 for anything over `EXAI_MAX_REQUEST_BYTES`, whether
declared in `Content-Length` or streamed in chunks."""

from __future__ import annotations

from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from provider_proxy.errors import InvalidRequest, openai_error_body

PAYLOAD_TOO_LARGE = 413


class PayloadTooLarge(InvalidRequest):
    error_type = "payload_too_large"
    status_code = PAYLOAD_TOO_LARGE

    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"request body over {max_bytes} bytes")


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", []):
            if key == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                response = JSONResponse(
                    openai_error_body(PayloadTooLarge(self.max_bytes)), PAYLOAD_TOO_LARGE
                )
                await response(scope, receive, send)
                return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # FastAPI lets an HTTPException from body parsing through unchanged.
                    raise StarletteHTTPException(
                        PAYLOAD_TOO_LARGE, str(PayloadTooLarge(self.max_bytes))
                    )
            return message

        await self.app(scope, limited, send)
