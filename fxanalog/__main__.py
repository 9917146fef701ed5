"""``python -m fxanalog``: the same program as the ``fxanalog`` console script."""

import sys

from fxanalog.cli import main

if __name__ == "__main__":
    sys.exit(main())
