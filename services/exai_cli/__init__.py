"""`exai`: the operator's command line. `exai trace <correlation-id or trace-id>` answers
"what happened to my request": every span of every service, as a waterfall, then the log
lines; or, when only log lines exist, whether the trace was sampled out or is not stored
yet.

- :mod:`exai_cli.jaeger` and :mod:`exai_cli.tempo` — the trace stores (no-Docker / compose)
- :mod:`exai_cli.logsource` — log lines: the collector's OTLP-JSON file, or Loki
- :mod:`exai_cli.otlp` — OTLP JSON as Tempo and the collector write it
- :mod:`exai_cli.types` — span, trace, log record: the one model all of them parse into
- :mod:`exai_cli.render`, :mod:`exai_cli.tree`, :mod:`exai_cli.summary`,
  :mod:`exai_cli.skew`, :mod:`exai_cli.logview`, :mod:`exai_cli.style` — the terminal
  waterfall; :mod:`exai_cli.document` — the `--json` document
- :mod:`exai_cli.sampling` — sampled out or not stored yet (the tail-sampling window)
- :mod:`exai_cli.links` — the same trace in Grafana or Jaeger
- :mod:`exai_cli.durations` — `15m` for people, `300ms` as the collector writes it
- :mod:`exai_cli.fetch` — HTTP GETs with errors translated at the boundary
- :mod:`exai_cli.main` — the argparse entry point (the `exai` console script)

Errors (:mod:`exai_cli.errors`)::

    ExaiCliError
     ├── SourceUnavailable   a trace store or log source did not answer
     ├── BadResponse         it answered, but not with what its API documents
     ├── BadUsage            a setting read from the environment is malformed
     └── NotFound            no trace and no log line carries the correlation ID
"""
