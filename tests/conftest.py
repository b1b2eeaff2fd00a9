"""Framework tests live in tests/isolated/ and run one backend per process (paddle segfaults when
imported after tensorflow); tests/test_isolated.py launches them.  Set DPCORE_ISOLATED=1 to collect them."""

import os

collect_ignore = [] if os.environ.get("DPCORE_ISOLATED") else ["isolated"]
