"""``python -m vidx.jobs.cli``: the same as the ``vidx`` command."""

import sys

from vidx.jobs.cli import main

sys.exit(main())
