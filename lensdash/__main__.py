"""``python -m lensdash report ...``: see :mod:`lensdash.cli`."""

import sys

from lensdash.cli import main

sys.exit(main())
