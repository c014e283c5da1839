"""``python -m optreg.check PATH...``: the same as ``optreg check PATH...``."""

import sys

from optreg.check.cli import main

if __name__ == "__main__":
    sys.exit(main())
