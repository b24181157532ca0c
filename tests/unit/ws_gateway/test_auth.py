"""Client tokens: token → client id, in constant time over all tokens (issue 8, point 12)."""

from __future__ import annotations

import hmac
import json
from pathlib import Path

import pytest

from ws_gateway import auth
from ws_gateway.auth import ClientTokens, parse_token_map, read_token_file

ALICE = "alice-token-0123456789"
BOB = "bob-token-0123456789"


def table() -> ClientTokens:
    return ClientTokens({"alice": [ALICE], "bob": [BOB, BOB + "-next"]})


def test_each_token_names_its_client() -> None:
    tokens = table()
    assert tokens.client_for(ALICE) == "alice"
    assert tokens.client_for(BOB) == "bob"
    assert tokens.client_for(BOB + "-next") == "bob"
    assert tokens.client_ids == {"alice", "bob"}


@pytest.mark.parametrize(
    "given",
    [
        None,
        42,
        b"alice-token-0123456789",
        ALICE[:-1],
        ALICE + " ",
        "",
        "\ud800",
        ALICE + "\udcff",
        "é" * 30,
        ["x"],
    ],
)
def test_anything_else_matches_nothing_and_never_raises(given: object) -> None:
    assert table().client_for(given) is None


def test_every_token_is_compared_whichever_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[bytes] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append(b)
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    tokens = table()
    for given in (ALICE, BOB, "nobody-0123456789"):
        compared.clear()
        tokens.client_for(given)
        assert len(compared) == len(tokens) == 3


def test_a_token_belongs_to_one_client_only() -> None:
    with pytest.raises(ValueError, match="'bob'") as info:
        ClientTokens({"alice": [ALICE], "bob": [ALICE]})
    assert ALICE not in str(info.value)
    with pytest.raises(ValueError):
        ClientTokens({})


def test_repr_names_clients_never_tokens() -> None:
    assert ALICE not in repr(table()) and "alice" in repr(table())


def test_the_token_map_format() -> None:
    text = json.dumps({"alice": ALICE, "bob": [BOB, "other-token-0123456789"]})
    assert parse_token_map(text) == {"alice": [ALICE], "bob": [BOB, "other-token-0123456789"]}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("alice=token", "JSON object"),
        ("[]", "JSON object"),
        ("{}", "JSON object"),
        ('{"al ice": "t"}', "client id"),
        ('{"' + "a" * 65 + '": "t"}', "client id"),
        ('{"x\\ud800": "t"}', "client id"),
        ('{"alice": 5}', "'alice'"),
        ('{"alice": []}', "'alice'"),
        ('{"alice": ["ok", 1]}', "'alice'"),
    ],
)
def test_a_bad_token_map_says_what_is_wrong(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_token_map(text)


def test_a_token_file_names_its_path_never_its_content(tmp_path: Path) -> None:
    good = tmp_path / "tokens.json"
    good.write_text(json.dumps({"alice": ALICE}))
    assert read_token_file(good) == {"alice": [ALICE]}
    bad = tmp_path / "bad.json"
    bad.write_text(ALICE)
    with pytest.raises(ValueError) as info:
        read_token_file(bad)
    assert str(bad) in str(info.value) and ALICE not in str(info.value)
    with pytest.raises(ValueError, match="cannot read"):
        read_token_file(tmp_path / "missing.json")
