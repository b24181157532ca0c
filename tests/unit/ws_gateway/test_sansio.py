"""Strict JSON parsing shared by both protocol cores (issue 8, point 6)."""

from __future__ import annotations

import sys

import pytest

from ws_gateway.sansio import (
    MAX_JSON_DEPTH,
    MalformedJSON,
    client_correlation_id,
    json_depth,
    lone_surrogate,
    parse_json,
)


@pytest.mark.parametrize(
    "text",
    [
        "[" * 1000 + "]" * 1000,
        '{"a":' * 1000 + "1" + "}" * 1000,
        "[" * (sys.getrecursionlimit() * 10),  # unterminated, far past the limit
        "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1),
    ],
)
def test_deep_nesting_is_malformed_never_a_recursion_error(text: str) -> None:
    with pytest.raises(MalformedJSON, match="nested deeper than"):
        parse_json(text)


def test_nesting_up_to_the_limit_is_fine() -> None:
    depth = MAX_JSON_DEPTH
    assert json_depth(parse_json("[" * depth + "]" * depth), limit=100) == depth


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(constant: str) -> None:
    with pytest.raises(MalformedJSON, match=constant):
        parse_json('{"x": [1, ' + constant + "]}")


@pytest.mark.parametrize("text", ["{", "", "nul", '{"a" 1}', "1" * 5000, "[1,]"])
def test_invalid_json_is_malformed(text: str) -> None:
    with pytest.raises(MalformedJSON):
        parse_json(text)


def test_the_reason_never_quotes_the_input() -> None:
    secret = "s3cret-" + "x" * 20
    with pytest.raises(MalformedJSON) as info:
        parse_json('{"token": "' + secret + '" oops}')
    assert secret not in str(info.value)


@pytest.mark.parametrize(
    ("value", "depth"),
    [(1, 0), ("s", 0), ([], 1), ({}, 1), ([[1], {"a": [2]}], 3), ({"a": {"b": {}}}, 3)],
)
def test_json_depth(value: object, depth: int) -> None:
    assert json_depth(value, limit=10) == depth


def test_json_depth_stops_past_its_limit() -> None:
    value: list[object] = []
    for _ in range(100_000):  # deeper than any recursion could go
        value = [value]
    assert json_depth(value, limit=5) == 6


@pytest.mark.parametrize(
    ("value", "found"),
    [
        ("plain", False),
        ("é 中文 🎉", False),
        ("\ud83c\udf89", True),  # a pair written as two escapes in JSON stays two here
        ("\ud800", True),
        ({"k": ["ok", {"deep": "x\udfff"}]}, True),
        ({"k\udc80": 1}, True),  # keys too
        ([1, 2.5, None, True], False),
    ],
)
def test_lone_surrogate(value: object, found: bool) -> None:
    assert lone_surrogate(value) is found


def test_an_escaped_surrogate_pair_decodes_to_one_character() -> None:
    assert parse_json('"\\ud83c\\udf89"') == "🎉"
    assert lone_surrogate(parse_json('"\\ud83c\\udf89"')) is False
    assert lone_surrogate(parse_json('"\\ud83c"')) is True


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        ("corr-1:a.b", True),
        ("abc\n", False),
        ("abc\r\n", False),
        ("a\tb", False),
        ("é", False),
        ("\ud800", False),
        ("x" * 129, False),
        (5, False),
    ],
)
def test_client_correlation_ids_must_fit_in_a_header(value: object, kept: bool) -> None:
    assert (client_correlation_id(value) == value) is kept
    assert kept or client_correlation_id(value) is None
