"""``python -m optreg``: the command line."""

import sys

from optreg.cli.main import main

sys.exit(main())
