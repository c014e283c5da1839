"""The ``optreg`` command line (:func:`main`); :mod:`optreg.cli.values` parses option text."""

from optreg.cli.main import main

__all__ = ["main"]
