"""``python -m flows.benchmark``: see :mod:`flows.benchmark.cli`."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
