"""``python -m zigprune.bench``: the bench without the ``zigprune`` command."""

import sys

from .command import main

sys.exit(main())
