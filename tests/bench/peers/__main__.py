"""`python -m tests.bench.peers` (what `make bench-peers` runs)."""

import sys

from tests.bench.peers.run import main

sys.exit(main())
