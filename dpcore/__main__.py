"""``python -m dpcore``: the ``dpcore`` command line."""

import sys

from .cli import main

sys.exit(main())
