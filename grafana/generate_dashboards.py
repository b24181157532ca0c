"""Generate the EXAI Grafana dashboards from Python (grafana-foundation-sdk).

    python grafana/generate_dashboards.py           # rewrite grafana/dashboards/*.json
    python grafana/generate_dashboards.py --check   # exit 1 if a committed file is stale

The dashboards themselves are in the exai_dashboards package beside this file. The JSON
files are committed so that Grafana's file provisioning (grafana/provisioning/
dashboards/) loads them as they are; tests/unit/test_config_grafana.py checks that they
equal this generator's output, and tests/e2e/test_dashboards.py runs every PromQL query
in them against the real stack.

The SDK is pinned to its "next" line (plain build numbers, types for Grafana 12.x). The
epoch-numbered builds (`1769699998!10.1.0`, …) are the frozen 10.x/11.x lines; their
epoch makes pip rank them above every "next" build, so only an exact pin gets this one.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # loaded by path (tests) rather than run as a script
    sys.path.insert(0, str(HERE))

from exai_dashboards import DASHBOARDS, render, rendered  # noqa: E402

DASHBOARDS_DIR = HERE / "dashboards"
__all__ = ["DASHBOARDS", "DASHBOARDS_DIR", "main", "render", "rendered"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a committed file differs")
    args = parser.parse_args(argv)
    expected = rendered()
    stale = []
    for name, content in expected.items():
        path = DASHBOARDS_DIR / name
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == content:
            continue
        if args.check:
            stale.append(name)
        else:
            DASHBOARDS_DIR.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
            print(f"wrote {path}")
    extra = sorted(p.name for p in DASHBOARDS_DIR.glob("*.json") if p.name not in expected)
    if extra:
        print(f"not generated (remove them): {', '.join(extra)}", file=sys.stderr)
    if stale:
        names = ", ".join(stale)
        print(f"stale: {names} (run python grafana/generate_dashboards.py)", file=sys.stderr)
    return 1 if stale or extra else 0


if __name__ == "__main__":
    raise SystemExit(main())
