"""``python -m fl_runtime``: see ``fl_runtime.cli``."""

import sys

from fl_runtime.cli import main

sys.exit(main())
