"""``python -m fxanalog``: the same program as the ``fxanalog`` console script."""

import os
import sys

# ``python -m`` puts the current directory first on sys.path; a file there
# (a ``colorsys.py``) would shadow what torch imports lazily. The CLI finds
# MODEL's module in the current directory itself (``fxanalog.cli``).
if sys.path and sys.path[0] in ("", os.getcwd()):
    del sys.path[0]

from fxanalog.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
