"""Usage in both providers' shapes, and cost from the price table."""

from __future__ import annotations

import pytest

from provider_proxy.usage import DEFAULT_PRICES, ModelPrice, PriceTable, Usage, parse_usage


def test_kimi_reports_cached_tokens_at_the_top_of_usage() -> None:
    raw = {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150, "cached_tokens": 100}
    assert parse_usage(raw) == Usage(120, 30, 100)


def test_glm_reports_cached_tokens_in_prompt_tokens_details() -> None:
    raw = {
        "prompt_tokens": 120,
        "completion_tokens": 30,
        "prompt_tokens_details": {"cached_tokens": 64},
    }
    assert parse_usage(raw) == Usage(120, 30, 64)


def test_no_cache_information_means_zero_cached() -> None:
    assert parse_usage({"prompt_tokens": 5, "completion_tokens": 7}) == Usage(5, 7, 0)


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "12 tokens",
        {},
        {"prompt_tokens": "5", "completion_tokens": 7},
        {"prompt_tokens": 5, "completion_tokens": -1},
        {"prompt_tokens": True, "completion_tokens": 7},
    ],
)
def test_unreadable_usage_is_absent_not_a_crash(raw: object) -> None:
    assert parse_usage(raw) is None


def test_cached_tokens_never_exceed_the_prompt() -> None:
    assert parse_usage({"prompt_tokens": 5, "completion_tokens": 1, "cached_tokens": 50}) == Usage(
        5, 1, 5
    )


def test_usage_in_openai_shape() -> None:
    assert Usage(10, 4, 6).as_openai() == {
        "prompt_tokens": 10,
        "completion_tokens": 4,
        "total_tokens": 14,
        "prompt_tokens_details": {"cached_tokens": 6},
    }


def test_cached_tokens_are_priced_at_the_cached_rate() -> None:
    price = ModelPrice(input=1.0, cached_input=0.25, output=4.0)
    # 600k uncached input, 400k cached, 500k output.
    cost = price.cost_usd(
        Usage(input_tokens=1_000_000, output_tokens=500_000, cached_tokens=400_000)
    )
    assert cost == pytest.approx(0.6 * 1.0 + 0.4 * 0.25 + 0.5 * 4.0)


def test_without_a_cached_rate_cached_tokens_cost_the_input_rate() -> None:
    price = ModelPrice(input=2.0, output=0.0)
    assert price.cost_usd(Usage(1_000_000, 0, 1_000_000)) == pytest.approx(2.0)


def test_price_table_exact_names_win_over_patterns() -> None:
    table = PriceTable(
        {"kimi-*": ModelPrice(input=1, output=1), "kimi-k2": ModelPrice(input=9, output=9)}
    )
    assert table.price("kimi-k2") == ModelPrice(input=9, output=9)
    assert table.price("kimi-latest") == ModelPrice(input=1, output=1)
    assert table.price("glm-4.5") is None
    assert table.cost_usd("glm-4.5", Usage(1, 1)) is None
    assert table.models() == ["kimi-k2"]


def test_every_simulator_model_has_a_default_price() -> None:
    simulator_models = [
        "kimi-k2-0905-preview",
        "kimi-k2-0711-preview",
        "kimi-k2-turbo-preview",
        "kimi-latest",
        "moonshot-v1-8k",
        "moonshot-v1-32k",
        "moonshot-v1-128k",
        "glm-4.5",
        "glm-4.5-air",
        "glm-4.5-flash",
        "glm-4.6",
    ]
    assert set(simulator_models) <= set(DEFAULT_PRICES)
