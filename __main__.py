"""``python -m hone``: the ``hone`` command."""

import sys

from .cli.main import main

sys.exit(main())
