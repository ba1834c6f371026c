"""``python -m spt_lightning.report``: see :mod:`spt_lightning.report.cli`."""

import sys

from .cli import main

sys.exit(main())
