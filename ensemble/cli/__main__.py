"""``python -m ensemble.cli``: the same as ``python -m ensemble``."""
import sys

from ensemble.cli import main

sys.exit(main())
