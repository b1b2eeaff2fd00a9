"""``python -m dpcore.cli`` (same as ``python -m dpcore``)."""

import sys

from . import main

sys.exit(main())
