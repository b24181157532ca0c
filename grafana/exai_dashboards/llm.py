"""(c) LLM usage and cost: tokens and spend by provider, model, tool and client, against
the configured budget; streaming latency (time to first chunk, time per output chunk);
retries, fallbacks (from → to, failed ones), circuits, rate-limit headroom."""

from __future__ import annotations

from grafana_foundation_sdk.models.dashboard import Dashboard

from exai_dashboards.common import base, with_rows
from exai_dashboards.panels import (
    NO_TRAFFIC,
    env_variable,
    prom,
    stat_panel,
    state_timeline_panel,
    timeseries_panel,
)
from exai_dashboards.promql import (
    ENV,
    live,
    quantile,
    rate_sum,
    rate_sum_or_zero,
    ratio,
    sel,
)

MODEL = ["gen_ai_provider_name", "gen_ai_request_model"]
REQUESTS = "exai_provider_requests_total"
COST = "exai_provider_cost_total"
TOKENS = "exai_provider_tokens_total"
IN_OUT = 'exai_token_type=~"input|output"'
FALLBACKS = "exai_provider_fallbacks_total"
# provider-proxy's EXAI_SPEND_BUDGET_USD_PER_HOUR, the threshold TokenSpendAboveBudget
# uses; max over the running proxies (a restarted proxy's old value is not used).
BUDGET = f"max({live(f'exai_provider_cost_budget{sel(ENV)}')})"
SPEND_PER_HOUR = f"{rate_sum(COST, ENV)} * 3600"
# One 0 line while provider-proxy runs: a proxy without a fallback configured has no
# fallback series at all, and "none" is the truth.
NO_FALLBACK = f"\nor on ()\n{rate_sum(REQUESTS, ENV)} * 0"


