"""`exai`: the operator's command line. `exai trace <correlation-id>` answers "what
happened to my request": every span of every service, as a waterfall, then the log lines.

- :mod:`exai_cli.jaeger` and :mod:`exai_cli.tempo` — the trace stores (no-Docker / compose)
- :mod:`exai_cli.logsource` — log lines: the collector's OTLP-JSON file, or Loki
- :mod:`exai_cli.otlp` — OTLP JSON as Tempo and the collector write it
- :mod:`exai_cli.types` — span, trace, log record: the one model all of them parse into
- :mod:`exai_cli.render` and :mod:`exai_cli.summary` — the terminal waterfall;
  :mod:`exai_cli.document` — the `--json` document
- :mod:`exai_cli.fetch` — HTTP GETs with errors translated at the boundary
- :mod:`exai_cli.main` — the argparse entry point (the `exai` console script)

Errors (:mod:`exai_cli.errors`)::

    ExaiCliError
     ├── SourceUnavailable   a trace store or log source did not answer
     ├── BadResponse         it answered, but not with what its API documents
     └── NotFound            no trace and no log line carries the correlation ID
"""
