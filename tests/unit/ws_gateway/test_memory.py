"""History budgets, the storage circuit breaker and the memory settings (no I/O)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from exai_telemetry.settings import describe_validation_error
from ws_gateway.breaker import CircuitBreaker
from ws_gateway.memory import HistoryBudget, fit_history
from ws_gateway.settings import GatewaySettings

TOKEN = "t" * 20


def settings(**env: Any) -> GatewaySettings:
    return GatewaySettings.model_validate({"EXAI_WS_TOKEN": TOKEN, **env})


def turns(*contents: str) -> list[dict[str, Any]]:
    return [
        {"role": "user" if i % 2 == 0 else "assistant", "content": c}
        for i, c in enumerate(contents)
    ]


PROMPT = {"role": "user", "content": "now"}
ROOMY = 10_000_000


def test_everything_fits_in_a_roomy_budget() -> None:
    history = turns("a", "b", "c", "d")
    assert fit_history(history, PROMPT, HistoryBudget(ROOMY, ROOMY)) == (history, 0)


def test_history_is_trimmed_newest_first_to_the_character_budget() -> None:
    history = turns("1" * 10, "2" * 10, "3" * 10, "4" * 10)
    # The prompt (3) and the two newest (20) fit in 25; the third would not.
    kept, dropped = fit_history(history, PROMPT, HistoryBudget(chars=25, body_bytes=ROOMY))
    assert kept == history[2:] and dropped == 2


def test_a_trimmed_history_never_starts_with_an_answer() -> None:
    history = turns("1" * 10, "2" * 10, "3" * 10, "4" * 10)
    kept, dropped = fit_history(history, PROMPT, HistoryBudget(chars=35, body_bytes=ROOMY))
    # Three newest fit, but the first of them answers a question that was dropped.
    assert kept == history[2:] and dropped == 2


def test_an_older_small_message_is_not_sent_without_the_newer_large_one() -> None:
    history = turns("s", "L" * 100, "s", "s")
    kept, dropped = fit_history(history, PROMPT, HistoryBudget(chars=50, body_bytes=ROOMY))
    assert kept == history[2:] and dropped == 2


def test_the_prompt_is_always_kept_even_over_budget() -> None:
    prompt = {"role": "user", "content": "p" * 100}
    kept, dropped = fit_history(turns("a", "b"), prompt, HistoryBudget(chars=10, body_bytes=10))
    assert (kept, dropped) == ([], 2)


def test_the_byte_budget_counts_the_json_encoding() -> None:
    # 10 characters, but 30 UTF-8 bytes each ("€" is 3 bytes), plus the JSON envelope.
    history = turns("€" * 10, "€" * 10)
    one = len(json.dumps(history[1], ensure_ascii=False, separators=(",", ":")).encode()) + 1
    prompt_bytes = len(json.dumps(PROMPT, ensure_ascii=False, separators=(",", ":")).encode())
    budget = HistoryBudget(chars=ROOMY, body_bytes=prompt_bytes + one + 20)
    kept, dropped = fit_history(history, PROMPT, budget)
    assert kept == [] and dropped == 2  # the newest fits alone, but is an answer
    budget = HistoryBudget(chars=ROOMY, body_bytes=prompt_bytes + 2 * one + 2)
    assert fit_history(history, PROMPT, budget) == (history, 0)


def test_lone_surrogates_do_not_break_the_byte_count() -> None:
    history = turns("\ud800 lone", "ok")
    assert fit_history(history, PROMPT, HistoryBudget(ROOMY, ROOMY)) == (history, 0)


# --- budgets per model family ---------------------------------------------------------


def test_the_budget_follows_the_longest_matching_model_prefix() -> None:
    config = settings(
        EXAI_HISTORY_BUDGET_CHARS=1000,
        EXAI_HISTORY_BUDGET_CHARS_BY_MODEL="kimi-=5000, kimi-k2-turbo=7000 ,glm-=3000",
        EXAI_PROVIDER_MAX_REQUEST_BYTES=1024 * 1024,
    )
    assert HistoryBudget.for_model(config, "kimi-k2-0905-preview").chars == 5000
    assert HistoryBudget.for_model(config, "kimi-k2-turbo-preview").chars == 7000
    assert HistoryBudget.for_model(config, "glm-4.5").chars == 3000
    assert HistoryBudget.for_model(config, "something-else").chars == 1000
    body = HistoryBudget.for_model(config, "glm-4.5").body_bytes
    assert 1024 * 1024 - 16 * 1024 <= body < 1024 * 1024


def test_default_budgets_fit_the_known_model_families() -> None:
    config = settings()
    assert config.provider_max_request_bytes == 8 * 1024 * 1024
    kimi = HistoryBudget.for_model(config, "kimi-k2-0905-preview")
    glm = HistoryBudget.for_model(config, "glm-4.5")
    small = HistoryBudget.for_model(config, "moonshot-v1-8k")
    assert kimi.chars > glm.chars > small.chars > 0
    assert kimi.body_bytes < config.provider_max_request_bytes


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"EXAI_HISTORY_BUDGET_CHARS_BY_MODEL": "kimi"}, "EXAI_HISTORY_BUDGET_CHARS_BY_MODEL"),
        ({"EXAI_HISTORY_BUDGET_CHARS_BY_MODEL": "kimi-=x"}, "EXAI_HISTORY_BUDGET_CHARS_BY_MODEL"),
        ({"EXAI_HISTORY_BUDGET_CHARS_BY_MODEL": "kimi-=-1"}, "EXAI_HISTORY_BUDGET_CHARS_BY_MODEL"),
        ({"EXAI_HISTORY_BUDGET_CHARS": "-5"}, "EXAI_HISTORY_BUDGET_CHARS"),
        ({"EXAI_PROVIDER_MAX_REQUEST_BYTES": "100"}, "EXAI_PROVIDER_MAX_REQUEST_BYTES"),
        ({"EXAI_MEMORY_READ_TIMEOUT_S": "0"}, "EXAI_MEMORY_READ_TIMEOUT_S"),
        ({"EXAI_MEMORY_WRITE_WAIT_S": "-1"}, "EXAI_MEMORY_WRITE_WAIT_S"),
        ({"EXAI_MEMORY_WRITE_TIMEOUT_S": "0"}, "EXAI_MEMORY_WRITE_TIMEOUT_S"),
        ({"EXAI_STORAGE_BREAKER_FAILURES": "0"}, "EXAI_STORAGE_BREAKER_FAILURES"),
        ({"EXAI_STORAGE_BREAKER_RESET_S": "0"}, "EXAI_STORAGE_BREAKER_RESET_S"),
        ({"EXAI_HEALTH_CACHE_S": "-1"}, "EXAI_HEALTH_CACHE_S"),
    ],
)
def test_bad_memory_settings_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ValidationError) as info:
        settings(**env)
    assert describe_validation_error(GatewaySettings, info.value).startswith(
        f"invalid setting {variable}:"
    )


# --- the storage circuit breaker --------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_breaker_opens_after_consecutive_failures_and_probes_after_the_reset() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=3, reset_s=10, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.failed()
    breaker.succeeded()  # a success in between: the count starts again
    for _ in range(3):
        assert breaker.allow()
        breaker.failed()
    assert breaker.state == "open" and not breaker.allow()
    clock.now += 10
    assert breaker.allow()  # one trial ...
    assert breaker.state == "half_open" and not breaker.allow()  # ... at a time
    breaker.failed()
    assert breaker.state == "open" and not breaker.allow()
    clock.now += 10
    assert breaker.allow()
    breaker.succeeded()
    assert breaker.state == "closed" and breaker.allow()


def test_an_abandoned_trial_lets_the_next_request_try() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=1, reset_s=1, clock=clock)
    breaker.failed()
    clock.now += 1
    assert breaker.allow()
    breaker.abandoned()  # e.g. the caller was cancelled mid-request
    assert breaker.allow()
