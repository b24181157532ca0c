"""The HTTP API (DESIGN §5) and its error document.

- ``POST /v1/conversations`` → 201 created, or 200 with the existing conversation when
  ``continuation_id`` is already known (never a duplicate); without one the server
  makes a UUID4.
- ``GET /v1/conversations/{continuation_id}?limit=N`` → the conversation with its last
  N messages, oldest first (N defaults to ``EXAI_HISTORY_DEFAULT_LIMIT``); 404 if unknown.
- ``POST /v1/conversations/{continuation_id}/messages`` → 201 stored, or 200 with the
  stored message when the ``idempotency_key`` was seen before for the same message;
  409 when it was used for a different one. The conversation is created on the first
  message if it does not exist yet, so a client can store history with one request.

Every request may carry ``X-EXAI-Client-ID`` (``exai_contracts.ids``; absent means
``default``): the client the gateway serves. A conversation belongs to the client that
created it; to any other it answers exactly like one that does not exist (404), and
creating it again is 409 CONTINUATION_ID_TAKEN. Continuation IDs follow the one shared
pattern, in the path and in the body; a path with percent-encoding (which no valid ID
needs) is refused rather than decoded into another route.

Errors: ``{"error": {"code", "message"}}`` — 404 NOT_FOUND, 409 IDEMPOTENCY_CONFLICT or
CONTINUATION_ID_TAKEN, 413 PAYLOAD_TOO_LARGE, 422 VALIDATION_ERROR (also data the
durable store refuses), 503 STORAGE_UNAVAILABLE (durable store down; nothing was
written).
"""

from __future__ import annotations

import logging
import uuid
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from opentelemetry import trace
from starlette.exceptions import HTTPException as StarletteHTTPException

from exai_contracts.ids import (
    CLIENT_ID_HEADER,
    CLIENT_ID_PATTERN,
    CONTINUATION_ID_PATTERN,
    DEFAULT_CLIENT_ID,
)
from exai_telemetry import names
from storage_adapter.errors import (
    ContinuationIdTaken,
    ConversationNotFound,
    ErrorCode,
    IdempotencyConflict,
    InvalidData,
    LimitExceeded,
    StoreUnavailable,
)
from storage_adapter.models import NewMessage
from storage_adapter.schemas import (
    AppendMessageBody,
    CreateConversationBody,
    Limits,
    conversation_document,
    history_document,
    message_document,
)
from storage_adapter.service import ConversationService

logger = logging.getLogger(__name__)