def llm_dashboard() -> Dashboard:
    usage = [
        stat_panel(
            "Spend (24 h)",
            "Provider cost over the last 24 hours, from the price table in provider-proxy.",
            prom(f"sum(increase({COST}{sel(ENV)}[24h]))", "USD"),
            unit="currencyUSD",
            decimals=2,
            span=6,
            no_value="no data from provider-proxy",
        ),
        stat_panel(
            "Spend rate (share of budget)",
            "Cost per hour at the current rate, as a share of the hourly budget provider-proxy"
            " publishes (EXAI_SPEND_BUDGET_USD_PER_HOUR, exai.provider.cost.budget): red"
            " above 100 %, where TokenSpendAboveBudget fires (30-minute average).",
            # 0 while the proxy runs but has not spent yet (a restarted proxy's cost
            # series starts with its first priced call).
            prom(
                f"(\n  {SPEND_PER_HOUR}\n  or on ()\n  {BUDGET} * 0\n)\n/ on ()\n{BUDGET}",
                "of budget",
            ),
            unit="percentunit",
            steps=((None, "green"), (0.8, "orange"), (1, "red")),
            decimals=1,
            span=6,
            sparkline=True,
            no_value="no data from provider-proxy",
        ),
        stat_panel(
            "Tokens (24 h)",
            "Input + output tokens over the last 24 hours.",
            prom(f"sum(increase({TOKENS}{sel(ENV, IN_OUT)}[24h]))", "tokens"),
            span=6,
            no_value="no data from provider-proxy",
        ),
        stat_panel(
            "Cached input tokens (1 h)",
            "Share of input tokens the providers served from their prompt cache (cheaper).",
            prom(
                ratio(
                    TOKENS,
                    ['exai_token_type="cached"'],
                    [ENV, 'exai_token_type=~"cached|input"'],
                    window="1h",
                ),
                "cached share",
            ),
            unit="percentunit",
            decimals=1,
            span=6,
            no_value=NO_TRAFFIC,
            nan=NO_TRAFFIC,
        ),
        timeseries_panel(
            "Spend rate and budget (USD/hour)",
            "Cost per hour at the current rate, and the hourly budget provider-proxy publishes"
            " (the line TokenSpendAboveBudget compares the 30-minute rate with).",
            [
                prom(SPEND_PER_HOUR, "spend"),
                prom(BUDGET, "budget", ref="B"),
            ],
            unit="currencyUSD",
            span=24,
        ),
        timeseries_panel(
            "Tokens per second by model and type",
            "Input, output and cached tokens as the providers report them.",
            [
                prom(
                    rate_sum(TOKENS, ENV, labels=[*MODEL, "exai_token_type"]),
                    "{{gen_ai_request_model}} {{exai_token_type}}",
                )
            ],
        ),
        timeseries_panel(
            "Spend rate by model (USD/hour)",
            "exai.provider.cost ({USD}) per hour at the current rate.",
            [
                prom(
                    f"{rate_sum(COST, ENV, labels=MODEL)} * 3600",
                    "{{gen_ai_provider_name}} {{gen_ai_request_model}}",
                )
            ],
            unit="currencyUSD",
        ),
        timeseries_panel(
            "Tokens per second by client",
            "Input + output tokens by the client that made the call (exai.client.id: the"
            " configured client IDs, `unknown` for any other).",
            [
                prom(
                    rate_sum(TOKENS, ENV, IN_OUT, labels=["exai_client_id"]),
                    "{{exai_client_id}}",
                )
            ],
        ),
        timeseries_panel(
            "Spend rate by client (USD/hour)",
            "exai.provider.cost per hour by the client that made the call.",
            [
                prom(
                    f"{rate_sum(COST, ENV, labels=['exai_client_id'])} * 3600",
                    "{{exai_client_id}}",
                )
            ],
            unit="currencyUSD",
        ),
        timeseries_panel(
            "Tokens per second by tool and model",
            "Which gateway tool spends the tokens: the gateway passes its tool in baggage"
            " (exai.tool); `direct` is a client calling provider-proxy itself.",
            [
                prom(
                    rate_sum(TOKENS, ENV, IN_OUT, labels=["exai_tool", "gen_ai_request_model"]),
                    "{{exai_tool}} {{gen_ai_request_model}}",
                )
            ],
        ),
        timeseries_panel(
            "Spend rate by tool and model (USD/hour)",
            "exai.provider.cost per hour by the gateway tool that caused it.",
            [
                prom(
                    f"{rate_sum(COST, ENV, labels=['exai_tool', *MODEL])} * 3600",
                    "{{exai_tool}} {{gen_ai_provider_name}} {{gen_ai_request_model}}",
                )
            ],
            unit="currencyUSD",
        ),
        timeseries_panel(
            "Tool calls per second",
            "What drives the tokens: gateway tool calls by tool (chat, consensus asks"
            " several models per call).",
            [
                prom(
                    rate_sum("exai_gateway_calls_total", ENV, labels=["exai_tool"]),
                    "{{exai_tool}}",
                )
            ],
            unit="reqps",
        ),
    ]

    latency = [
        timeseries_panel(
            "Time to first chunk p95 by model",
            "gen_ai.client.operation.time_to_first_chunk: streamed calls, from the request to"
            " the first chunk from the provider.",
            [
                prom(
                    quantile(
                        0.95,
                        "gen_ai_client_operation_time_to_first_chunk_seconds_bucket",
                        ENV,
                        labels=MODEL,
                    ),
                    "{{gen_ai_provider_name}} {{gen_ai_request_model}}",
                )
            ],
            unit="s",
        ),
        timeseries_panel(
            "Time per output chunk p95 by model",
            "gen_ai.client.operation.time_per_output_chunk: the gap between streamed chunks"
            " after the first.",
            [
                prom(
                    quantile(
                        0.95,
                        "gen_ai_client_operation_time_per_output_chunk_seconds_bucket",
                        ENV,
                        labels=MODEL,
                    ),
                    "{{gen_ai_provider_name}} {{gen_ai_request_model}}",
                )
            ],
            unit="s",
        ),
        timeseries_panel(
            "Operation duration p95 by model",
            "gen_ai.client.operation.duration: time to the full answer, retries included.",
            [
                prom(
                    quantile(
                        0.95, "gen_ai_client_operation_duration_seconds_bucket", ENV, labels=MODEL
                    ),
                    "{{gen_ai_provider_name}} {{gen_ai_request_model}}",
                )
            ],
            unit="s",
        ),
    ]

    reliability = [
        timeseries_panel(
            "Provider error ratio",
            "Failed logical calls (after retries) per provider, of those that failed or"
            " succeeded: cancelled calls, requests the provider refused as sent"
            " (client_error), our key (config_error), proxy bugs and a full pool"
            " (proxy_error) and spent deadlines are excluded; 0 when none fail."
            " ProviderErrorRatioHigh fires above 10 %.",
            [
                prom(
                    ratio(
                        REQUESTS,
                        ['exai_outcome="error"'],
                        [ENV, 'exai_outcome=~"ok|error"'],
                        labels=["gen_ai_provider_name"],
                    ),
                    "{{gen_ai_provider_name}}",
                )
            ],
            unit="percentunit",
            nan=NO_TRAFFIC,
            steps=((None, "green"), (0.1, "red")),
        ),
        timeseries_panel(
            "Retries per second by reason",
            "Upstream attempts retried (rate_limit | server_error | connect | timeout);"
            " 0 when nothing is retried.",
            [
                prom(
                    rate_sum_or_zero(
                        "exai_provider_retries_total",
                        [ENV],
                        zero_from=REQUESTS,
                        zero_matchers=[ENV],
                        labels=["gen_ai_provider_name", "exai_retry_reason"],
                    ),
                    "{{gen_ai_provider_name}} {{exai_retry_reason}}",
                )
            ],
            unit="reqps",
        ),
        timeseries_panel(
            "Fallbacks per second (from → to)",
            "Calls provider-proxy sent to a fallback provider after the first one failed"
            " (EXAI_FALLBACK_PROVIDER / EXAI_FALLBACK_MAP), by the provider that failed and"
            " the one that took over; 0 when none fall back.",
            [
                prom(
                    rate_sum(
                        FALLBACKS,
                        ENV,
                        labels=["exai_fallback_from", "exai_fallback_to"],
                    )
                    + NO_FALLBACK,
                    "{{exai_fallback_from}} → {{exai_fallback_to}}",
                )
            ],
            unit="reqps",
        ),
        timeseries_panel(
            "Failed fallbacks per second",
            "Fallbacks whose fallback provider failed too: the call failed although a"
            " fallback was configured; 0 when none fail.",
            [
                prom(
                    rate_sum(
                        FALLBACKS,
                        ENV,
                        'exai_outcome="error"',
                        labels=["exai_fallback_from", "exai_fallback_to"],
                    )
                    + NO_FALLBACK,
                    "{{exai_fallback_from}} → {{exai_fallback_to}} failed",
                )
            ],
            unit="reqps",
        ),
        timeseries_panel(
            "Rate-limit headroom",
            "Share of the provider's rate limit left (x-ratelimit-remaining / -limit response"
            " headers, where the provider sends them), for requests and tokens; the lowest"
            " over the running proxies.",
            [
                prom(
                    "min by (gen_ai_provider_name, exai_ratelimit_resource) (\n"
                    f"  {live(f'exai_provider_ratelimit_remaining{sel(ENV)}')}\n  /\n"
                    f"  {live(f'exai_provider_ratelimit_limit{sel(ENV)}')}\n)",
                    "{{gen_ai_provider_name}} {{exai_ratelimit_resource}}",
                )
            ],
            unit="percentunit",
            steps=((None, "red"), (0.1, "orange"), (0.25, "green")),
            no_value="no rate-limit headers",
        ),
        state_timeline_panel(
            "Circuit breaker state",
            "exai.provider.circuit.state per provider: closed, half-open (probing) or open;"
            " the worst over the running proxies (a restarted proxy's old state is dropped).",
            prom(
                f"max by (gen_ai_provider_name) ({live(f'exai_provider_circuit_state{sel(ENV)}')})",
                "{{gen_ai_provider_name}}",
            ),
            {"0": ("closed", "green"), "1": ("half-open", "orange"), "2": ("open", "red")},
            span=24,
        ),
    ]

    return with_rows(
        base(
            "exai-llm",
            "EXAI LLM usage and cost",
            "Tokens and spend by provider, model, tool and client; streaming latency;"
            " retries, fallbacks, circuit breakers and rate-limit headroom.",
        ).with_variable(
            env_variable(
                "label_values(otel_sdk_processor_span_queue_capacity, deployment_environment_name)"
            )
        ),
        [
            ("Usage and cost", usage),
            ("Latency", latency),
            ("Reliability", reliability),
        ],
        explore_service="provider-proxy",
    )
