"""Container HEALTHCHECK: exit 0 when GET /health/ready on this service answers 200.

Standard library only (the slim image has no curl). The port comes from
EXAI_HEALTH_PORT, set per service by the Dockerfile.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    port = os.environ.get("EXAI_HEALTH_PORT", "")
    url = f"http://127.0.0.1:{port}/health/ready"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"not ready: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