def _literal_path(request: Request) -> None:
    """Routing matches the decoded path, so ``abc%2Fmessages`` would reach the
    messages route of ``abc``: refuse percent-encoding, which no valid ID needs."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    if b"%" in raw:
        raise RequestValidationError(
            [
                {
                    "loc": ("path", "continuation_id"),
                    "msg": "percent-encoded characters never occur in a continuation ID",
                    "type": "value_error",
                }
            ]
        )


router = APIRouter(prefix="/v1", dependencies=[Depends(_literal_path)])

ContinuationId = Annotated[str, Path(pattern=CONTINUATION_ID_PATTERN)]


def _client_id(
    header: Annotated[
        str | None,
        Header(
            alias=CLIENT_ID_HEADER,
            pattern=CLIENT_ID_PATTERN,
            description="The client the caller acts for (owner of what it creates).",
        ),
    ] = None,
) -> str:
    return DEFAULT_CLIENT_ID if header is None else header


def _service(request: Request) -> ConversationService:
    return cast(ConversationService, request.app.state.service)


def _limits(request: Request) -> Limits:
    return cast(Limits, request.app.state.limits)


Service = Annotated[ConversationService, Depends(_service)]
Bounds = Annotated[Limits, Depends(_limits)]
ClientId = Annotated[str, Depends(_client_id)]


def _tag(continuation_id: str, client_id: str) -> None:
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute(names.CONTINUATION_ID, continuation_id)
        span.set_attribute(names.CLIENT_ID, client_id)


@router.post("/conversations")
async def create_conversation(
    body: CreateConversationBody, service: Service, limits: Bounds, client_id: ClientId
) -> JSONResponse:
    limits.check_metadata(body.metadata)
    continuation_id = body.continuation_id or str(uuid.uuid4())
    _tag(continuation_id, client_id)
    conversation, created = await service.create_conversation(
        continuation_id, client_id, body.title, body.metadata
    )
    return JSONResponse(conversation_document(conversation), status_code=201 if created else 200)


@router.get("/conversations/{continuation_id}")
async def get_conversation(
    continuation_id: ContinuationId,
    service: Service,
    limits: Bounds,
    client_id: ClientId,
    limit: Annotated[int | None, Query(ge=0)] = None,
) -> JSONResponse:
    _tag(continuation_id, client_id)
    conversation, messages, has_more = await service.get_history(
        continuation_id, client_id, limits.history_limit(limit)
    )
    return JSONResponse(history_document(conversation, messages, has_more))


@router.post("/conversations/{continuation_id}/messages")
async def append_message(
    continuation_id: ContinuationId,
    body: AppendMessageBody,
    service: Service,
    limits: Bounds,
    client_id: ClientId,
) -> JSONResponse:
    _tag(continuation_id, client_id)
    limits.check_content(body.content)
    limits.check_metadata(body.metadata)
    result = await service.append_message(
        continuation_id,
        client_id,
        NewMessage(body.role, body.content, body.idempotency_key, body.metadata),
    )
    return JSONResponse(
        message_document(result.message, continuation_id),
        status_code=201 if result.created else 200,
    )


def error_response(
    status: int, code: ErrorCode, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code.value, "message": message, **extra}},
        status_code=status,
        headers=headers,
    )


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # Never echo the input: it may be message content.
        details = [{"loc": _location(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
        summary = "; ".join(f"{d['loc']}: {d['msg']}" for d in details[:3])
        return error_response(422, ErrorCode.VALIDATION_ERROR, summary, details=details)

    @app.exception_handler(LimitExceeded)
    async def too_big(_request: Request, exc: LimitExceeded) -> JSONResponse:
        return error_response(422, ErrorCode.VALIDATION_ERROR, str(exc))

    @app.exception_handler(ConversationNotFound)
    async def not_found(_request: Request, exc: ConversationNotFound) -> JSONResponse:
        return error_response(404, ErrorCode.NOT_FOUND, str(exc))

    @app.exception_handler(IdempotencyConflict)
    async def conflict(_request: Request, exc: IdempotencyConflict) -> JSONResponse:
        return error_response(409, ErrorCode.IDEMPOTENCY_CONFLICT, str(exc))

    @app.exception_handler(ContinuationIdTaken)
    async def taken(_request: Request, exc: ContinuationIdTaken) -> JSONResponse:
        return error_response(409, ErrorCode.CONTINUATION_ID_TAKEN, str(exc))

    @app.exception_handler(InvalidData)
    async def refused(_request: Request, exc: InvalidData) -> JSONResponse:
        # The store answered: not an outage, and nothing was written.
        logger.warning("durable store refused a request's data: %s", exc.reason)
        return error_response(
            422,
            ErrorCode.VALIDATION_ERROR,
            f"the durable store cannot hold this data ({exc.reason}); nothing was written",
        )

    @app.exception_handler(StoreUnavailable)
    async def unavailable(request: Request, exc: StoreUnavailable) -> JSONResponse:
        backend = _service(request).store.backend
        return error_response(
            503,
            ErrorCode.STORAGE_UNAVAILABLE,
            f"the durable store ({backend}) is unavailable; nothing was written, retry later",
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {
            404: ErrorCode.NOT_FOUND,
            413: ErrorCode.PAYLOAD_TOO_LARGE,
        }.get(exc.status_code, ErrorCode.VALIDATION_ERROR)
        headers = dict(exc.headers) if exc.headers else None
        return error_response(exc.status_code, code, str(exc.detail), headers=headers)

    @app.exception_handler(Exception)
    async def internal(_request: Request, exc: Exception) -> JSONResponse:
        logger.error("unhandled %s", type(exc).__name__)
        return error_response(500, ErrorCode.INTERNAL_ERROR, "internal error")


def too_large(max_bytes: int) -> JSONResponse:
    """The adapter's 413 (for `exai_telemetry`'s `BodyLimit`)."""
    return error_response(413, ErrorCode.PAYLOAD_TOO_LARGE, f"request body over {max_bytes} bytes")
