"""``python -m fastdnn``: the same command line as the ``fastdnn`` console script."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
