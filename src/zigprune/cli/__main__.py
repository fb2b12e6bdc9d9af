"""``python -m zigprune.cli``: the ``zigprune`` command."""

import sys

from . import main

sys.exit(main())
