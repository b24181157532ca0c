"""provider-proxy: an OpenAI-compatible API in front of Kimi and GLM (DESIGN §4).

Routing by model, per-provider adapters, retries with backoff, circuit breakers,
fallback, token and cost accounting, GenAI spans and metrics. Modules:

- :mod:`provider_proxy.app` — `create_app(settings, telemetry)`, routes, error bodies
- :mod:`provider_proxy.service` — one request: route, call, fall back, relay streams
- :mod:`provider_proxy.upstream` — one provider: attempts, retries, breaker verdicts
- :mod:`provider_proxy.adapters` — base URLs, auth and request quirks per provider,
  and which upstreams may see our trace context and baggage (ours only)
- :mod:`provider_proxy.circuit`, :mod:`provider_proxy.retry` — sans-I/O resilience
- :mod:`provider_proxy.completions`, :mod:`provider_proxy.usage` — responses, usage, cost
- :mod:`provider_proxy.telemetry` — spans and metrics (bounded model labels)
- :mod:`provider_proxy.content` — prompt/completion capture, `EXAI_CAPTURE_CONTENT=true` only

Exceptions (see :mod:`provider_proxy.errors`)::

    ProxyError
     ├── InvalidRequest ── UnknownModel
     ├── CircuitOpen
     ├── DeadlineExceeded
     ├── PoolExhausted
     ├── ClientDisconnected
     └── UpstreamError
          ├── UpstreamTimeout ── UpstreamReadTimeout
          ├── UpstreamConnectError
          ├── UpstreamRateLimited
          ├── UpstreamServerError
          ├── UpstreamRejected
          └── UpstreamMalformed ── UpstreamTruncated, UpstreamTooLarge
"""

__version__ = "0.1.0"
