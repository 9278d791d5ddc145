"""``python -m hone``: the ``hone`` command."""

import sys

from .host.cli import main

sys.exit(main())
