"""`python -m tests.bench.chain` (what `make bench-chain` runs)."""

import sys

from tests.bench.chain.run import main

sys.exit(main())
