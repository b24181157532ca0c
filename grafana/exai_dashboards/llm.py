"""(c) LLM usage and cost: tokens and spend by provider, model and tool; streaming
latency (time to first chunk, time per output chunk); retries, fallbacks, circuits."""

from __future__ import annotations

from grafana_foundation_sdk.models.dashboard import Dashboard

from exai_dashboards.common import base, with_rows
from exai_dashboards.panels import (
    prom,
    stat_panel,
    state_timeline_panel,
    timeseries_panel,
)
from exai_dashboards.promql import (
    CALLS,
    CLIENT,
    SERVER,
    quantile,
    rate_sum,
    rate_sum_or_zero,
    ratio,
)

MODEL = ["gen_ai_provider_name", "gen_ai_request_model"]
PROXY = 'service_name="provider-proxy"'
REQUESTS = "exai_provider_requests_total"


def llm_dashboard() -> Dashboard:
    usage = [
        stat_panel(
            "Spend (24 h)",
            "Provider cost over the last 24 hours, from the price table in provider-proxy.",
            prom("sum(increase(exai_provider_cost_total[24h]))", "USD"),
            unit="currencyUSD",
            decimals=2,
            span=6,
        ),
        stat_panel(
            "Spend rate (USD/hour)",
            "Cost per hour at the current rate; TokenSpendAboveBudget fires above 5 USD/hour.",
            prom(f"{rate_sum('exai_provider_cost_total')} * 3600", "USD/hour"),
            unit="currencyUSD",
            steps=((None, "green"), (5, "red")),
            decimals=2,
            span=6,
            sparkline=True,
        ),
        stat_panel(
            "Tokens (24 h)",
            "Input + output tokens over the last 24 hours.",
            prom(
                'sum(increase(exai_provider_tokens_total{exai_token_type=~"input|output"}[24h]))',
                "tokens",
            ),
            span=6,
        ),
        stat_panel(
            "Cached input tokens (1 h)",
            "Share of input tokens the providers served from their prompt cache (cheaper).",
            prom(
                ratio(
                    "exai_provider_tokens_total",
                    ['exai_token_type="cached"'],
                    ['exai_token_type=~"cached|input"'],
                    window="1h",
                ),
                "cached share",
            ),
            unit="percentunit",
            decimals=1,
            span=6,
        ),
        timeseries_panel(
            "Tokens per second by model and type",
            "Input, output and cached tokens as the providers report them.",
            [
                prom(
                    rate_sum("exai_provider_tokens_total", labels=[*MODEL, "exai_token_type"]),
                    "{{gen_ai_request_model}} {{exai_token_type}}",
                )
            ],
        ),
        timeseries_panel(
            "Spend rate by model (USD/hour)",
            "exai.provider.cost ({USD}) per hour at the current rate.",
            [
                prom(
                    f"{rate_sum('exai_provider_cost_total', labels=MODEL)} * 3600",
                    "{{gen_ai_provider_name}} {{gen_ai_request_model}}",
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
                    rate_sum(
                        "exai_provider_tokens_total",
                        'exai_token_type=~"input|output"',
                        labels=["exai_tool", "gen_ai_request_model"],
                    ),
                    "{{exai_tool}} {{gen_ai_request_model}}",
                )
            ],
        ),
        timeseries_panel(
            "Spend rate by tool and model (USD/hour)",
            "exai.provider.cost per hour by the gateway tool that caused it.",
            [
                prom(
                    f"{rate_sum('exai_provider_cost_total', labels=['exai_tool', *MODEL])} * 3600",
                    "{{exai_tool}} {{gen_ai_provider_name}} {{gen_ai_request_model}}",
                )
            ],
            unit="currencyUSD",
        ),
        timeseries_panel(
            "Tool calls per second",
            "What drives the tokens: gateway tool calls by tool (chat, consensus asks"
            " several models per call).",
            [prom(rate_sum("exai_gateway_calls_total", labels=["exai_tool"]), "{{exai_tool}}")],
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
                    quantile(0.95, "gen_ai_client_operation_duration_seconds_bucket", labels=MODEL),
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
                        ['exai_outcome=~"ok|error"'],
                        labels=["gen_ai_provider_name"],
                    ),
                    "{{gen_ai_provider_name}}",
                )
            ],
            unit="percentunit",
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
                        [],
                        zero_from=REQUESTS,
                        labels=["gen_ai_provider_name", "exai_retry_reason"],
                    ),
                    "{{gen_ai_provider_name}} {{exai_retry_reason}}",
                )
            ],
            unit="reqps",
        ),
        timeseries_panel(
            "Fallbacks per second",
            "Calls made to a fallback provider: provider calls (chat CLIENT spans) beyond"
            " one per proxy request (POST /v1/chat/completions SERVER spans). Both come from"
            " the same span-metrics flush, so the difference is exact.",
            [
                prom(
                    "clamp_min(\n"
                    + rate_sum(CALLS, PROXY, CLIENT, 'gen_ai_operation_name="chat"')
                    + "\n-\n"
                    + rate_sum(CALLS, PROXY, SERVER, 'span_name="POST /v1/chat/completions"')
                    + ",\n0)",
                    "fallbacks/s",
                )
            ],
            unit="reqps",
        ),
        state_timeline_panel(
            "Circuit breaker state",
            "exai.provider.circuit.state per provider: closed, half-open (probing) or open.",
            prom(
                "max by (gen_ai_provider_name) (exai_provider_circuit_state)",
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
            "Tokens and spend by provider, model and tool; streaming latency; retries,"
            " fallbacks and circuit breakers.",
        ),
        [
            ("Usage and cost", usage),
            ("Latency", latency),
            ("Reliability", reliability),
        ],
    )
