"""Each provider's JSON, chunks and errors look the way that provider's clients expect."""

from __future__ import annotations

import pytest

from llm_simulator.errors import ApiError, ErrorKind
from llm_simulator.generation import Usage
from llm_simulator.providers import Glm, Kimi

USAGE = Usage(prompt_tokens=20, completion_tokens=7, cached_tokens=12)


def test_kimi_completion_reports_cached_tokens_at_the_top_of_usage() -> None:
    kimi = Kimi()
    meta = kimi.new_meta("kimi-k2-0905-preview")
    body = kimi.completion(meta, "hello", USAGE)
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert body["model"] == "kimi-k2-0905-preview"
    assert isinstance(body["created"], int)
    assert body["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}
    ]
    assert body["usage"] == {
        "prompt_tokens": 20,
        "completion_tokens": 7,
        "total_tokens": 27,
        "cached_tokens": 12,
    }
    assert "request_id" not in body


def test_glm_completion_reports_cached_tokens_in_prompt_details_and_a_request_id() -> None:
    glm = Glm()
    body = glm.completion(glm.new_meta("glm-4.5"), "hello", USAGE)
    assert body["request_id"] == body["id"]
    assert "object" not in body  # GLM leaves it out; clients must not need it
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "hello"}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {
        "prompt_tokens": 20,
        "completion_tokens": 7,
        "total_tokens": 27,
        "prompt_tokens_details": {"cached_tokens": 12},
    }


def test_glm_echoes_the_callers_request_id() -> None:
    glm = Glm()
    body = glm.completion(glm.new_meta("glm-4.5", "my-request-1"), "x", USAGE)
    assert body["request_id"] == "my-request-1"
    assert body["id"] != "my-request-1"


def test_response_ids_are_unique() -> None:
    for provider in (Kimi(), Glm()):
        assert len({provider.new_meta("m").id for _ in range(50)}) == 50


def test_kimi_stream_opens_with_the_role_and_puts_usage_in_the_finish_choice() -> None:
    kimi = Kimi()
    meta = kimi.new_meta("moonshot-v1-8k")
    [opening] = kimi.opening_chunks(meta)
    assert opening["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    content = kimi.content_chunk(meta, " word")
    assert content["object"] == "chat.completion.chunk"
    assert content["choices"][0] == {
        "index": 0,
        "delta": {"content": " word"},
        "finish_reason": None,
    }
    [finish] = kimi.closing_chunks(meta, USAGE, include_usage=False)
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert finish["choices"][0]["usage"]["cached_tokens"] == 12
    assert "usage" not in finish


def test_kimi_stream_adds_an_openai_usage_chunk_when_asked() -> None:
    kimi = Kimi()
    meta = kimi.new_meta("moonshot-v1-8k")
    finish, trailer = kimi.closing_chunks(meta, USAGE, include_usage=True)
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert trailer["choices"] == []
    assert trailer["usage"]["total_tokens"] == 27
    assert trailer["id"] == finish["id"] == meta.id


@pytest.mark.parametrize("include_usage", [False, True])
def test_glm_stream_always_ends_with_top_level_usage(include_usage: bool) -> None:
    glm = Glm()
    meta = glm.new_meta("glm-4.6")
    assert glm.opening_chunks(meta) == []
    content = glm.content_chunk(meta, "Hi")
    assert content["choices"][0]["delta"] == {"role": "assistant", "content": "Hi"}
    [finish] = glm.closing_chunks(meta, USAGE, include_usage=include_usage)
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert finish["usage"]["prompt_tokens_details"] == {"cached_tokens": 12}
    assert finish["request_id"] == meta.request_id


@pytest.mark.parametrize(
    ("kind", "status", "error_type"),
    [
        (ErrorKind.AUTH_MISSING, 401, "invalid_authentication_error"),
        (ErrorKind.AUTH_INVALID, 401, "invalid_authentication_error"),
        (ErrorKind.MODEL_NOT_FOUND, 404, "resource_not_found_error"),
        (ErrorKind.BAD_REQUEST, 400, "invalid_request_error"),
        (ErrorKind.RATE_LIMITED, 429, "rate_limit_reached_error"),
        (ErrorKind.SERVER_ERROR, 500, "server_error"),
    ],
)
def test_kimi_errors(kind: ErrorKind, status: int, error_type: str) -> None:
    assert Kimi().error(ApiError(kind, "why")) == (
        status,
        {"error": {"message": "why", "type": error_type}},
    )


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        (ErrorKind.AUTH_MISSING, 401, "1001"),
        (ErrorKind.AUTH_INVALID, 401, "1000"),
        (ErrorKind.MODEL_NOT_FOUND, 400, "1211"),
        (ErrorKind.BAD_REQUEST, 400, "1214"),
        (ErrorKind.RATE_LIMITED, 429, "1302"),
        (ErrorKind.SERVER_ERROR, 500, "500"),
    ],
)
def test_glm_errors(kind: ErrorKind, status: int, code: str) -> None:
    assert Glm().error(ApiError(kind, "why")) == (
        status,
        {"error": {"code": code, "message": "why"}},
    )


def test_model_lists_are_openai_shaped_and_disjoint() -> None:
    kimi, glm = Kimi().model_list(), Glm().model_list()
    for listing in (kimi, glm):
        assert listing["object"] == "list"
        assert all(m["object"] == "model" for m in listing["data"])
    kimi_ids = {m["id"] for m in kimi["data"]}
    glm_ids = {m["id"] for m in glm["data"]}
    assert {"kimi-k2-0905-preview", "kimi-k2-turbo-preview", "moonshot-v1-8k"} <= kimi_ids
    assert {"glm-4.5", "glm-4.5-air", "glm-4.6"} <= glm_ids
    assert not kimi_ids & glm_ids


def test_api_error_reads_well() -> None:
    assert str(ApiError(ErrorKind.RATE_LIMITED, "slow down", retry_after_s=2)) == (
        "rate_limited: slow down"
    )
