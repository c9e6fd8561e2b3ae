"""Entry point of ``python -m profilers``."""

from __future__ import annotations

import sys

from profilers.cli import main

sys.exit(main())
